// scaled_dot_product_attention: the op (float64 reference, composed CPU kernel,
// gradients by finite differences, input checks) and its fused CUDA kernels
// (forward and backward, causal or not) against the float64 reference.
#include <gtest/gtest.h>

#include <cmath>

#include "ds/cuda.h"
#include "ds/ds.h"
#include "gradcheck.h"
#include "ir/ops/attention.h"
#include "op_check.h"
#include "runtime/dispatch.h"

using ds::DType;
using ds::Shape;
using ds::Tensor;

#define DS_REQUIRE_GPU()             \
  if (ds::cuda::device_count() == 0) \
  GTEST_SKIP() << "no CUDA device: " << ds::cuda::unavailable_reason()

namespace {

struct Case {
  Shape q, k;  // [..., S, D] ([..., S, H, D] with bshd); v has k's shape
  bool causal;
  bool bshd = false;
};

const std::vector<Case> kCases = {{{1, 1, 1, 1}, {1, 1, 1, 1}, false},
                                  {{2, 3, 17, 16}, {2, 3, 17, 16}, false},
                                  {{2, 3, 17, 16}, {2, 3, 17, 16}, true},
                                  {{1, 2, 130, 64}, {1, 2, 130, 64}, true},
                                  {{2, 1, 33, 64}, {2, 1, 77, 64}, false},
                                  {{2, 1, 77, 64}, {2, 1, 33, 64}, true},
                                  {{3, 65, 128}, {3, 65, 128}, true},
                                  {{1, 5, 40}, {1, 9, 40}, false},
                                  {{2, 0, 8}, {2, 3, 8}, false},
                                  // [B, S, H, D]: the sequence before the heads
                                  {{2, 17, 3, 16}, {2, 17, 3, 16}, true, true},
                                  {{1, 130, 2, 64}, {1, 130, 2, 64}, true, true},
                                  {{2, 33, 3, 64}, {2, 77, 3, 64}, false, true},
                                  {{2, 5, 3, 40}, {2, 9, 3, 40}, false, true},
                                  {{7, 2, 8}, {5, 2, 8}, true, true}};

// Runs `op` on `inputs` with the kernel `device` picks (inputs moved there) and
// with the reference kernel; returns (got, want) per output, on the CPU.
std::vector<std::pair<Tensor, Tensor>> run_both(const std::string& op,
                                                const std::vector<Tensor>& inputs,
                                                const ds::AttrMap& attrs, ds::DeviceKind device,
                                                std::string* impl) {
  const ds::OpDef& def = ds::get_op(op);
  const ds::AttrMap full = ds::complete_attrs(def, attrs, op);
  std::vector<ds::TensorType> types;
  for (const Tensor& t : inputs) types.push_back({t.dtype(), t.shape()});
  const ds::OpContext ctx{def, full, types, op + " test"};
  const auto out_types = def.infer(ctx);
  const ds::KernelEntry& k = ds::select_kernel(ctx, device);
  *impl = k.impl;
  const ds::Device where = device == ds::DeviceKind::CUDA ? ds::Device::cuda() : ds::Device::cpu();
  std::vector<Tensor> in;
  for (const Tensor& t : inputs) in.push_back(t.to(where));
  std::vector<Tensor> outs;
  for (const auto& t : out_types) outs.push_back(Tensor::empty(t.shape, t.dtype, where));
  k.fn(ds::KernelCall{ctx, in, outs});
  const ds::KernelEntry reference{def.reference, {}, "reference"};
  const auto want = ds::run_kernel(ctx, reference, inputs, out_types);
  std::vector<std::pair<Tensor, Tensor>> r;
  for (size_t i = 0; i < outs.size(); ++i) r.emplace_back(outs[i].to(ds::Device::cpu()), want[i]);
  return r;
}

double max_error(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.shape(), want.shape());
  EXPECT_EQ(got.dtype(), want.dtype());
  const auto g = ds::test::values(got), w = ds::test::values(want);
  double worst = 0;
  for (size_t i = 0; i < w.size(); ++i)
    worst = std::max(worst, std::abs(g[i] - w[i]) / (1 + std::abs(w[i])));
  return worst;
}

Tensor inputs_like(const Shape& s, uint32_t seed, DType t) {
  return ds::test::random_tensor(s, seed).to(t);
}

