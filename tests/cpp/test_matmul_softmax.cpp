// matmul_softmax: softmax(scale * a @ op(b)) over the last axis as one op. The
// CPU kernel (each ISA's row kernels, and the batched, threaded op) against the
// float64 reference on odd sizes; the VJP against finite differences; the fusion
// pass's IR before and after; and attention scores compiling to one kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backends/cpu/matmul_softmax_rows.h"
#include "ds/ds.h"
#include "ir/ops/matmul_softmax.h"
#include "op_check.h"
#include "passes/loop_fusion.h"
#include "passes/pass_manager.h"
#include "reference_run.h"

using ds::DType;
using ds::Graph;
using ds::Shape;
using ds::Tensor;
namespace passes = ds::passes;
namespace test = ds::test;

namespace {

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

const ds::Node& only(const Graph& g, const std::string& op) {
  for (const auto& node : g.nodes())
    if (node.op->name == op) return node;
  throw std::runtime_error("no " + op + " node in\n" + g.str());
}

bool coin_flip(std::mt19937& rng) {
  return std::uniform_int_distribution<int>(0, 1)(rng) == 1;
}

ds::AttrMap attrs(bool trans_b, double scale) {
  return {{"trans_b", trans_b}, {"scale", scale}};
}

// The float64 reference on the same (float32) values.
Tensor reference(const Tensor& a, const Tensor& b, bool trans_b, double scale,
                 const Tensor& mask = Tensor()) {
  std::vector<Tensor> in = {a.to(DType::Float64), b.to(DType::Float64)};
  if (mask.defined()) in.push_back(mask.to(DType::Float64));
  return test::run_reference("matmul_softmax", in, attrs(trans_b, scale));
}

// -inf above the diagonal (key j > query i), 0 elsewhere: the causal mask.
Tensor causal_mask(int64_t rows, int64_t cols) {
  Tensor m = Tensor::zeros({rows, cols});
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = i + 1; j < cols; ++j)
      m.data<float>()[i * cols + j] = -std::numeric_limits<float>::infinity();
  return m;
}

// Integers in [-lim, lim]: their products and sums of a few are exact in float32,
// so large scores test the softmax alone.
Tensor integers(const Shape& shape, uint32_t seed, int lim) {
  std::vector<float> v(static_cast<size_t>(ds::numel(shape)));
  uint32_t s = seed * 2654435761u + 1u;
  for (float& e : v) {
    s = s * 1664525u + 1013904223u;
    e = static_cast<float>(static_cast<int>(s >> 16) % (2 * lim + 1) - lim);
  }
  return Tensor::from_vector(v, shape);
}

struct Case {
  Shape a, b;
  bool trans_b;
  double scale;
};

// Odd sizes: one row, one column, rows and columns off the register tile and the
// vector width (8 x 32 and 6 x 16 tiles, 16 and 8 lanes), K = 0 and 1, batch 1
// and more, a shared b, a broadcast a.
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {{1, 1}, {1, 1}, false, 1.0},          {{1, 5}, {7, 5}, true, 0.5},
      {{3, 7, 5}, {3, 5, 13}, false, 1.0},   {{2, 17, 33}, {2, 45, 33}, true, 0.125},
      {{1, 9, 16}, {1, 32, 16}, true, -0.7}, {{2, 3, 9, 8}, {8, 40}, false, 2.0},
      {{9, 8}, {4, 40, 8}, true, 1.0},       {{2, 1, 6, 4}, {3, 4, 31}, false, 1.5},
      {{130, 70}, {257, 70}, true, 0.11},    {{4, 7, 1}, {4, 1, 17}, false, 3.0},
      {{2, 5, 0}, {2, 0, 9}, false, 1.0},
  };
  return c;
}

}  // namespace

