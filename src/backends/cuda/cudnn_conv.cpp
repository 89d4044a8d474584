// conv2d, its two backward ops, conv_transpose2d and fused_conv2d through
// cuDNN's convolution API (NCHW, the layout of ds tensors). The algorithm of each
// problem (direction, shapes, dtype, math mode) is measured once with
// cudnnFind*Ex among the candidates of cudnnGet*_v7 and cached; workspaces come
// from the caching allocator. Bias, residual and activation run as one NVRTC
// epilogue pass (epilogue_kernel.cpp), except relu (+bias, +residual) on the
// forward convolution, which cudnnConvolutionBiasActivationForward fuses where
// cuDNN offers it.
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cudnn_conv.h"
#include "backends/cuda/cudnn_support.h"
#include "backends/cuda/epilogue_kernel.h"
#include "backends/cuda/kernel_support.h"
#include "ds/cuda.h"
#include "ir/ops/conv_geometry.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace ds::cuda {
namespace {

using ops::ConvGeom;

// The most workspace an algorithm may take (H200: 141 GB; PyTorch allows more).
constexpr size_t kMaxWorkspace = size_t{1} << 30;

using Dir = ConvDir;

cudnnMathType_t math_for(DType t) {
  switch (t) {
    case DType::Float16:
    case DType::BFloat16: return CUDNN_TENSOR_OP_MATH;
    // DEFAULT lets cuDNN use TF32 Tensor Cores for float32; FMA keeps full float32.
    case DType::Float32: return allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    default: return CUDNN_DEFAULT_MATH;
  }
}

struct ConvDesc {
  cudnnConvolutionDescriptor_t h = nullptr;
  ConvDesc(const ConvGeom& g, DType t, cudnnMathType_t math) {
    DS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&h));
    try {
      DS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
          h, static_cast<int>(g.pad.h), static_cast<int>(g.pad.w), static_cast<int>(g.stride.h),
          static_cast<int>(g.stride.w), static_cast<int>(g.dil.h), static_cast<int>(g.dil.w),
          CUDNN_CROSS_CORRELATION, cudnn_compute_type(t)));
      DS_CUDNN_CHECK(cudnnSetConvolutionGroupCount(h, static_cast<int>(g.groups)));
      DS_CUDNN_CHECK(cudnnSetConvolutionMathType(h, math));
    } catch (...) {
      cudnnDestroyConvolutionDescriptor(h);
      throw;
    }
  }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(h); }
};

cudnnTensorFormat_t format_of(const ConvGeom& g) {
  return g.channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
}

// The descriptors of one convolution x * w -> y (for every direction).
struct Problem {
  const ConvGeom g;
  const DType dt;
  const int device;
  const cudnnHandle_t handle;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  Problem(const ConvGeom& geom, DType t, int dev)
      : g(geom),
        dt(t),
        device(dev),
        handle(cudnn_handle(dev)),
        x(t, g.n, g.c, g.h, g.w, format_of(g)),
        y(t, g.n, g.o, g.oh, g.ow, format_of(g)),
        w(t, g.o, g.c / g.groups, g.kh, g.kw, format_of(g)),
        conv(g, t, math_for(t)) {}
};

struct Algo {
  int algo = 0;
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  bool fused_ok = true;  // cudnnConvolutionBiasActivationForward accepted this problem
};

std::string problem_key(Dir dir, const Problem& p) {
  const ConvGeom& g = p.g;
  return detail::cat(static_cast<int>(dir), ":", p.device, ":", dtype_name(p.dt), ":",
                     static_cast<int>(math_for(p.dt)), ":", g.n, ",", g.c, ",", g.h, ",", g.w,
                     ":", g.o, ",", g.kh, ",", g.kw, ":", g.stride.h, ",", g.stride.w, ":",
                     g.pad.h, ",", g.pad.w, ":", g.dil.h, ",", g.dil.w, ":", g.groups,
                     g.channels_last ? ":nhwc" : "");
}

struct AlgoCache {
  std::mutex mu;
  std::map<std::string, Algo> algos;
};
AlgoCache& algo_cache() {
  static auto* c = new AlgoCache;  // leaked: used until exit
  return *c;
}

// The workspace to measure with: the largest any heuristic candidate wants, capped.
template <class Perf> size_t widest(const std::vector<Perf>& perf, int count) {
  size_t ws = 0;
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace)
      ws = std::max(ws, perf[i].memory);
  return ws;
}

