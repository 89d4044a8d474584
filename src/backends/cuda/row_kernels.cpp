// Row kernels: sum/mean/max over trailing axes, softmax/log_softmax over the last
// axis, layer_norm/rms_norm over the normalized trailing shape. One block per
// row; each thread strides over the row and block reductions combine the
// partial results in the accumulator type (float, double for float64).
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

constexpr unsigned kThreads = 256;

std::string header(DType in, DType out) {
  return "typedef " + device_type(in) + " T;\ntypedef " + device_type(out) +
         " O;\ntypedef ds_io<T>::acc A;\ntypedef ds_io<O> OUT;\n"
         "struct ds_add { __device__ A operator()(A a, A b) const { return a + b; } };\n"
         "struct ds_max { __device__ A operator()(A a, A b) const {"
         " return (a != a || b != b) ? a + b : (a > b ? a : b); } };\n";
}

const char* const kReduce = R"(
extern "C" __global__ void ds_reduce(const T* __restrict__ x, O* __restrict__ o, long long len, int kind) {
  const T* row = x + blockIdx.x * len;
  A acc = kind == 2 ? A(-DS_INF) : A(0);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) {
    const A v = ds_io<T>::load(row[j]);
    acc = kind == 2 ? ds_max()(acc, v) : acc + v;
  }
  acc = kind == 2 ? ds_block_reduce(acc, ds_max(), A(-DS_INF)) : ds_block_reduce(acc, ds_add(), A(0));
  if (kind == 1) acc = acc / A(len);
  if (threadIdx.x == 0) o[blockIdx.x] = OUT::store(acc);
}
)";

const char* const kSoftmax = R"(
extern "C" __global__ void ds_softmax(const T* __restrict__ x, O* __restrict__ o, long long len, int log_form) {
  const T* row = x + blockIdx.x * len;
  O* out = o + blockIdx.x * len;
  A m = A(-DS_INF);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) m = ds_max()(m, ds_io<T>::load(row[j]));
  m = ds_block_reduce(m, ds_max(), A(-DS_INF));
  A s = A(0);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) s += exp(ds_io<T>::load(row[j]) - m);
  s = ds_block_reduce(s, ds_add(), A(0));
  const A log_s = log(s);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) {
    const A z = ds_io<T>::load(row[j]) - m;
    out[j] = OUT::store(log_form ? z - log_s : exp(z) / s);
  }
}
)";

// centered: layer_norm (x - mean); otherwise rms_norm. w/b may be null.
const char* const kNorm = R"(
extern "C" __global__ void ds_norm(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                   O* __restrict__ o, long long len, double eps, int centered) {
  const T* row = x + blockIdx.x * len;
  O* out = o + blockIdx.x * len;
  A mean = A(0);
  if (centered) {
    for (long long j = threadIdx.x; j < len; j += blockDim.x) mean += ds_io<T>::load(row[j]);
    mean = ds_block_reduce(mean, ds_add(), A(0)) / A(len);
  }
  A ss = A(0);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) {
    const A d = ds_io<T>::load(row[j]) - mean;
    ss += d * d;
  }
  ss = ds_block_reduce(ss, ds_add(), A(0));
  const A rstd = A(1) / sqrt(ss / A(len) + A(eps));
  for (long long j = threadIdx.x; j < len; j += blockDim.x) {
    A v = (ds_io<T>::load(row[j]) - mean) * rstd;
    if (w) v = v * ds_io<T>::load(w[j]);
    if (b) v = v + ds_io<T>::load(b[j]);
    out[j] = OUT::store(v);
  }
}
)";

bool float_io(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  return nvrtc_float(c.inputs[0].dtype);
}

// The reduced axes are a trailing run of the input's dims: rows of a contiguous tensor.
bool trailing_reduction(const OpContext& c) {
  if (!float_io(c)) return false;
  const int rank = static_cast<int>(c.inputs[0].shape.size());
  const auto axes = ops::norm_axes(c.ints("axes"), rank, c.where());
  for (size_t i = 0; i < axes.size(); ++i)
    if (axes[i] != rank - static_cast<int>(axes.size()) + static_cast<int>(i)) return false;
  return true;
}

void launch_rows(const KernelCall& kc, const std::string& src, const char* kernel, int64_t rows,
                 void** args) {
  const int dev = call_device(kc);
  DS_CHECK(rows <= 0x7fffffff, ShapeError, kc.ctx.where(), rows, " rows exceed the CUDA grid");
  if (rows == 0) return;
  launch(dev, get_kernel(dev, src, kernel), dim3(static_cast<unsigned>(rows)), kThreads, args, 0,
         kc.ctx.op.name.c_str());
}

void reduce_kernel(const KernelCall& kc, int kind) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  const int64_t rows = out.numel();
  long long len = rows == 0 ? 0 : x.numel() / rows;  // 0: sum 0, mean NaN
  const void* xp = x.raw_data();
  void* op = out.raw_data();
  void* args[] = {&xp, &op, &len, &kind};
  launch_rows(kc, header(x.dtype(), out.dtype()) + kReduce, "ds_reduce", rows, args);
}

void softmax_kernel(const KernelCall& kc, int log_form) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  if (x.numel() == 0) return;
  long long len = x.shape().back();
  const void* xp = x.raw_data();
  void* op = out.raw_data();
  void* args[] = {&xp, &op, &len, &log_form};
  launch_rows(kc, header(x.dtype(), out.dtype()) + kSoftmax, "ds_softmax", x.numel() / len, args);
}

bool last_axis_softmax(const OpContext& c) {
  const int rank = static_cast<int>(c.inputs[0].shape.size());
  return float_io(c) && rank > 0 && (c.i("axis") == -1 || c.i("axis") == rank - 1);
}

void norm_kernel(const KernelCall& kc, int centered) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  long long len = numel(kc.ctx.ints("normalized_shape"));
  if (x.numel() == 0 || len == 0) return;
  const void* xp = x.raw_data();
  const void* wp = kc.inputs.size() > 1 ? kc.inputs[1].raw_data() : nullptr;
  const void* bp = kc.inputs.size() > 2 ? kc.inputs[2].raw_data() : nullptr;
  void* op = out.raw_data();
  double eps = kc.ctx.f("eps");
  void* args[] = {&xp, &wp, &bp, &op, &len, &eps, &centered};
  launch_rows(kc, header(x.dtype(), out.dtype()) + kNorm, "ds_norm", x.numel() / len, args);
}

const OpRegistrar reg([] {
  const char* names[] = {"sum", "mean", "max"};
  for (int kind = 0; kind < 3; ++kind)
    register_kernel(names[kind], DeviceKind::CUDA,
                    {[kind](const KernelCall& kc) { reduce_kernel(kc, kind); }, trailing_reduction,
                     "nvrtc", 10});
  register_kernel("softmax", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { softmax_kernel(kc, 0); }, last_axis_softmax, "nvrtc", 10});
  register_kernel("log_softmax", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { softmax_kernel(kc, 1); }, last_axis_softmax, "nvrtc", 10});
  register_kernel("layer_norm", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { norm_kernel(kc, 1); }, float_io, "nvrtc", 10});
  register_kernel("rms_norm", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { norm_kernel(kc, 0); }, float_io, "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