TEST(MatmulSoftmaxKernel, MatchesFloat64ReferenceOnOddShapes) {
  uint32_t seed = 1;
  for (const Case& c : cases()) {
    const Tensor a = test::random_tensor(c.a, seed++, DType::Float32);
    const Tensor b = test::random_tensor(c.b, seed++, DType::Float32);
    const Tensor y = ds::matmul_softmax(a, b, c.trans_b, c.scale);
    const Tensor want = reference(a, b, c.trans_b, c.scale);
    ASSERT_EQ(y.shape(), want.shape()) << ds::shape_str(c.a) << " @ " << ds::shape_str(c.b);
    EXPECT_LT(test::rel_diff(y, test::values(want)), 2e-6)
        << ds::shape_str(c.a) << " @ " << ds::shape_str(c.b) << " trans_b " << c.trans_b;
  }
}

TEST(MatmulSoftmaxKernel, ServedByTheRowKernelsForFloat32Only) {
  const Tensor a32 = test::random_tensor({4, 8}, 1, DType::Float32);
  const Tensor b32 = test::random_tensor({8, 8}, 2, DType::Float32);
  const std::string impl = test::kernel_impl("matmul_softmax", {a32, b32}, attrs(false, 1.0));
  EXPECT_TRUE(impl == "avx512" || impl == "avx2") << impl;
  EXPECT_EQ(test::kernel_impl("matmul_softmax", {a32.to(DType::Float64), b32.to(DType::Float64)},
                              attrs(false, 1.0)),
            "reference");
}

TEST(MatmulSoftmaxKernel, LargeScoresStayFiniteAndEmptyRowsStayEmpty) {
  // Scores up to 20 * 20 * 24 = 9600: exp would overflow without the row max.
  const Tensor a = integers({3, 11, 24}, 1, 20), b = integers({3, 37, 24}, 2, 20);
  const Tensor y = ds::matmul_softmax(a, b, true, 1.0);
  for (double v : test::values(y)) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LT(test::rel_diff(y, test::values(reference(a, b, true, 1.0))), 1e-6);
  const Tensor e = ds::matmul_softmax(Tensor::zeros({2, 0, 4}), Tensor::zeros({2, 4, 3}));
  EXPECT_EQ(e.shape(), (Shape{2, 0, 3}));
}

TEST(MatmulSoftmaxKernel, NanInARowMakesThatRowNan) {
  Tensor a = test::random_tensor({5, 6}, 3, DType::Float32);
  a.data<float>()[2 * 6 + 1] = std::numeric_limits<float>::quiet_NaN();
  const Tensor b = test::random_tensor({6, 19}, 4, DType::Float32);
  const auto y = test::values(ds::matmul_softmax(a, b));
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t c = 0; c < 19; ++c)
      EXPECT_EQ(std::isnan(y[r * 19 + c]), r == 2) << "row " << r << " column " << c;
}

// Masks broadcast to the scores [2, 3, 17, 45] from any trailing shape; the causal
// mask's -inf entries give exact zeros.
TEST(MatmulSoftmaxKernel, AdditiveMasksBroadcastLikeAnAdd) {
  const Tensor a = test::random_tensor({2, 3, 17, 24}, 1, DType::Float32);
  const Tensor b = test::random_tensor({2, 3, 45, 24}, 2, DType::Float32);
  uint32_t seed = 3;
  for (const Shape& ms :
       std::vector<Shape>{{17, 45}, {2, 1, 1, 45}, {45}, {3, 17, 1}, {}, {2, 3, 17, 45}}) {
    const Tensor mask = test::random_tensor(ms, seed++, DType::Float32) * 4.0;
    const Tensor y = ds::matmul_softmax(a, b, true, 0.3, mask);
    EXPECT_LT(test::rel_diff(y, test::values(reference(a, b, true, 0.3, mask))), 2e-6)
        << "mask " << ds::shape_str(ms);
  }
  const Tensor causal = causal_mask(17, 45);
  const Tensor y = ds::matmul_softmax(a, b, true, 0.3, causal);
  const auto v = test::values(y);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t r = 0; r < 17; ++r)
      for (int64_t c = r + 1; c < 45; ++c)
        ASSERT_EQ(v[(i * 17 + r) * 45 + c], 0.0) << r << ", " << c;
  EXPECT_LT(test::rel_diff(y, test::values(reference(a, b, true, 0.3, causal))), 2e-6);
}