// The fastest measured algorithm that ran and fits the workspace.
template <class Perf>
Algo fastest(const std::vector<Perf>& perf, int count, size_t ws, const Problem& p,
             const char* what) {
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= ws)
      return {static_cast<int>(perf[i].algo), perf[i].memory, perf[i].mathType, true};
  const ConvGeom& g = p.g;
  throw UnavailableError(detail::cat(
      "cuDNN has no ", what, " algorithm for x ", shape_str(g.x_shape()), " weight ",
      shape_str(g.w_shape()), " ", dtype_name(p.dt), " (stride ", g.stride.h, "x", g.stride.w,
      ", padding ", g.pad.h, "x", g.pad.w, ", dilation ", g.dil.h, "x", g.dil.w, ", groups ",
      g.groups, ")"));
}

std::shared_ptr<void> workspace(size_t bytes, int device) {
  return bytes == 0 ? nullptr : allocate(bytes, device);
}

// The workspace to measure with; when the device is too full for it, none: the
// search then keeps to the algorithms that need no workspace.
std::shared_ptr<void> search_workspace(size_t* bytes, int device) {
  try {
    return workspace(*bytes, device);
  } catch (const OutOfMemoryError&) {
    *bytes = 0;
    return nullptr;
  }
}

// Measures the algorithms of `dir` on the call's own buffers (the output is
// overwritten, then computed again by the caller).
Algo measure(Dir dir, const Problem& p, const void* a, const void* b, void* out) {
  int count = 0, got = 0;
  if (dir == Dir::Forward) {
    DS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(p.handle, &count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(count));
    DS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(p.handle, p.x.h, p.w.h, p.conv.h, p.y.h,
                                                          count, &got, perf.data()));
    size_t ws = widest(perf, got);
    auto buf = search_workspace(&ws, p.device);
    DS_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(p.handle, p.x.h, a, p.w.h, b, p.conv.h,
                                                          p.y.h, out, count, &got, perf.data(),
                                                          buf.get(), ws));
    return fastest(perf, got, ws, p, "forward");
  }
  if (dir == Dir::BackwardData) {
    DS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(p.handle, &count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(count));
    DS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(p.handle, p.w.h, p.y.h, p.conv.h,
                                                               p.x.h, count, &got, perf.data()));
    size_t ws = widest(perf, got);
    auto buf = search_workspace(&ws, p.device);
    DS_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
        p.handle, p.w.h, b, p.y.h, a, p.conv.h, p.x.h, out, count, &got, perf.data(), buf.get(),
        ws));
    return fastest(perf, got, ws, p, "backward-data");
  }
  DS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(p.handle, &count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(count));
  DS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(p.handle, p.x.h, p.y.h, p.conv.h,
                                                               p.w.h, count, &got, perf.data()));
  size_t ws = widest(perf, got);
  auto buf = search_workspace(&ws, p.device);
  DS_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
      p.handle, p.x.h, a, p.y.h, b, p.conv.h, p.w.h, out, count, &got, perf.data(), buf.get(),
      ws));
  return fastest(perf, got, ws, p, "backward-filter");
}

// The cached algorithm of the problem; `a`, `b`: the two operands in the order the
// direction takes them (forward x, w; backward-data dy, w; backward-filter x, dy).
Algo& algo_for(Dir dir, const Problem& p, const void* a, const void* b, void* out) {
  AlgoCache& c = algo_cache();
  const std::string key = problem_key(dir, p);
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.algos.find(key);
    if (it != c.algos.end()) return it->second;
  }
  const Algo found = measure(dir, p, a, b, out);
  std::lock_guard<std::mutex> lock(c.mu);
  return c.algos.emplace(key, found).first->second;
}

// alpha = 1, beta = 0 in the scaling type cuDNN wants (double for float64 data).
struct Scale {
  double d1 = 1, d0 = 0;
  float f1 = 1, f0 = 0;
  bool f64;
  explicit Scale(DType t) : f64(t == DType::Float64) {}
  const void* one() const { return f64 ? static_cast<const void*>(&d1) : &f1; }
  const void* zero() const { return f64 ? static_cast<const void*>(&d0) : &f0; }
};