// Forward (out and lse) and backward (with the forward's lse and without) of
// every case through the kernels `device` picks. `mma_impl` serves head sizes
// that are a multiple of 16, `other_impl` the rest; `lse_impl`, where given,
// serves head sizes that are a multiple of 8 in the forward and in the backward
// that reads lse (cuDNN's fused attention).
void check_kernels(ds::DeviceKind device, DType t, double tol, const std::string& mma_impl,
                   const std::string& other_impl, const std::string& lse_impl = "") {
  uint32_t seed = 10;
  for (const Case& c : kCases) {
    Shape o = c.q;
    o.back() = c.k.back();
    const Tensor q = inputs_like(c.q, ++seed, t), k = inputs_like(c.k, ++seed, t),
                 v = inputs_like(c.k, ++seed, t), g = inputs_like(o, ++seed, t);
    const ds::AttrMap attrs = {{"causal", c.causal},
                               {"layout", std::string(c.bshd ? "bshd" : "bhsd")}};
    const std::string what = std::string(ds::dtype_name(t)) + " q" + ds::shape_str(c.q) + " k" +
                             ds::shape_str(c.k) + (c.causal ? " causal" : "") +
                             (c.bshd ? " bshd" : "");
    std::string impl;
    // The mma kernels take [..., H, S, D] only.
    const std::string& own_impl = c.q.back() % 16 == 0 && !c.bshd ? mma_impl : other_impl;
    const int64_t sq = c.q[c.q.size() - (c.bshd ? 3 : 2)];
    const bool lse_served = !lse_impl.empty() && c.q.back() % 8 == 0 && sq > 0;
    const std::string& fwd_impl = lse_served ? lse_impl : own_impl;
    const auto fwd = run_both("scaled_dot_product_attention", {q, k, v}, attrs, device, &impl);
    EXPECT_EQ(impl, fwd_impl) << what;
    EXPECT_LE(max_error(fwd[0].first, fwd[0].second), tol) << "forward " << what;
    EXPECT_LE(max_error(fwd[1].first, fwd[1].second), std::max(tol, 1e-5)) << "lse " << what;
    const Tensor &out = fwd[0].second, &lse = fwd[1].second;
    for (const bool with_lse : {true, false}) {
      std::vector<Tensor> in = {q, k, v, out, g};
      if (with_lse) in.push_back(lse);
      const auto bwd = run_both("scaled_dot_product_attention_backward", in, attrs, device, &impl);
      EXPECT_EQ(impl, with_lse ? fwd_impl : own_impl) << what << (with_lse ? " with lse" : "");
      const char* names[] = {"dq", "dk", "dv"};
      for (int i = 0; i < 3; ++i)
        EXPECT_LE(max_error(bwd[i].first, bwd[i].second), tol * 4)
            << names[i] << " " << what << (with_lse ? " with lse" : "");
    }
  }
}

}  // namespace

TEST(AttentionOp, ComposedCpuKernelMatchesTheReference) {
  check_kernels(ds::DeviceKind::CPU, DType::Float64, 1e-12, "matmul-softmax", "matmul-softmax");
  check_kernels(ds::DeviceKind::CPU, DType::Float32, 1e-5, "matmul-softmax", "matmul-softmax");
}

TEST(AttentionOp, CausalMaskHidesLaterKeys) {
  // With causal, query 0 sees key 0 only: its output is v[0].
  const Tensor q = ds::test::random_tensor({1, 4, 8}, 1), k = ds::test::random_tensor({1, 4, 8}, 2);
  const Tensor v = ds::test::random_tensor({1, 4, 8}, 3);
  const Tensor out = ds::scaled_dot_product_attention(q, k, v, true);
  const auto o = ds::test::values(out), vv = ds::test::values(v);
  for (int e = 0; e < 8; ++e) EXPECT_NEAR(o[e], vv[e], 1e-15);
  // A huge scale makes each row pick its best-scoring visible key.
  const Tensor sharp = ds::scaled_dot_product_attention(q, k, v, false, 1e4);
  const Tensor s = ds::matmul(q, ds::transpose(k, -2, -1));
  const auto sv = ds::test::values(s), shv = ds::test::values(sharp);
  for (int i = 0; i < 4; ++i) {
    int best = 0;
    for (int j = 1; j < 4; ++j) best = sv[i * 4 + j] > sv[i * 4 + best] ? j : best;
    for (int e = 0; e < 8; ++e) EXPECT_NEAR(shv[i * 8 + e], vv[best * 8 + e], 1e-9);
  }
}

