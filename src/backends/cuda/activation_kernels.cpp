// The unary ops elementwise_kernels.cpp leaves out, on the GPU: leaky_relu,
// elu, softplus and sign (float in, same dtype out) and isnan / logical_not
// (any dtype in, bool out). Formulas as the reference kernels, in float (double
// for float64).
#include <map>

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"

namespace ds::cuda {
namespace {

const char* const kUnary = R"(
template <class X> __device__ __forceinline__ X ds_key(X v) { return v; }
__device__ __forceinline__ float ds_key(ds_half v) { return ds_h2f(v.bits); }
__device__ __forceinline__ float ds_key(ds_bf16 v) { return ds_b2f(v.bits); }
extern "C" __global__ void ds_unary(const T* __restrict__ in, O* __restrict__ out, long long n,
                                    double p0, double p1) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    DS_BODY
  }
}
)";

// out[i] from in[i]; p0/p1: the op's attributes. Float ops compute in A.
const std::map<std::string, std::string>& bodies() {
  static const std::map<std::string, std::string> m = {
      {"leaky_relu",
       "const A x = ds_io<T>::load(in[i]); out[i] = ds_io<O>::store(x > A(0) ? x : x * A(p0));"},
      {"elu",
       "const A x = ds_io<T>::load(in[i]);"
       " out[i] = ds_io<O>::store(x > A(0) ? x : A(p0) * expm1(x));"},
      {"softplus",
       "const A x = ds_io<T>::load(in[i]); const A bx = A(p0) * x;"
       " out[i] = ds_io<O>::store(bx > A(p1) ? x : log1p(exp(bx)) / A(p0));"},
      {"sign",
       "const A x = ds_io<T>::load(in[i]);"
       " out[i] = ds_io<O>::store(x != x ? x : A((x > A(0)) - (x < A(0))));"},
      {"isnan", "const auto x = ds_key(in[i]); out[i] = x != x ? 1 : 0;"},
      {"logical_not", "out[i] = ds_key(in[i]) == 0 ? 1 : 0;"},
  };
  return m;
}

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

void unary_kernel(const KernelCall& kc, const std::string& op, double p0, double p1) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  long long n = x.numel();
  if (n == 0) return;
  const int dev = call_device(kc);
  const std::string acc = x.dtype() == DType::Float64 ? "double" : "float";
  const std::string src = "typedef " + device_name(x.dtype()) + " T;\ntypedef " +
                          device_name(out.dtype()) + " O;\ntypedef " + acc + " A;\n#define DS_BODY " +
                          bodies().at(op) + "\n" + kUnary;
  const void* xp = x.raw_data();
  void* op_ptr = out.raw_data();
  void* args[] = {&xp, &op_ptr, &n, &p0, &p1};
  launch(dev, get_kernel(dev, src, "ds_unary"), grid_for(n, dev), 256, args, 0, op.c_str());
}

const OpRegistrar reg([] {
  auto float_in = [](const OpContext& c) { return nvrtc_float(c.inputs[0].dtype); };
  register_kernel("leaky_relu", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     unary_kernel(kc, "leaky_relu", kc.ctx.f("negative_slope"), 0);
                   },
                   float_in, "nvrtc", 10});
  register_kernel("elu", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { unary_kernel(kc, "elu", kc.ctx.f("alpha"), 0); },
                   float_in, "nvrtc", 10});
  register_kernel("softplus", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     unary_kernel(kc, "softplus", kc.ctx.f("beta"), kc.ctx.f("threshold"));
                   },
                   float_in, "nvrtc", 10});
  register_kernel("sign", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { unary_kernel(kc, "sign", 0, 0); }, float_in, "nvrtc",
                   10});
  for (const char* name : {"isnan", "logical_not"}) {
    const std::string op = name;
    register_kernel(name, DeviceKind::CUDA,
                    {[op](const KernelCall& kc) { unary_kernel(kc, op, 0, 0); }, nullptr, "nvrtc",
                     10});
  }
});

}  // namespace
}  // namespace ds::cuda