// Each ISA's row kernels directly (the op picks one: the other is checked here).
TEST(MatmulSoftmaxKernel, EachIsaRowKernelsMatchTheReference) {
  std::vector<const ds::cpu::MatmulSoftmaxRows*> impls = {ds::cpu::matmul_softmax_rows_avx2(),
                                                          ds::cpu::matmul_softmax_rows_avx512()};
  int tested = 0;
  for (const auto* impl : impls) {
    if (!impl) continue;
    ++tested;
    uint32_t seed = 40;
    for (const Case& c : cases()) {
      if (c.a.size() != 2 || c.b.size() != 2) continue;  // one batch item
      const int64_t m = c.a[0], k = c.a[1], n = c.trans_b ? c.b[0] : c.b[1];
      const Tensor a = test::random_tensor(c.a, seed++, DType::Float32);
      const Tensor b = test::random_tensor(c.b, seed++, DType::Float32);
      std::vector<float> packed(static_cast<size_t>(impl->packed_floats(n, k)));
      std::vector<float> scratch(static_cast<size_t>(impl->scratch_floats(n)));
      impl->pack(b.data<float>(), c.trans_b, n, k, packed.data());
      // No mask, a mask per element (the causal one) and one value per row.
      const Tensor row_mask = test::random_tensor({m, 1}, seed++, DType::Float32) * 3.0;
      for (const Tensor& mask : {Tensor(), causal_mask(m, n), row_mask}) {
        ds::cpu::RowMask rm;
        if (mask.defined()) rm = {mask.data<float>(), mask.dim(1), mask.dim(1) == 1 ? 0 : 1};
        Tensor y = Tensor::empty({m, n});
        impl->rows(a.data<float>(), packed.data(), m, n, k, static_cast<float>(c.scale), rm,
                   y.data<float>(), scratch.data());
        EXPECT_LT(test::rel_diff(y, test::values(reference(a, b, c.trans_b, c.scale, mask))), 2e-6)
            << impl->isa << " " << ds::shape_str(c.a) << " @ " << ds::shape_str(c.b) << " mask "
            << (mask.defined() ? ds::shape_str(mask.shape()) : "none");
      }
    }
  }
  EXPECT_GE(tested, 1);
}

TEST(MatmulSoftmaxOp, VjpMatchesFiniteDifferences) {
  test::expect_vjp_matches_fd(
      "matmul_softmax", {test::random_tensor({2, 3, 4}, 1), test::random_tensor({2, 5, 4}, 2)},
      attrs(true, 0.7));
  test::expect_vjp_matches_fd("matmul_softmax",
                              {test::random_tensor({2, 3, 4}, 3), test::random_tensor({4, 5}, 4)},
                              attrs(false, 1.3));
  // A mask broadcast along the batch and the rows: its gradient sums over them.
  test::expect_vjp_matches_fd("matmul_softmax",
                              {test::random_tensor({2, 3, 4}, 5), test::random_tensor({2, 5, 4}, 6),
                               test::random_tensor({1, 5}, 7)},
                              attrs(true, 0.9));
}

TEST(MatmulSoftmaxOp, BadInputsNameTheOpAndTheShapes) {
  test::expect_error<ds::ShapeError>(
      [] {
        ds::matmul_softmax(Tensor::zeros({4}), Tensor::zeros({4, 3}));
      },
      {"matmul_softmax", "rank >= 2", "[4]"});
  test::expect_error<ds::ShapeError>(
      [] {
        ds::matmul_softmax(Tensor::zeros({2, 4}), Tensor::zeros({5, 3}), true);
      },
      {"matmul_softmax"});
  test::expect_error<ds::TypeError>(
      [] {
        ds::matmul_softmax(Tensor::zeros({2, 4}), Tensor::zeros({4, 3}, DType::Float64));
      },
      {"matmul_softmax", "float32", "float64"});
  test::expect_error<ds::ShapeError>(
      [] {
        ds::matmul_softmax(Tensor::zeros({2, 4}), Tensor::zeros({4, 3}), false, 1.0,
                           Tensor::zeros({5, 2, 3}));
      },
      {"matmul_softmax", "mask", "[5, 2, 3]", "[2, 3]"});
}

