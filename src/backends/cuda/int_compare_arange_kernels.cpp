// Comparisons of integer and bool tensors and logical_and/or of any dtype, with
// broadcasting (the float comparisons are in elementwise_kernels.cpp), and
// arange on the GPU: the integer bookkeeping of a loss (ignore_index masks over
// class-index targets) and position ids stay on the device. arange converts start + i * step like the CPU: through double
// (float16/bfloat16 through float), truncating toward zero for integers.
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;

struct Strides {
  long long size[kMaxDims], s0[kMaxDims], s1[kMaxDims];
  int ndim;
};

const char* const kSource = R"(
struct Strides { long long size[8], s0[8], s1[8]; int ndim; };
#define DS_FOR(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
                          i += (long long)gridDim.x * blockDim.x)
template <class Y> struct ds_narrow {
  static __device__ __forceinline__ Y from(double v) { return (Y)(long long)v; }
};
template <> struct ds_narrow<float> {
  static __device__ __forceinline__ float from(double v) { return (float)v; }
};
template <> struct ds_narrow<double> {
  static __device__ __forceinline__ double from(double v) { return v; }
};
template <> struct ds_narrow<ds_half> {
  static __device__ __forceinline__ ds_half from(double v) { return ds_io<ds_half>::store((float)v); }
};
template <> struct ds_narrow<ds_bf16> {
  static __device__ __forceinline__ ds_bf16 from(double v) { return ds_io<ds_bf16>::store((float)v); }
};

__device__ __forceinline__ void ds_offsets(const Strides& g, long long i, long long* a,
                                           long long* b) {
  *a = *b = 0;
  for (int k = g.ndim - 1; k >= 0; --k) {
    const long long q = i % g.size[k];
    i /= g.size[k];
    *a += q * g.s0[k];
    *b += q * g.s1[k];
  }
}

// Integer/bool comparisons: o = x CMP y (the program is also built for arange's
// float16/bfloat16, which compare through float).
template <class X> __device__ __forceinline__ X ds_key(X v) { return v; }
__device__ __forceinline__ float ds_key(ds_half v) { return ds_h2f(v.bits); }
__device__ __forceinline__ float ds_key(ds_bf16 v) { return ds_b2f(v.bits); }
extern "C" __global__ void ds_compare(const T* __restrict__ x, const T* __restrict__ y,
                                      unsigned char* __restrict__ o, long long n, Strides g) {
  DS_FOR(i, n) {
    long long ia, ib;
    ds_offsets(g, i, &ia, &ib);
    const auto a = ds_key(x[ia]), b = ds_key(y[ib]);
    o[i] = (DS_CMP) ? 1 : 0;
  }
}

extern "C" __global__ void ds_arange(O* __restrict__ o, long long n, double start, double step) {
  DS_FOR(i, n) o[i] = ds_narrow<O>::from(start + (double)i * step);
}
)";

std::string device_name(DType t) {
  switch (t) {
    case DType::Bool:
    case DType::UInt8: return "unsigned char";
    case DType::Int8: return "signed char";
    case DType::Int32: return "int";
    case DType::Int64: return "long long";
    default: return device_type(t);
  }
}

bool integral_or_bool(DType t) { return !is_floating(t); }

// T: the compared dtype; O: arange's output dtype.
std::string source(DType in, DType out, const std::string& cmp = "a == b") {
  return "typedef " + device_name(in) + " T;\ntypedef " + device_name(out) +
         " O;\n#define DS_CMP (" + cmp + ")\n" + kSource;
}

Strides strides_for(const Shape& out, const std::vector<Shape>& operands) {
  Strides g{};
  g.ndim = static_cast<int>(out.size());
  long long* dst[] = {g.s0, g.s1};
  for (int d = 0; d < g.ndim; ++d) g.size[d] = out[d];
  for (size_t k = 0; k < operands.size(); ++k) {
    const Shape st = broadcast_strides(operands[k], out);
    for (int d = 0; d < g.ndim; ++d) dst[k][d] = st[d];
  }
  return g;
}

void compare_kernel(const KernelCall& kc, const std::string& cmp) {
  Tensor& out = kc.outputs[0];
  long long n = out.numel();
  if (n == 0) return;
  const int dev = call_device(kc);
  Strides g = strides_for(out.shape(), {kc.inputs[0].shape(), kc.inputs[1].shape()});
  const void* ap = kc.inputs[0].raw_data();
  const void* bp = kc.inputs[1].raw_data();
  void* op = out.raw_data();
  void* args[] = {&ap, &bp, &op, &n, &g};
  const DType t = kc.inputs[0].dtype();
  launch(dev, get_kernel(dev, source(t, DType::Bool, cmp), "ds_compare"), grid_for(n, dev), 256,
         args, 0, kc.ctx.op.name.c_str());
}

void arange_kernel(const KernelCall& kc) {
  Tensor& out = kc.outputs[0];
  long long n = out.numel();
  if (n == 0) return;
  const int dev = call_device(kc);
  void* op = out.raw_data();
  double start = kc.ctx.f("start"), step = kc.ctx.f("step");
  void* args[] = {&op, &n, &start, &step};
  launch(dev, get_kernel(dev, source(out.dtype(), out.dtype()), "ds_arange"), grid_for(n, dev),
         256, args, 0, "arange");
}

bool fits(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.shape.size() > kMaxDims) return false;
  return true;
}

bool integer_compare_ok(const OpContext& c) {
  return fits(c) && c.inputs[0].dtype == c.inputs[1].dtype && integral_or_bool(c.inputs[0].dtype);
}

const OpRegistrar reg([] {
  register_kernel("arange", DeviceKind::CUDA, {arange_kernel, nullptr, "nvrtc", 10});
  const std::pair<const char*, const char*> compares[] = {{"eq", "a == b"}, {"ne", "a != b"},
                                                          {"lt", "a < b"},  {"le", "a <= b"},
                                                          {"gt", "a > b"},  {"ge", "a >= b"}};
  for (const auto& [name, cmp] : compares) {
    const std::string expr = cmp;
    // Below the elementwise kernels (priority 10): those take int32/int64; these the rest.
    register_kernel(name, DeviceKind::CUDA,
                    {[expr](const KernelCall& kc) { compare_kernel(kc, expr); },
                     integer_compare_ok, "nvrtc-int", 5});
  }
  // Logical ops of two tensors of one dtype (any), nonzero meaning true.
  const std::pair<const char*, const char*> logical[] = {
      {"logical_and", "a != 0 && b != 0"}, {"logical_or", "a != 0 || b != 0"}};
  for (const auto& [name, expr_text] : logical) {
    const std::string expr = expr_text;
    register_kernel(name, DeviceKind::CUDA,
                    {[expr](const KernelCall& kc) { compare_kernel(kc, expr); },
                     [](const OpContext& c) {
                       return fits(c) && c.inputs[0].dtype == c.inputs[1].dtype;
                     },
                     "nvrtc", 10});
  }
});

}  // namespace
}  // namespace ds::cuda
