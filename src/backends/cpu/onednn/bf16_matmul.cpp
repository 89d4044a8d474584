// bfloat16 matmul, linear and gemm through oneDNN's matmul primitive on CPUs with the
// bf16 dot-product instructions (avx512_bf16): bf16 operands, float32
// accumulation, one rounding to the bf16 output — the semantics of the emulated
// kernel, at the hardware's speed. linear's weight [out, in] is read transposed in
// place (strides), its bias added in float32 by the primitive.
#include "backends/cpu/onednn/bf16_common.h"
#include "ir/ops/linalg_shapes.h"
#include "ir/ops/op_helpers.h"

namespace ds::cpu::onednn {

bool native_bf16() {
  static const bool yes = [] {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto want = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
    return (isa & want) == want;
  }();
  return yes;
}

namespace {

using dnnl::memory;

struct Matmul {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

// y[m, n] = x @ w (+ bias[n]), x [m, k] and w [k, n] row-major or stored transposed
// ([k, m], [n, k]: read through strides, as linear's weight and gemm's trans flags).
std::shared_ptr<Matmul> matmul(int64_t m, int64_t n, int64_t k, bool x_transposed,
                               bool w_transposed, bool bias, int threads) {
  const std::string key =
      "bf16_matmul" + dims_key({m, n, k, x_transposed, w_transposed, bias, threads});
  return cached<Matmul>(key, [&] {
    const memory::desc x({m, k}, memory::data_type::bf16,
                         x_transposed ? memory::dims{1, m} : memory::dims{k, 1});
    const memory::desc w({k, n}, memory::data_type::bf16,
                         w_transposed ? memory::dims{1, k} : memory::dims{n, 1});
    const memory::desc y({m, n}, memory::data_type::bf16, memory::dims{n, 1});
    const dnnl::matmul::desc d = bias ? dnnl::matmul::desc(x, w, plain_bf16({1, n}), y)
                                      : dnnl::matmul::desc(x, w, y);
    dnnl::matmul::primitive_desc pd(d, user_scratchpad(), engine());
    return std::make_shared<Matmul>(Matmul{pd, dnnl::matmul(pd)});
  });
}

void run(const Matmul& p, const void* x, const void* w, const void* bias, void* y) {
  const Scratchpad scratch(p.pd);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(p.pd.src_desc(), engine(), const_cast<void*>(x))},
      {DNNL_ARG_WEIGHTS, memory(p.pd.weights_desc(), engine(), const_cast<void*>(w))},
      {DNNL_ARG_DST, memory(p.pd.dst_desc(), engine(), y)},
      {DNNL_ARG_SCRATCHPAD, scratch.mem()}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(p.pd.bias_desc(), engine(), const_cast<void*>(bias)));
  p.prim.execute(stream(), args);
  stream().wait();
}

int64_t count(const Shape& s) { return numel(s); }

void run_matmul(const KernelCall& kc) {
  const Tensor &a = kc.inputs[0], &b = kc.inputs[1];
  Tensor& y = kc.outputs[0];
  const auto d = ops::matmul_dims(a.shape(), b.shape(), kc.ctx.where());
  const int threads = use_ds_threads();
  const auto* pa = a.data<BFloat16>();
  const auto* pb = b.data<BFloat16>();
  auto* out = y.data<BFloat16>();
  // A batch over a shared right operand runs as one GEMM with the batch folded into M.
  if (count(d.b_batch) == 1 && count(d.a_batch) == count(d.batch)) {
    run(*matmul(d.m * count(d.batch), d.n, d.k, false, false, false, threads), pa, pb, nullptr, out);
    return;
  }
  const auto p = matmul(d.m, d.n, d.k, false, false, false, threads);
  const auto ia = ops::broadcast_index(d.a_batch, d.batch);
  const auto ib = ops::broadcast_index(d.b_batch, d.batch);
  for (size_t i = 0; i < ia.size(); ++i)
    run(*p, pa + ia[i] * d.m * d.k, pb + ib[i] * d.k * d.n, nullptr,
        out + static_cast<int64_t>(i) * d.m * d.n);
}

void run_linear(const KernelCall& kc) {
  const Tensor &x = kc.inputs[0], &w = kc.inputs[1];
  Tensor& y = kc.outputs[0];
  const int64_t out = w.dim(0), in = w.dim(1), rows = y.numel() / out;
  const bool bias = kc.inputs.size() > 2;
  run(*matmul(rows, out, in, false, true, bias, use_ds_threads()), x.raw_data(), w.raw_data(),
      bias ? kc.inputs[2].raw_data() : nullptr, y.raw_data());
}

// gemm without an addend and with alpha 1 (how autodiff uses it: weight gradients
// as transposed products); the general alpha * op(a) @ op(b) + beta * c stays emulated.
void run_gemm(const KernelCall& kc) {
  const bool ta = kc.ctx.b("trans_a"), tb = kc.ctx.b("trans_b");
  const auto d = ops::gemm_dims(kc.inputs[0].shape(), kc.inputs[1].shape(), ta, tb, kc.ctx.where());
  run(*matmul(d.m, d.n, d.k, ta, tb, false, use_ds_threads()), kc.inputs[0].raw_data(),
      kc.inputs[1].raw_data(), nullptr, kc.outputs[0].raw_data());
}

bool plain_gemm(const OpContext& c) {
  return bf16_call(c) && c.inputs.size() == 2 && c.f("alpha") == 1.0;
}

// A vector operand (rank 1) is a matrix with a unit extent inserted; its strides
// are not the plain ones this kernel assumes, so those calls stay emulated.
bool matrices(const OpContext& c) {
  return bf16_call(c) && c.inputs[0].shape.size() >= 2 && c.inputs[1].shape.size() >= 2;
}

const OpRegistrar reg([] {
  register_kernel("matmul", DeviceKind::CPU, {run_matmul, matrices, "onednn-bf16", 30});
  register_kernel("linear", DeviceKind::CPU, {run_linear, bf16_call, "onednn-bf16", 30});
  register_kernel("gemm", DeviceKind::CPU, {run_gemm, plain_gemm, "onednn-bf16", 30});
});

}  // namespace
}  // namespace ds::cpu::onednn
