// random_uniform / random_normal / bernoulli on the device with the CPU's Philox
// stream (the same header, compiled by NVRTC): element i reads the same words of
// the seed's stream as on the CPU (see src/ir/ops/random.cpp), and values are
// rounded to the output dtype the same way (double -> float -> 16-bit).
// Each thread computes one Philox block and writes the elements it covers.
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"

namespace ds::cuda {
namespace {

const char* const kRandom = R"(
__device__ __forceinline__ double ds_load_d(T v) { return (double)ds_io<T>::load(v); }
__device__ __forceinline__ T ds_round(double v) { return ds_io<T>::store((A)v); }
// The largest T below v (a value that rounded up onto the open upper bound).
__device__ __forceinline__ float ds_down(float v) { return nextafterf(v, -DS_INF); }
__device__ __forceinline__ double ds_down(double v) { return nextafter(v, (double)-DS_INF); }
__device__ __forceinline__ unsigned short ds_down_bits(unsigned short b) {
  if (b & 0x8000u) return (unsigned short)(b + 1);
  if ((b & 0x7fffu) == 0) return 0x8001u;
  return (unsigned short)(b - 1);
}
__device__ __forceinline__ ds_half ds_down(ds_half v) { v.bits = ds_down_bits(v.bits); return v; }
__device__ __forceinline__ ds_bf16 ds_down(ds_bf16 v) { v.bits = ds_down_bits(v.bits); return v; }

// kind 0: uniform(p0 = low, p1 = high); 1: normal(p0 = mean, p1 = stddev); 2: bernoulli(p0 = p)
extern "C" __global__ void ds_random(T* __restrict__ o, long long n, unsigned long long seed,
                                     int kind, double p0, double p1) {
  const bool two_words = kind == 1 || (kind == 0 && sizeof(T) == 8);
  const long long per_block = two_words ? 2 : 4;
  const long long blocks = (n + per_block - 1) / per_block;
  for (long long b = blockIdx.x * (long long)blockDim.x + threadIdx.x; b < blocks;
       b += (long long)gridDim.x * blockDim.x) {
    const ds::philox::Block w = ds::philox::stream_block(seed, (unsigned long long)b);
    for (int e = 0; e < per_block; ++e) {
      const long long i = b * per_block + e;
      if (i >= n) break;
      T v;
      if (kind == 0) {
        const double u = two_words ? ds::philox::uniform53(w.v[2 * e], w.v[2 * e + 1])
                                   : (double)ds::philox::uniform24(w.v[e]);
        v = ds_round(p0 + (p1 - p0) * u);
        if (!(ds_load_d(v) < p1)) v = ds_down(v);
      } else if (kind == 1) {
        const double u1 = ds::philox::uniform32_open0(w.v[2 * e]);
        const double u2 = ds::philox::uniform32(w.v[2 * e + 1]);
        const double z = sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
        v = ds_round(p0 + p1 * z);
      } else {
        v = ds_round(ds::philox::uniform32(w.v[e]) < p0 ? 1.0 : 0.0);
      }
      o[i] = v;
    }
  }
}
)";

uint64_t seed_of(const KernelCall& kc) {
  if (kc.inputs.empty()) return static_cast<uint64_t>(kc.ctx.i("seed"));
  const Tensor& s = kc.inputs[0];
  int64_t v = 0;
  if (s.device().kind == DeviceKind::CPU) {
    v = s.dtype() == DType::Int64 ? s.data<int64_t>()[0] : s.data<int32_t>()[0];
  } else {  // the seed scalar lives on the device: read it back (ordered on the stream)
    set_device(s.device().index);
    const cudaStream_t stream = stream_of(s.device().index);
    int32_t v32 = 0;
    const bool wide = s.dtype() == DType::Int64;
    DS_CUDA_CHECK(cudaMemcpyAsync(wide ? static_cast<void*>(&v) : &v32, s.raw_data(), wide ? 8 : 4,
                                  cudaMemcpyDeviceToHost, stream));
    DS_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (!wide) v = v32;
  }
  return static_cast<uint64_t>(v);
}

void random_kernel(const KernelCall& kc, int kind, const char* a, const char* b) {
  Tensor& out = kc.outputs[0];
  const int dev = out.device().index;
  DS_CHECK(out.device().kind == DeviceKind::CUDA, ValueError, kc.ctx.where(),
           "the output is on ", out.device().str(), ", expected a CUDA device");
  long long n = out.numel();
  if (n == 0) return;
  unsigned long long seed = seed_of(kc);
  double p0 = kc.ctx.f(a), p1 = b ? kc.ctx.f(b) : 0.0;
  void* op = out.raw_data();
  void* args[] = {&op, &n, &seed, &kind, &p0, &p1};
  const std::string src = "typedef " + device_type(out.dtype()) +
                          " T;\ntypedef ds_io<T>::acc A;\n" + kRandom;
  launch(dev, get_kernel(dev, src, "ds_random"), grid_for((n + 1) / 2, dev), 256, args, 0,
         kc.ctx.op.name.c_str());
}

bool float_output(const OpContext& c) { return nvrtc_float(c.dtype("dtype")); }

const OpRegistrar reg([] {
  register_kernel("random_uniform", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { random_kernel(kc, 0, "low", "high"); }, float_output,
                   "nvrtc-philox", 10});
  register_kernel("random_normal", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { random_kernel(kc, 1, "mean", "stddev"); },
                   float_output, "nvrtc-philox", 10});
  register_kernel("bernoulli", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { random_kernel(kc, 2, "p", nullptr); }, float_output,
                   "nvrtc-philox", 10});
});

}  // namespace
}  // namespace ds::cuda
