// batch_norm with given statistics (inference, and the normalize step of
// training once the batch statistics are computed): per channel
// y = (x - mean) * rsqrt(var + eps) * weight + bias over x [N, C, ...]. The
// per-channel scale and shift are computed once per element in the accumulator
// type, like the reference's formula.
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"

namespace ds::cuda {
namespace {

const char* const kBatchNorm = R"(
extern "C" __global__ void ds_batch_norm(const T* __restrict__ x, const T* __restrict__ mean,
                                         const T* __restrict__ var, const T* __restrict__ w,
                                         const T* __restrict__ b, T* __restrict__ y, long long n,
                                         long long channels, long long plane, double eps) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const long long c = i / plane % channels;
    A v = (IO::load(x[i]) - IO::load(mean[c])) / sqrt(IO::load(var[c]) + A(eps));
    if (w) v = v * IO::load(w[c]);
    if (b) v = v + IO::load(b[c]);
    y[i] = IO::store(v);
  }
}
)";

void batch_norm_kernel(const KernelCall& kc) {
  const Tensor& x = kc.inputs[0];
  Tensor& y = kc.outputs[0];
  long long n = x.numel();
  if (n == 0) return;
  const int dev = call_device(kc);
  long long channels = x.dim(1), plane = n / (x.dim(0) * channels);
  const void* xp = x.raw_data();
  const void* mp = kc.inputs[1].raw_data();
  const void* vp = kc.inputs[2].raw_data();
  const void* wp = kc.inputs.size() > 3 ? kc.inputs[3].raw_data() : nullptr;
  const void* bp = kc.inputs.size() > 4 ? kc.inputs[4].raw_data() : nullptr;
  void* yp = y.raw_data();
  double eps = kc.ctx.f("eps");
  void* args[] = {&xp, &mp, &vp, &wp, &bp, &yp, &n, &channels, &plane, &eps};
  const std::string src = "typedef " + device_type(x.dtype()) +
                          " T;\ntypedef ds_io<T> IO;\ntypedef IO::acc A;\n" + kBatchNorm;
  launch(dev, get_kernel(dev, src, "ds_batch_norm"), grid_for(n, dev), 256, args, 0, "batch_norm");
}

bool same_float_dtype(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  return nvrtc_float(c.inputs[0].dtype);
}

const OpRegistrar reg([] {
  register_kernel("batch_norm", DeviceKind::CUDA, {batch_norm_kernel, same_float_dtype, "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