TEST(AttentionOp, SeqBeforeHeadsLayoutIsTheTransposedOp) {
  // layout "bshd" on [B, S, H, D] equals the default layout on the transposed inputs.
  const Tensor q = ds::test::random_tensor({2, 7, 3, 8}, 1),
               k = ds::test::random_tensor({2, 9, 3, 8}, 2);
  const Tensor v = ds::test::random_tensor({2, 9, 3, 8}, 3);
  const Tensor got = ds::scaled_dot_product_attention(q, k, v, true, 0, "bshd");
  auto t = [](const Tensor& x) { return ds::transpose(x, 1, 2); };
  const Tensor want = t(ds::scaled_dot_product_attention(t(q), t(k), t(v), true));
  EXPECT_LE(max_error(got, want.contiguous()), 1e-14);
  EXPECT_THROW(ds::scaled_dot_product_attention(q, k, v, true, 0, "bsdh"), ds::ValueError);
  const Tensor flat = ds::test::random_tensor({7, 8}, 4);
  EXPECT_THROW(ds::scaled_dot_product_attention(flat, flat, flat, false, 0, "bshd"),
               ds::ShapeError);
}

TEST(AttentionOp, GradientsMatchFiniteDifferences) {
  for (bool causal : {false, true}) {
    const Tensor wb = ds::testing::lcg_tensor({2, 5, 2, 3}, 8);
    auto bshd = [&](const std::vector<Tensor>& a) {
      return ds::sum(ds::scaled_dot_product_attention(a[0], a[1], a[2], causal, 0.7, "bshd") * wb);
    };
    ds::testing::expect_gradients_match(
        bshd,
        {ds::testing::lcg_tensor({2, 5, 2, 4}, 1), ds::testing::lcg_tensor({2, 6, 2, 4}, 2),
         ds::testing::lcg_tensor({2, 6, 2, 3}, 3)},
        {0, 1, 2});
    const Tensor w = ds::testing::lcg_tensor({2, 5, 3}, 9);
    auto fn = [&](const std::vector<Tensor>& a) {
      return ds::sum(ds::scaled_dot_product_attention(a[0], a[1], a[2], causal, 0.7) * w);
    };
    ds::testing::expect_gradients_match(
        fn,
        {ds::testing::lcg_tensor({2, 5, 4}, 1), ds::testing::lcg_tensor({2, 6, 4}, 2),
         ds::testing::lcg_tensor({2, 6, 3}, 3)},
        {0, 1, 2});
  }
}

TEST(AttentionOp, BadInputsNameTheOpAndTheShapes) {
  const Tensor q = Tensor::zeros({2, 5, 4}, DType::Float32);
  try {
    ds::scaled_dot_product_attention(q, Tensor::zeros({2, 5, 3}, DType::Float32), q);
    ADD_FAILURE() << "a head-size mismatch was accepted";
  } catch (const ds::ShapeError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("scaled_dot_product_attention"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 5, 3]"), std::string::npos) << m;
  }
  EXPECT_THROW(ds::scaled_dot_product_attention(q, Tensor::zeros({2, 0, 4}, DType::Float32),
                                                Tensor::zeros({2, 0, 4}, DType::Float32)),
               ds::ShapeError);  // no keys
  EXPECT_THROW(ds::scaled_dot_product_attention(q, q, Tensor::zeros({2, 5, 4}, DType::Float64)),
               ds::TypeError);
}

TEST(CudaAttention, FusedKernelsMatchTheFloat64Reference) {
  DS_REQUIRE_GPU();
  check_kernels(ds::DeviceKind::CUDA, DType::Float64, 1e-12, "nvrtc-flash", "nvrtc-flash");
  check_kernels(ds::DeviceKind::CUDA, DType::Float32, 2e-5, "nvrtc-flash", "nvrtc-flash");
  // bf16/fp16 on tensor cores: P and dS are rounded to the dtype as mma operands.
#ifdef DS_HAVE_CUDNN_ATTENTION
  const std::string cudnn = "cudnn-sdpa";
#else
  const std::string cudnn;
#endif
  check_kernels(ds::DeviceKind::CUDA, DType::Float16, 4e-3, "nvrtc-flash-mma", "nvrtc-flash",
                cudnn);
  check_kernels(ds::DeviceKind::CUDA, DType::BFloat16, 3e-2, "nvrtc-flash-mma", "nvrtc-flash",
                cudnn);
}