void run_conv(Dir dir, const Problem& p, const void* a, const void* b, void* out) {
  const Algo& algo = algo_for(dir, p, a, b, out);
  DS_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.h, algo.math));
  auto buf = workspace(algo.workspace, p.device);
  const Scale s(p.dt);
  switch (dir) {
    case Dir::Forward:
      DS_CUDNN_CHECK(cudnnConvolutionForward(p.handle, s.one(), p.x.h, a, p.w.h, b, p.conv.h,
                                             static_cast<cudnnConvolutionFwdAlgo_t>(algo.algo),
                                             buf.get(), algo.workspace, s.zero(), p.y.h, out));
      break;
    case Dir::BackwardData:
      DS_CUDNN_CHECK(cudnnConvolutionBackwardData(
          p.handle, s.one(), p.w.h, b, p.y.h, a, p.conv.h,
          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo.algo), buf.get(), algo.workspace,
          s.zero(), p.x.h, out));
      break;
    case Dir::BackwardFilter:
      DS_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
          p.handle, s.one(), p.x.h, a, p.y.h, b, p.conv.h,
          static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo.algo), buf.get(), algo.workspace,
          s.zero(), p.w.h, out));
      break;
  }
}

}  // namespace

void cudnn_convolution(ConvDir dir, const ConvGeom& g, DType t, int device, const void* a,
                       const void* b, void* out) {
  run_conv(dir, Problem(g, t, device), a, b, out);
}

namespace {

void zero_fill(Tensor& t) {
  const int dev = t.device().index;
  set_device(dev);
  DS_CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0, t.nbytes(), stream_of(dev)));
}

// y = act(y + bias[channel] + residual), in place; nothing to do without any of them.
void epilogue(Tensor& y, const Tensor* bias, const Tensor* residual, ops::Act act, double alpha,
              int64_t channels, int64_t plane, const char* what) {
  if (!bias && !residual && act == ops::Act::None) return;
  apply_epilogue(y, y, bias, residual, act, alpha, channels, plane, what);
}

// ---- kernels
// (channels-last calls: cudnn_conv_nhwc.cpp)
bool same_float_dtype(const OpContext& c) {
  if (ops::is_channels_last(c)) return false;
  const DType t = c.inputs[0].dtype;
  if (!nvrtc_float(t)) return false;
  for (const auto& in : c.inputs)
    if (in.dtype != t) return false;
  return true;
}

bool has_work(const Tensor& a, const Tensor& b) { return a.numel() > 0 && b.numel() > 0; }

void conv2d_kernel(const KernelCall& kc) {
  const ConvGeom g = ops::conv2d_geom(kc.ctx);
  Tensor& y = kc.outputs[0];
  if (y.numel() == 0) return;
  const int dev = call_device(kc);
  if (has_work(kc.inputs[0], kc.inputs[1])) {
    const Problem p(g, y.dtype(), dev);
    run_conv(Dir::Forward, p, kc.inputs[0].raw_data(), kc.inputs[1].raw_data(), y.raw_data());
  } else {
    zero_fill(y);
  }
  const Tensor* bias = kc.inputs.size() > 2 ? &kc.inputs[2] : nullptr;
  epilogue(y, bias, nullptr, ops::Act::None, 0, g.o, g.oh * g.ow, "conv2d bias");
}

void conv2d_backward_input_kernel(const KernelCall& kc) {
  const ConvGeom g = ops::conv2d_backward_input_geom(kc.ctx);
  Tensor& dx = kc.outputs[0];
  if (dx.numel() == 0) return;
  const int dev = call_device(kc);
  if (!has_work(kc.inputs[0], kc.inputs[1])) return zero_fill(dx);
  const Problem p(g, dx.dtype(), dev);
  run_conv(Dir::BackwardData, p, kc.inputs[0].raw_data(), kc.inputs[1].raw_data(), dx.raw_data());
}

void conv2d_backward_weight_kernel(const KernelCall& kc) {
  const ConvGeom g = ops::conv2d_backward_weight_geom(kc.ctx);
  Tensor& dw = kc.outputs[0];
  if (dw.numel() == 0) return;
  const int dev = call_device(kc);
  if (!has_work(kc.inputs[0], kc.inputs[1])) return zero_fill(dw);
  const Problem p(g, dw.dtype(), dev);
  run_conv(Dir::BackwardFilter, p, kc.inputs[0].raw_data(), kc.inputs[1].raw_data(),
           dw.raw_data());
}

// conv_transpose2d(x, w) is the input-gradient of the convolution whose output is x.
void conv_transpose2d_kernel(const KernelCall& kc) {
  const ConvGeom g = ops::conv_transpose2d_geom(kc.ctx);
  Tensor& y = kc.outputs[0];
  if (y.numel() == 0) return;
  const int dev = call_device(kc);
  if (has_work(kc.inputs[0], kc.inputs[1])) {
    const Problem p(g, y.dtype(), dev);
    run_conv(Dir::BackwardData, p, kc.inputs[0].raw_data(), kc.inputs[1].raw_data(),
             y.raw_data());
  } else {
    zero_fill(y);
  }
  const Tensor* bias = kc.inputs.size() > 2 ? &kc.inputs[2] : nullptr;
  epilogue(y, bias, nullptr, ops::Act::None, 0, g.c, g.h * g.w, "conv_transpose2d bias");
}

