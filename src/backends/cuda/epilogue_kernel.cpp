#include "backends/cuda/epilogue_kernel.h"

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"

namespace ds::cuda {
namespace {

std::string act_expr(ops::Act a) {
  switch (a) {
    case ops::Act::None: return "v";
    case ops::Act::Relu: return "(v > A(0) || v != v) ? v : A(0)";
    case ops::Act::LeakyRelu: return "v > A(0) ? v : v * A(alpha)";
    case ops::Act::Gelu: return "A(0.5) * v * (A(1) + erf(v * A(0.70710678118654752)))";
    case ops::Act::GeluTanh:
      return "A(0.5) * v * (A(1) + tanh(A(0.79788456080286536) * (v + A(0.044715) * v * v * v)))";
    case ops::Act::Silu: return "v / (A(1) + exp(-v))";
    case ops::Act::Sigmoid: return "A(1) / (A(1) + exp(-v))";
    case ops::Act::Tanh: return "tanh(v)";
  }
  return "v";
}

const char* const kEpilogue = R"(
extern "C" __global__ void ds_epilogue(const T* src, T* out, const T* __restrict__ bias,
                                       const T* __restrict__ res, long long n, long long plane,
                                       long long channels, double alpha) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    A v = IO::load(src[i]);
    if (bias) v += IO::load(bias[(i / plane) % channels]);
    if (res) v += IO::load(res[i]);
    out[i] = IO::store(DS_ACT);
  }
}
)";

}  // namespace

void apply_epilogue(const Tensor& src, Tensor& out, const Tensor* bias, const Tensor* residual,
                    ops::Act act, double alpha, int64_t channels, int64_t plane, const char* what) {
  long long n = out.numel();
  if (n == 0) return;
  const int dev = out.device().index;
  const std::string code = "typedef " + device_type(out.dtype()) +
                           " T;\ntypedef ds_io<T> IO;\ntypedef IO::acc A;\n#define DS_ACT (" +
                           act_expr(act) + ")\n" + kEpilogue;
  const void* sp = src.raw_data();
  void* op = out.raw_data();
  const void* bp = bias ? bias->raw_data() : nullptr;
  const void* rp = residual ? residual->raw_data() : nullptr;
  long long pl = plane, ch = channels;
  void* args[] = {&sp, &op, &bp, &rp, &n, &pl, &ch, &alpha};
  launch(dev, get_kernel(dev, code, "ds_epilogue"), grid_for(n, dev), 256, args, 0, what);
}

}  // namespace ds::cuda