// ---- the fusion pass

namespace {

// softmax(q @ k^T / sqrt(d)) on placeholders q, k [heads, seq, d].
Graph attention_scores(int64_t heads, int64_t seq, int64_t d) {
  Graph g;
  const Tensor q = g.placeholder("q", {heads, seq, d});
  const Tensor k = g.placeholder("k", {heads, seq, d});
  g.output(ds::softmax(ds::matmul(q, ds::transpose(k, -2, -1)) / std::sqrt(double(d)), -1), "y");
  return g;
}

}  // namespace

TEST(MatmulSoftmaxFusion, AttentionScoresBecomeOneNodeReadingKInPlace) {
  const Graph g = attention_scores(3, 10, 16);
  const Graph out = passes::matmul_softmax_fusion(g);
  ASSERT_EQ(count_op(out, "matmul_softmax"), 1) << out.str();
  for (const char* gone : {"permute", "matmul", "div", "softmax"})
    EXPECT_EQ(count_op(out, gone), 0) << gone << " in\n" << out.str();
  const ds::Node& n = only(out, "matmul_softmax");
  EXPECT_TRUE(std::get<bool>(n.attrs.at("trans_b")));
  EXPECT_DOUBLE_EQ(std::get<double>(n.attrs.at("scale")), 0.25);
  EXPECT_EQ(out.node(n.inputs[1].node).name, "k");
}

TEST(MatmulSoftmaxFusion, ScalarScalesOnEitherSideMultiply) {
  Graph g;
  const Tensor x = g.placeholder("x", {5, 6});
  const Tensor w = g.constant(test::random_tensor({6, 7}, 1, DType::Float32));
  const Tensor z = (g.constant(Tensor::scalar(3.0)) * ds::matmul(x, w)) / 2.0;
  g.output(ds::softmax(z * 0.5, 1), "y");
  const Graph out = passes::matmul_softmax_fusion(g);
  ASSERT_EQ(count_op(out, "matmul_softmax"), 1) << out.str();
  EXPECT_EQ(count_op(out, "mul") + count_op(out, "div"), 0) << out.str();
  const ds::Node& n = only(out, "matmul_softmax");
  EXPECT_FALSE(std::get<bool>(n.attrs.at("trans_b")));
  EXPECT_DOUBLE_EQ(std::get<double>(n.attrs.at("scale")), 0.75);
}

TEST(MatmulSoftmaxFusion, LeavesWhatItCannotTake) {
  auto unchanged = [](const Graph& g) {
    const Graph out = passes::matmul_softmax_fusion(g);
    EXPECT_EQ(count_op(out, "matmul_softmax"), 0) << out.str();
    EXPECT_EQ(out.nodes().size(), g.nodes().size()) << out.str();
  };
  {  // the product is also an output
    Graph g;
    const Tensor s = ds::matmul(g.placeholder("a", {4, 8}), g.placeholder("b", {8, 4}));
    g.output(ds::softmax(s, -1), "y");
    g.output(s, "scores");
    unchanged(g);
  }
  {  // softmax over another axis
    Graph g;
    g.output(
        ds::softmax(ds::matmul(g.placeholder("a", {2, 4, 8}), g.placeholder("b", {2, 8, 4})), 1),
        "y");
    unchanged(g);
  }
  {  // a scale that is not a constant, and one that is not a scalar
    Graph g;
    const Tensor s = ds::matmul(g.placeholder("a", {4, 8}), g.placeholder("b", {8, 4}));
    g.output(ds::softmax(s * g.placeholder("c", {}), -1), "y");
    unchanged(g);
    Graph h;
    const Tensor t = ds::matmul(h.placeholder("a", {4, 8}), h.placeholder("b", {8, 4}));
    h.output(ds::softmax(t * h.constant(Tensor::full({4}, 2.0)), -1), "y");
    unchanged(h);
  }
  {  // float64 (no fast kernel)
    Graph g;
    g.output(ds::softmax(ds::matmul(g.placeholder("a", {4, 8}, DType::Float64),
                                    g.placeholder("b", {8, 4}, DType::Float64)),
                         -1),
             "y");
    unchanged(g);
  }
  {  // op(b) past a core's cache: [1024, 512] floats = 2 MiB
    Graph g;
    g.output(
        ds::softmax(ds::matmul(g.placeholder("a", {4, 1024}), g.placeholder("b", {1024, 512})), -1),
        "y");
    unchanged(g);
  }
}

