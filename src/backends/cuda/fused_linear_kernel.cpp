// fused_linear (what the epilogue-fusion pass makes of linear + bias +
// activation [+ residual]) on the GPU: cuBLASLt computes x @ w^T with the bias
// and, for relu and tanh-gelu without a residual, the activation in its
// epilogue; the other activations and the residual follow in one NVRTC pass.
// cuBLASLt writes a fresh [rows, out] matrix, which the epilogue pass (or a
// device copy) moves into the step's output.
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/epilogue_kernel.h"
#include "backends/cuda/kernel_support.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

// The activations cuBLASLt fuses (its GELU is the tanh form).
bool native(ops::Act a) {
  return a == ops::Act::None || a == ops::Act::Relu || a == ops::Act::GeluTanh;
}

Activation lt_activation(ops::Act a) {
  return a == ops::Act::Relu ? Activation::Relu
         : a == ops::Act::GeluTanh ? Activation::Gelu
                                   : Activation::None;
}

void fused_linear_kernel(const KernelCall& kc) {
  const OpContext& c = kc.ctx;
  Tensor& out = kc.outputs[0];
  if (out.numel() == 0) return;
  const int dev = call_device(kc);
  const Tensor& x = kc.inputs[0];
  const Tensor& w = kc.inputs[1];
  const int64_t in = w.dim(1), out_features = w.dim(0);
  const Tensor bias = c.b("has_bias") ? kc.inputs[2] : Tensor();
  const Tensor* residual = c.b("has_residual") ? &kc.inputs.back() : nullptr;
  const ops::Act act = ops::parse_activation(c.s("activation"));
  // No fp64 epilogues in cuBLASLt: float64 takes the NVRTC pass for any activation.
  const bool fused_act =
      native(act) && !residual && (x.dtype() != DType::Float64 || act == ops::Act::None);
  const Tensor y = fused_linear(x.reshape({x.numel() / in, in}), w, bias,
                                fused_act ? lt_activation(act) : Activation::None);
  if (fused_act) {
    set_device(dev);
    DS_CUDA_CHECK(cudaMemcpyAsync(out.raw_data(), y.raw_data(), out.nbytes(),
                                  cudaMemcpyDeviceToDevice, stream_of(dev)));
    return;
  }
  apply_epilogue(y, out, nullptr, residual, act, c.f("alpha"), out_features, 1,
                 "fused_linear epilogue");
}

// Linear form (weight [out, in]); cuBLASLt's bias epilogue is for fp32/fp16/bf16.
bool supported(const OpContext& c) {
  if (c.s("base") != "linear" || !ops::is_epilogue_activation(c.s("activation"))) return false;
  const DType t = c.inputs[0].dtype;
  for (const auto& in : c.inputs)
    if (in.dtype != t) return false;
  const bool low = t == DType::Float32 || t == DType::Float16 || t == DType::BFloat16;
  return low || (t == DType::Float64 && !c.b("has_bias"));
}

const OpRegistrar reg([] {
  register_kernel("fused_linear", DeviceKind::CUDA, {fused_linear_kernel, supported, "cublaslt", 10});
});

}  // namespace
}  // namespace ds::cuda
