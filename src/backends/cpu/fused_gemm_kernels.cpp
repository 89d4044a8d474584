// fused_linear (float32): SGEMM, then the epilogue (bias, residual, activation)
// in vectorized passes: measured faster than SGEMM tiles with a per-element
// epilogue (bench/NOTES.md, fused chains).
#include <algorithm>

#include "backends/cpu/gemm_kernels.h"
#include "core/thread_pool.h"
#include "ir/ops/fused_epilogue.h"
#include "runtime/dispatch.h"

namespace ds::cpu {
namespace {

// y = op(y [+ bias] [+ residual]) over rows [b, e): loops without a branch per
// element, so they vectorize.
template <typename F>
void add_and_map(float* y, int64_t b, int64_t e, int64_t out, const float* bias,
                 const float* residual, F f) {
  for (int64_t r = b; r < e; ++r) {
    float* row = y + r * out;
    const float* res = residual ? residual + r * out : nullptr;
    if (bias && res)
      for (int64_t j = 0; j < out; ++j) row[j] = f(row[j] + bias[j] + res[j]);
    else if (bias)
      for (int64_t j = 0; j < out; ++j) row[j] = f(row[j] + bias[j]);
    else if (res)
      for (int64_t j = 0; j < out; ++j) row[j] = f(row[j] + res[j]);
    else
      for (int64_t j = 0; j < out; ++j) row[j] = f(row[j]);
  }
}

// GELU, SiLU, sigmoid and tanh: the op's own vectorized CPU kernel over y in place
// (elementwise kernels read each element before writing it).
void activate_in_place(ops::Act act, const OpContext& c, Tensor& y) {
  std::string name;
  AttrMap attrs;
  switch (act) {
    case ops::Act::Gelu: name = "gelu", attrs = {{"approximate", std::string("none")}}; break;
    case ops::Act::GeluTanh: name = "gelu", attrs = {{"approximate", std::string("tanh")}}; break;
    case ops::Act::Silu: name = "silu"; break;
    case ops::Act::Sigmoid: name = "sigmoid"; break;
    default: name = "tanh"; break;
  }
  const OpDef& op = get_op(name);
  const OpContext ctx{op, complete_attrs(op, attrs, c.where()), {{DType::Float32, y.shape()}},
                      c.where()};
  std::vector<Tensor> out = {y};
  run_kernel_into(ctx, select_kernel(ctx, DeviceKind::CPU), {y}, out);
}

// One SGEMM over all rows (the library blocks and threads it; tiling the rows here
// repacked the whole weight once per tile), then the epilogue.
void run_fused_linear(SgemmFn sgemm, const KernelCall& kc) {
  const OpContext& c = kc.ctx;
  const Tensor &x = kc.inputs[0], &w = kc.inputs[1];
  Tensor& y = kc.outputs[0];
  const bool linear = c.s("base") == "linear";  // weight [out, in]; matmul's is [in, out]
  const int64_t out = linear ? w.dim(0) : w.dim(1), in = linear ? w.dim(1) : w.dim(0);
  const int64_t rows = out == 0 ? 0 : y.numel() / out;
  if (rows == 0) return;
  const float* bias = c.b("has_bias") ? kc.inputs[2].data<float>() : nullptr;
  const float* residual = c.b("has_residual") ? kc.inputs.back().data<float>() : nullptr;
  const ops::Act act = ops::parse_activation(c.s("activation"));
  const float alpha = static_cast<float>(c.f("alpha"));
  float* py = y.data<float>();
  if (in == 0)
    std::fill(py, py + rows * out, 0.0f);
  else
    sgemm(false, linear, rows, out, in, 1.0f, x.data<float>(), in, w.data<float>(),
          linear ? in : out, 0.0f, py, out);
  const int64_t grain = std::max<int64_t>(1, 16384 / out);
  auto each = [&](auto f) {
    parallel_for(rows, grain, [&](int64_t b, int64_t e) { add_and_map(py, b, e, out, bias, residual, f); });
  };
  switch (act) {
    case ops::Act::Relu:
      each([](float v) { return v > 0.0f || v != v ? v : 0.0f; });
      break;
    case ops::Act::LeakyRelu:
      each([alpha](float v) { return v > 0.0f ? v : v * alpha; });
      break;
    default:
      if (bias || residual) each([](float v) { return v; });
      if (act != ops::Act::None) activate_in_place(act, c, y);
  }
}

}  // namespace

void register_fused_gemm_kernel(SgemmFn sgemm, const std::string& impl, int priority,
                                std::function<bool(const GemmSize&)> prefer) {
  auto supports = [prefer](const OpContext& c) {
    for (const auto& t : c.inputs)
      if (t.dtype != DType::Float32) return false;
    const Shape& w = c.inputs[1].shape;
    const bool linear = c.s("base") == "linear";
    const int64_t out = linear ? w[0] : w[1], in = linear ? w[1] : w[0];
    const int64_t x_numel = numel(c.inputs[0].shape);
    return prefer({in == 0 ? 0 : x_numel / in, out, in});
  };
  register_kernel("fused_linear", DeviceKind::CPU,
                  {[sgemm](const KernelCall& k) { run_fused_linear(sgemm, k); }, supports,
                   impl + "+epilogue", priority});
}

}  // namespace ds::cpu