TEST(MatmulSoftmaxFusion, CausalMaskJoinsAsTheThirdInput) {
  for (bool mask_first : {false, true}) {
    Graph g;
    const Tensor q = g.placeholder("q", {2, 9, 8});
    const Tensor k = g.placeholder("k", {2, 9, 8});
    const Tensor scores = ds::matmul(q, ds::transpose(k, -2, -1)) * 0.375;
    const Tensor mask = g.constant(causal_mask(9, 9));
    g.output(ds::softmax(mask_first ? mask + scores : scores + mask, -1), "y");
    const Graph out = passes::matmul_softmax_fusion(g);
    ASSERT_EQ(count_op(out, "matmul_softmax"), 1) << out.str();
    EXPECT_EQ(count_op(out, "add") + count_op(out, "matmul") + count_op(out, "mul"), 0)
        << out.str();
    const ds::Node& n = only(out, "matmul_softmax");
    ASSERT_EQ(n.inputs.size(), 3u);
    EXPECT_EQ(out.node(n.inputs[2].node).op->name, "constant");
    EXPECT_DOUBLE_EQ(std::get<double>(n.attrs.at("scale")), 0.375);
    const auto fused = ds::compile(g, "cpu", {.opt_level = 2});
    EXPECT_EQ(fused.stats().kernels, 1);
    const std::map<std::string, Tensor> feeds = {
        {"q", test::random_tensor({2, 9, 8}, 1, DType::Float32)},
        {"k", test::random_tensor({2, 9, 8}, 2, DType::Float32)}};
    const Tensor want = ds::reference::reference_run(g, feeds).at("y");
    EXPECT_LT(test::rel_diff(fused.run(feeds).at("y"), test::values(want)), 2e-6);
  }
}

TEST(MatmulSoftmaxFusion, AMaskThatWidensTheScoresStays) {
  Graph g;
  const Tensor s = ds::matmul(g.placeholder("a", {4, 8}), g.placeholder("b", {8, 4}));
  g.output(ds::softmax(s + g.placeholder("m", {3, 4, 4}), -1), "y");
  const Graph out = passes::matmul_softmax_fusion(g);
  EXPECT_EQ(count_op(out, "matmul_softmax"), 0) << out.str();
}

TEST(MatmulSoftmaxFusion, TransposeReadElsewhereStays) {
  Graph g;
  const Tensor q = g.placeholder("q", {6, 8});
  const Tensor kt = ds::transpose(g.placeholder("k", {5, 8}), -2, -1);
  g.output(ds::softmax(ds::matmul(q, kt), -1), "y");
  g.output(kt, "kt");
  const Graph out = passes::matmul_softmax_fusion(g);
  EXPECT_EQ(count_op(out, "matmul_softmax"), 1) << out.str();
  EXPECT_EQ(count_op(out, "permute"), 1) << out.str();
  EXPECT_EQ(count_op(out, "matmul"), 0) << out.str();
}

TEST(MatmulSoftmaxFusion, CompiledAttentionScoresRunAsOneKernelAndMatchTheReference) {
  for (const auto& [heads, seq, d] :
       std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 1, 1}, {1, 37, 24}, {12, 45, 64}}) {
    const Graph g = attention_scores(heads, seq, d);
    const auto fused = ds::compile(g, "cpu", {.opt_level = 2});
    const auto plain = ds::compile(g, "cpu", {.opt_level = 0});
    EXPECT_EQ(fused.stats().kernels, 1);
    EXPECT_EQ(plain.stats().kernels, 4);  // permute, matmul, div, softmax
    const std::map<std::string, Tensor> feeds = {
        {"q", test::random_tensor({heads, seq, d}, 7, DType::Float32) * 3.0},
        {"k", test::random_tensor({heads, seq, d}, 8, DType::Float32) * 3.0}};
    const Tensor want = ds::reference::reference_run(g, feeds).at("y");
    EXPECT_LT(test::rel_diff(fused.run(feeds).at("y"), test::values(want)), 2e-6);
  }
}