namespace {

// sum(attention(q, k, v, causal) * w) and its gradients compiled for cuda with
// `options`: `impl` serves the forward and the backward op, and the loss and the
// gradients match the float32 CPU graph within `tol`.
void check_training_graph(const Shape& s, const std::string& layout,
                          const ds::CompileOptions& options, const std::string& impl, double tol) {
  ds::Graph g;
  Tensor q = g.placeholder("q", s), k = g.placeholder("k", s), v = g.placeholder("v", s);
  Tensor w = g.placeholder("w", s);
  const Tensor loss = ds::sum(ds::scaled_dot_product_attention(q, k, v, true, 0, layout) * w);
  const auto grads = ds::grad(g, loss, {q, k, v});
  g.output(loss, "loss");
  for (size_t i = 0; i < grads.size(); ++i) g.output(grads[i], "g" + std::to_string(i));
  const ds::Executable gpu = ds::compile(g, "cuda", options);
  const std::string plan = gpu.explain(), step = impl + " [cuda]";
  int steps = 0;
  for (size_t at = plan.find(step); at != std::string::npos; at = plan.find(step, at + 1)) ++steps;
  EXPECT_EQ(steps, 2) << plan;
  std::vector<Tensor> feeds;
  for (uint32_t i = 0; i < 4; ++i)
    feeds.push_back(ds::test::random_tensor(s, 50 + i).to(DType::Float32));
  const auto got = gpu.run(feeds);
  const auto want = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_LE(max_error(got[i], want[i]), tol) << i;
}

}  // namespace

TEST(CudaAttention, TrainingGraphRunsForwardAndBackwardOnTheGpu) {
  DS_REQUIRE_GPU();
  check_training_graph({2, 4, 48, 32}, "bhsd", {.opt_level = 0}, "nvrtc-flash", 1e-4);
  check_training_graph({2, 48, 4, 32}, "bshd", {.opt_level = 0}, "nvrtc-flash", 1e-4);
}

#ifdef DS_HAVE_CUDNN_ATTENTION
TEST(CudaAttention, Bf16TrainingGraphRunsOnCudnnsFusedAttention) {
  DS_REQUIRE_GPU();
  // GPT-2's attention (smaller) under autocast: cuDNN runs the forward and the
  // backward op, the backward reading the forward's lse; bf16's rounding bounds
  // the difference to the float32 CPU graph.
  check_training_graph({2, 12, 128, 64}, "bhsd", {.precision = "bf16"}, "cudnn-sdpa", 5e-2);
  check_training_graph({2, 128, 12, 64}, "bshd", {.precision = "bf16"}, "cudnn-sdpa", 5e-2);
}
#endif

TEST(AttentionOp, AutocastRunsAttentionAndItsGradientInLowPrecision) {
  ds::Graph g;
  Tensor q = g.placeholder("q", {2, 9, 16}), k = g.placeholder("k", {2, 9, 16});
  Tensor v = g.placeholder("v", {2, 9, 16});
  const Tensor loss = ds::sum(ds::scaled_dot_product_attention(q, k, v, true));
  g.output(loss, "loss");
  g.output(ds::grad(g, loss, {q})[0], "dq");
  const ds::Executable low = ds::compile(g, "cpu", {.opt_level = 0, .precision = "bf16"});
  int attention_nodes = 0;
  for (const ds::Node& n : low.graph().nodes()) {
    if (n.op->name.rfind("scaled_dot_product_attention", 0) != 0) continue;
    ++attention_nodes;
    EXPECT_EQ(low.graph().type(n.inputs[0]).dtype, DType::BFloat16) << n.label();
    if (n.op->name == "scaled_dot_product_attention_backward") {  // lse stays float32
      ASSERT_EQ(n.inputs.size(), 6u) << n.label();
      EXPECT_EQ(low.graph().type(n.inputs[5]).dtype, DType::Float32) << n.label();
    }
  }
  EXPECT_EQ(attention_nodes, 2);  // the forward and the backward op
  std::vector<Tensor> feeds;
  for (uint32_t s = 0; s < 3; ++s)
    feeds.push_back(ds::test::random_tensor({2, 9, 16}, 70 + s).to(DType::Float32));
  const auto got = low.run(feeds);
  const auto want = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds);
  EXPECT_LE(max_error(got[0], want[0]), 0.1);
  EXPECT_LE(max_error(got[1], want[1]), 0.1);
}