// relu(conv + bias [+ residual]) in one cuDNN call; false where cuDNN declines.
bool fused_relu(const Problem& p, Algo& algo, const Tensor& x, const Tensor& w, const Tensor& bias,
                const Tensor* residual, Tensor& y) {
  if (!algo.fused_ok) return false;
  cudnnActivationDescriptor_t act = nullptr;
  DS_CUDNN_CHECK(cudnnCreateActivationDescriptor(&act));
  std::unique_ptr<cudnnActivationStruct, void (*)(cudnnActivationDescriptor_t)> guard(
      act, [](cudnnActivationDescriptor_t a) { cudnnDestroyActivationDescriptor(a); });
  DS_CUDNN_CHECK(cudnnSetActivationDescriptor(act, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0));
  const TensorDesc bias_desc(bias.dtype(), 1, p.g.o, 1, 1);
  DS_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.h, algo.math));
  auto buf = workspace(algo.workspace, p.device);
  const Scale s(p.dt);
  const cudnnStatus_t st = cudnnConvolutionBiasActivationForward(
      p.handle, s.one(), p.x.h, x.raw_data(), p.w.h, w.raw_data(), p.conv.h,
      static_cast<cudnnConvolutionFwdAlgo_t>(algo.algo), buf.get(), algo.workspace,
      residual ? s.one() : s.zero(), p.y.h, residual ? residual->raw_data() : y.raw_data(),
      bias_desc.h, bias.raw_data(), act, p.y.h, y.raw_data());
  const cudnnStatus_t category = cudnn_category(st);
  if (category == CUDNN_STATUS_NOT_SUPPORTED || category == CUDNN_STATUS_BAD_PARAM) {
    std::lock_guard<std::mutex> lock(algo_cache().mu);
    algo.fused_ok = false;  // remembered: the next call goes straight to the epilogue
    return false;
  }
  DS_CUDNN_CHECK(st);
  return true;
}

void fused_conv2d_kernel(const KernelCall& kc) {
  const OpContext& c = kc.ctx;
  const ConvGeom g = ops::conv2d_geom(c);
  Tensor& y = kc.outputs[0];
  if (y.numel() == 0) return;
  const int dev = call_device(kc);
  const bool has_bias = c.b("has_bias");
  const Tensor* bias = has_bias ? &kc.inputs[2] : nullptr;
  const Tensor* residual = c.b("has_residual") ? &kc.inputs.back() : nullptr;
  const ops::Act act = ops::parse_activation(c.s("activation"));
  if (!has_work(kc.inputs[0], kc.inputs[1])) {
    zero_fill(y);
  } else {
    const Problem p(g, y.dtype(), dev);
    Algo& algo = algo_for(Dir::Forward, p, kc.inputs[0].raw_data(), kc.inputs[1].raw_data(),
                          y.raw_data());
    if (act == ops::Act::Relu && bias &&
        fused_relu(p, algo, kc.inputs[0], kc.inputs[1], *bias, residual, y))
      return;
    run_conv(Dir::Forward, p, kc.inputs[0].raw_data(), kc.inputs[1].raw_data(), y.raw_data());
  }
  epilogue(y, bias, residual, act, c.f("alpha"), g.o, g.oh * g.ow, "fused_conv2d epilogue");
}

bool fused_conv_supported(const OpContext& c) {
  return same_float_dtype(c) && ops::is_epilogue_activation(c.s("activation"));
}

const OpRegistrar reg([] {
  register_kernel("conv2d", DeviceKind::CUDA, {conv2d_kernel, same_float_dtype, "cudnn", 10});
  register_kernel("conv2d_backward_input", DeviceKind::CUDA,
                  {conv2d_backward_input_kernel, same_float_dtype, "cudnn", 10});
  register_kernel("conv2d_backward_weight", DeviceKind::CUDA,
                  {conv2d_backward_weight_kernel, same_float_dtype, "cudnn", 10});
  register_kernel("conv_transpose2d", DeviceKind::CUDA,
                  {conv_transpose2d_kernel, same_float_dtype, "cudnn", 10});
  register_kernel("fused_conv2d", DeviceKind::CUDA,
                  {fused_conv2d_kernel, fused_conv_supported, "cudnn", 10});
});

}  // namespace
}  // namespace ds::cuda