TEST(MatmulSoftmaxFusion, SymbolicBatchOverASharedMatrix) {
  const Tensor w = test::random_tensor({16, 7}, 1, DType::Float32);
  auto build = [&](int64_t batch) {
    Graph g;
    const Tensor x = g.placeholder("x", {batch, 10, 16});
    g.output(ds::softmax(ds::matmul(x, g.constant(w)) * 0.5, -1), "y");
    return g;
  };
  const auto fused = ds::compile(build(ds::dyn), "cpu", {.opt_level = 2});
  EXPECT_EQ(count_op(fused.graph(), "matmul_softmax"), 1) << fused.graph().str();
  for (int64_t batch : {1, 3, 5}) {
    const std::map<std::string, Tensor> feeds = {
        {"x",
         test::random_tensor({batch, 10, 16}, 9 + static_cast<uint32_t>(batch), DType::Float32)}};
    const Tensor want = ds::reference::reference_run(build(batch), feeds).at("y");
    EXPECT_LT(test::rel_diff(fused.run(feeds).at("y"), test::values(want)), 2e-6) << batch;
  }
}

// Seeded random softmax(matmul) graphs: rank 2-4 operands (b shared or batched), a
// transposed or plain b, a chain of scalar scales, sometimes a mask of the scores'
// trailing shape with broadcast dims, compiled at opt_level 2 against the reference
// interpreter of the unfused graph.
TEST(MatmulSoftmaxFusion, RandomGraphsMatchTheReferenceInterpreter) {
  std::mt19937 rng(2024);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int c = 0; c < 40; ++c) {
    const int64_t m = pick(1, 40), n = pick(1, 70), k = pick(1, 50);
    Shape batch;
    for (int r = pick(0, 2); r > 0; --r) batch.push_back(pick(1, 3));
    const bool shared_b = coin_flip(rng), trans_b = coin_flip(rng);
    Shape as = batch, bs = shared_b ? Shape{} : batch;
    as.insert(as.end(), {m, k});
    bs.insert(bs.end(), trans_b ? std::initializer_list<int64_t>{n, k}
                                : std::initializer_list<int64_t>{k, n});
    Graph g;
    const Tensor a = g.placeholder("a", as), b = g.placeholder("b", bs);
    Tensor z = ds::matmul(a, trans_b ? ds::transpose(b, -2, -1) : b);
    double factor = 1;  // the scores' float32 rounding grows with it
    for (int s = pick(0, 2); s > 0; --s) {
      if (coin_flip(rng)) {
        const double c = 0.25 + pick(0, 8);
        factor *= c;
        z = z * c;
      } else {
        const double d = 0.5 + pick(0, 4);
        factor /= d;
        z = z / d;
      }
    }
    Shape ms = z.shape();
    ms.erase(ms.begin(), ms.begin() + pick(0, static_cast<int>(ms.size())));
    for (int64_t& d : ms) d = coin_flip(rng) ? d : 1;
    const bool masked = coin_flip(rng);
    if (masked) z = z + g.placeholder("m", ms);
    g.output(ds::softmax(z, -1), "y");
    const auto fused = ds::compile(g, "cpu", {.opt_level = 2});
    ASSERT_EQ(count_op(fused.graph(), "matmul_softmax"), 1) << "case " << c << "\n" << g.str();
    std::map<std::string, Tensor> feeds = {
        {"a", test::random_tensor(as, 100 + c, DType::Float32) * 2.0},
        {"b", test::random_tensor(bs, 200 + c, DType::Float32) * 2.0}};
    if (masked) feeds["m"] = test::random_tensor(ms, 300 + c, DType::Float32) * 5.0;
    const Tensor want = ds::reference::reference_run(g, feeds).at("y");
    EXPECT_LT(test::rel_diff(fused.run(feeds).at("y"), test::values(want)),
              2e-6 * std::max(1.0, factor))
        << "case " << c << "\n"
        << g.str();
  }
}
