// Row reductions inside fused regions: softmax, log_softmax, layer_norm and
// RMSNorm (spelled out or decomposed from their ops) with the elementwise ops
// before and after them as one kernel. The JIT kernel is checked against the
// kernel IR's reference interpreter and the graph against the unfused ops
// (their float64 reference kernels), on rows of length 1, odd and large.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "codegen/jit.h"
#include "codegen/kernel_ir.h"
#include "codegen/row_plan.h"
#include "ds/ds.h"
#include "op_check.h"
#include "passes/pass_manager.h"

using ds::DType;
using ds::Graph;
using ds::Shape;
using ds::Tensor;
namespace codegen = ds::codegen;

namespace {

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

// Worst |a - b| in units of the dtype's rounding of max(|a|, |b|, 1).
double worst_ulps(const Tensor& a, const Tensor& b, DType dt) {
  const auto av = ds::test::values(a), bv = ds::test::values(b);
  EXPECT_EQ(av.size(), bv.size());
  const double ulp = std::ldexp(1.0, dt == DType::Float32 ? -23 : -52);
  double worst = 0;
  for (size_t i = 0; i < av.size() && i < bv.size(); ++i) {
    if (std::isnan(av[i]) && std::isnan(bv[i])) continue;
    const double mag = std::max({std::abs(av[i]), std::abs(bv[i]), 1.0});
    worst = std::max(worst, std::abs(av[i] - bv[i]) / (mag * ulp));
  }
  return worst;
}

// The chains under test, each built on x [.., n] and r [.., n] with weights [n].
using Chain = Tensor (*)(Graph&, const Tensor&, const Tensor&, DType);

Tensor weight(Graph& g, int64_t n, uint32_t seed, DType dt) {
  return g.constant(ds::test::random_tensor({n}, seed, dt) + 1.0);
}

Tensor layer_norm_gelu(Graph& g, const Tensor& x, const Tensor& r, DType dt) {
  const int64_t n = x.shape().back();
  return ds::gelu(ds::layer_norm(x + r, {n}, weight(g, n, 11, dt), weight(g, n, 12, dt)));
}
Tensor rms_norm_silu(Graph& g, const Tensor& x, const Tensor& r, DType dt) {
  const int64_t n = x.shape().back();
  return ds::silu(ds::rms_norm(x * r, {n}, weight(g, n, 13, dt))) - r;
}
Tensor scaled_softmax(Graph&, const Tensor& x, const Tensor& r, DType) {
  return ds::softmax(x * 3.0 + r, -1) * 2.0;
}
Tensor log_softmax_tanh(Graph&, const Tensor& x, const Tensor& r, DType) {
  return ds::tanh(ds::log_softmax(ds::exp(x) - r, -1));
}
// layer_norm spelled out with primitive ops, as a traced model would.
Tensor spelled_layer_norm(Graph& g, const Tensor& x, const Tensor& r, DType dt) {
  const int64_t n = x.shape().back();
  Tensor s = x + r;
  Tensor d = s - ds::mean(s, {-1}, true);
  Tensor y = d * ds::rsqrt(ds::mean(d * d, {-1}, true) + 1e-5);
  return ds::relu(y * weight(g, n, 14, dt) + weight(g, n, 15, dt));
}

struct Case {
  const char* name;
  Chain chain;
};
const Case kCases[] = {{"layer_norm_gelu", layer_norm_gelu},
                       {"rms_norm_silu", rms_norm_silu},
                       {"scaled_softmax", scaled_softmax},
                       {"log_softmax_tanh", log_softmax_tanh},
                       {"spelled_layer_norm", spelled_layer_norm}};
const Shape kShapes[] = {{5, 1}, {3, 37}, {2, 3, 4099}, {1, 1}, {16, 64}};

Graph chain_graph(const Case& c, const Shape& shape, DType dt) {
  Graph g;
  Tensor x = g.placeholder("x", shape, dt);
  Tensor r = g.placeholder("r", shape, dt);
  g.output(c.chain(g, x, r, dt), "y");
  return g;
}

std::map<std::string, Tensor> feeds(const Shape& shape, DType dt, uint32_t seed) {
  return {{"x", ds::test::random_tensor(shape, seed, DType::Float64).to(dt) * 2.0},
          {"r", ds::test::random_tensor(shape, seed + 1, DType::Float64).to(dt)}};
}

// The only fused node's region after the pipeline.
const codegen::KernelIR& only_region(const Graph& optimized) {
  for (const auto& node : optimized.nodes())
    if (node.op->name == "fused") return codegen::cached_kernel_ir(std::get<std::string>(node.attrs.at("region")));
  throw ds::Error("no fused node");
}

class FusedRows : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!codegen::jit_available()) GTEST_SKIP() << "built without LLVM: loop fusion is off";
  }
};

}  // namespace

TEST(KernelIR, RowRegistersRoundTripAndInterpret) {
  const std::string text =
      "region v1 shape=[4,6]\nin float64 [4,6]\nin float64 [4,1]\nin float64 [6]\n"
      "%3 = mean float64 %0\n%4 = sub float64 %0 %3\n%5 = mul float64 %4 %4\n"
      "%6 = mean float64 %5\n%7 = add float64 %6 %1\n%8 = rsqrt float64 %7\n"
      "%9 = mul float64 %4 %8\n%10 = mul float64 %9 %2\nout %10 %8\n";
  const codegen::KernelIR ir = codegen::parse_kernel_ir(text);
  EXPECT_EQ(ir.str(), text);
  const auto row = ir.row_registers();
  EXPECT_EQ(row, (std::vector<bool>{false, false, false, true, false, false, true, true, true,
                                    false, false}));
  ASSERT_EQ(ir.result_types().size(), 2u);
  EXPECT_EQ(ir.result_types()[0].shape, (Shape{4, 6}));
  EXPECT_EQ(ir.result_types()[1].shape, (Shape{4, 1}));
  // Passes: the mean, then the variance, then the stores.
  const codegen::RowPlan plan = codegen::plan_rows(ir);
  ASSERT_EQ(plan.passes.size(), 3u);
  EXPECT_EQ(plan.passes[0].reductions, (std::vector<int>{3}));
  EXPECT_EQ(plan.passes[1].reductions, (std::vector<int>{6}));
  EXPECT_EQ(plan.passes[1].row_insts, (std::vector<int>{7, 8}));
  EXPECT_EQ(plan.passes[2].outputs, (std::vector<int>{0}));
  EXPECT_EQ(plan.row_outputs, (std::vector<int>{1}));

  Tensor x = ds::test::random_tensor({4, 6}, 1), eps = ds::test::random_tensor({4, 1}, 2) + 1.5;
  Tensor w = ds::test::random_tensor({6}, 3);
  const auto out = codegen::interpret(ir, {x, eps, w});
  Tensor d = x - ds::mean(x, {-1}, true);
  Tensor rstd = ds::rsqrt(ds::mean(d * d, {-1}, true) + eps);
  EXPECT_LE(ds::test::rel_diff(out[0], ds::test::values(d * rstd * w)), 1e-15);
  EXPECT_LE(ds::test::rel_diff(out[1], ds::test::values(rstd)), 1e-15);
}

TEST(KernelIR, RejectsMisplacedRowValues) {
  const std::string head = "region v1 shape=[4,6]\nin float32 [4,6]\n%1 = sum float32 %0\n";
  EXPECT_NO_THROW(codegen::parse_kernel_ir(head + "out %1\n"));
  // A row register reduced again along the row.
  EXPECT_THROW(codegen::parse_kernel_ir(head + "%2 = max float32 %1\nout %2\n"), ds::ValueError);
  // A row reduction with attributes, or of another dtype.
  EXPECT_THROW(codegen::parse_kernel_ir("region v1 shape=[4,6]\nin float32 [4,6]\n"
                                        "%1 = sum float32 %0 keepdims=b:1\nout %1\n"),
               ds::ValueError);
  EXPECT_THROW(codegen::parse_kernel_ir("region v1 shape=[4,6]\nin float32 [4,6]\n"
                                        "%1 = sum float64 %0\nout %1\n"),
               ds::ValueError);
  // The trailing reduction cannot reduce a row register.
  EXPECT_THROW(codegen::parse_kernel_ir(head + "reduce sum %1 keepdims=1\nout\n"), ds::ValueError);
  // Empty rows have nothing to reduce.
  EXPECT_THROW(codegen::parse_kernel_ir("region v1 shape=[4,0]\nin float32 [4,0]\n"
                                        "%1 = sum float32 %0\nout %1\n"),
               ds::ValueError);
}

TEST_F(FusedRows, EachChainIsOneKernelMatchingTheUnfusedOps) {
  for (DType dt : {DType::Float32, DType::Float64})
    for (const Case& c : kCases)
      for (const Shape& shape : kShapes) {
        const Graph g = chain_graph(c, shape, dt);
        const auto in = feeds(shape, dt, 21);
        auto plain = ds::compile(g, "cpu", {.opt_level = 0});
        auto fused = ds::compile(g, "cpu", {.opt_level = 2});
        const std::string what = std::string(c.name) + " " + ds::shape_str(shape) + " " +
                                 ds::dtype_name(dt);
        EXPECT_EQ(count_op(fused.graph(), "fused"), 1) << what;
        EXPECT_EQ(fused.stats().kernels, 1) << what << "\n" << fused.graph().str();
        // The unfused ops compute each in float64 and round once; the region rounds
        // after every step in the node's dtype.
        EXPECT_LE(worst_ulps(fused.run(in).at("y"), plain.run(in).at("y"), dt), 64) << what;
      }
}

TEST_F(FusedRows, JitMatchesTheInterpreter) {
  for (DType dt : {DType::Float32, DType::Float64})
    for (const Case& c : kCases)
      for (const Shape& shape : kShapes) {
        const Graph optimized = ds::passes::run_pipeline(chain_graph(c, shape, dt), 2, nullptr);
        const codegen::KernelIR& ir = only_region(optimized);
        std::vector<Tensor> in;
        std::vector<const void*> in_ptrs;
        for (size_t i = 0; i < ir.inputs.size(); ++i) {
          in.push_back(ds::test::random_tensor(ir.inputs[i].shape, 40 + i, DType::Float64)
                           .to(ir.inputs[i].dtype)
                           .contiguous());
          in_ptrs.push_back(in.back().raw_data());
        }
        std::vector<Tensor> out;
        std::vector<void*> out_ptrs;
        for (const auto& t : ir.result_types()) {
          out.push_back(Tensor::zeros(t.shape, t.dtype));
          out_ptrs.push_back(out.back().raw_data());
        }
        codegen::jit_run(ir, in_ptrs, out_ptrs);
        const auto want = codegen::interpret(ir, in);
        ASSERT_EQ(want.size(), out.size());
        for (size_t o = 0; o < out.size(); ++o)
          EXPECT_LE(worst_ulps(out[o], want[o], dt), 16)
              << c.name << " " << ds::shape_str(shape) << " " << ds::dtype_name(dt) << "\n"
              << ir.str();
      }
}

TEST_F(FusedRows, NaNAndInfinityRowsPropagate) {
  Graph g;
  Tensor x = g.placeholder("x", {3, 4});
  g.output(ds::softmax(x * 2.0, -1), "softmax");
  g.output(ds::max(x, {-1}, true) + ds::sum(x, {-1}, true), "both");
  const float inf = INFINITY;
  Tensor xs = Tensor::from_vector<float>({1, NAN, 3, 4, -inf, -2, -3, -4, 5, 6, inf, 1}, {3, 4});
  auto a = ds::compile(g, "cpu", {.opt_level = 0}).run({{"x", xs}});
  auto f = ds::compile(g, "cpu", {.opt_level = 2});
  EXPECT_EQ(count_op(f.graph(), "fused"), 2);
  auto b = f.run({{"x", xs}});
  for (const char* name : {"softmax", "both"}) {
    const auto av = ds::test::values(a.at(name)), bv = ds::test::values(b.at(name));
    ASSERT_EQ(av.size(), bv.size());
    for (size_t i = 0; i < av.size(); ++i)
      EXPECT_TRUE((std::isnan(av[i]) && std::isnan(bv[i])) || av[i] == bv[i] ||
                  std::abs(av[i] - bv[i]) <= 1e-6 * std::max(1.0, std::abs(av[i])))
          << name << "[" << i << "]: " << av[i] << " vs " << bv[i];
  }
}

TEST_F(FusedRows, RowsWithoutKeepdimsLeaveTheRegionReshaped) {
  // The row sum feeds the region (keepdims) and leaves it without keepdims.
  Graph g;
  Tensor x = g.placeholder("x", {5, 33});
  Tensor e = ds::exp(x);
  g.output(e / ds::sum(e, {-1}, true), "p");
  g.output(ds::sum(e, {-1}), "total");
  g.output(ds::max(ds::abs(x), {1}) * 2.0, "absmax2");
  auto fused = ds::compile(g, "cpu", {.opt_level = 2});
  EXPECT_EQ(count_op(fused.graph(), "fused"), 2) << fused.graph().str();
  const auto in = std::map<std::string, Tensor>{
      {"x", ds::test::random_tensor({5, 33}, 7, DType::Float32)}};
  auto a = ds::compile(g, "cpu", {.opt_level = 0}).run(in);
  auto b = fused.run(in);
  for (const char* name : {"p", "total", "absmax2"}) {
    EXPECT_EQ(b.at(name).shape(), a.at(name).shape()) << name;
    EXPECT_LE(worst_ulps(b.at(name), a.at(name), DType::Float32), 8) << name;
  }
}

TEST(KernelIR, SoftmaxKeepsItsExponentialsForTheLastPass) {
  const codegen::KernelIR ir = codegen::parse_kernel_ir(
      "region v1 shape=[4,6]\nin float32 [4,6]\n%1 = max float32 %0\n%2 = sub float32 %0 %1\n"
      "%3 = exp float32 %2\n%4 = sum float32 %3\n%5 = div float32 %3 %4\nout %5\n");
  const codegen::RowPlan plan = codegen::plan_rows(ir);
  ASSERT_EQ(plan.passes.size(), 3u);
  EXPECT_EQ(plan.kept, (std::vector<int>{3}));  // exp, not the cheap subtraction
  EXPECT_EQ(plan.passes[1].elements, (std::vector<int>{0, 2, 3}));
  EXPECT_EQ(plan.passes[2].elements, (std::vector<int>{3, 5}));  // read back, then divided
}

TEST_F(FusedRows, GeluInFloat32LanesStaysWithinAFewUlps) {
  // gelu in float32 carries its erfc argument as hi + lo: checked where erfc's
  // condition number is large (x far below 0) against the float64 reference.
  const int64_t n = 4001;
  std::vector<float> xs(n);
  for (int64_t i = 0; i < n; ++i) xs[i] = -12.0f + 24.0f * static_cast<float>(i) / (n - 1);
  Graph g;
  Tensor x = g.placeholder("x", {1, n});
  Tensor zero = g.placeholder("zero", {n});
  g.output(ds::gelu(x + zero), "y");
  const auto in = std::map<std::string, Tensor>{{"x", Tensor::from_vector(xs, {1, n})},
                                                {"zero", Tensor::zeros({n})}};
  auto fused = ds::compile(g, "cpu", {.opt_level = 2});
  EXPECT_EQ(count_op(fused.graph(), "fused"), 1);
  const auto got = ds::test::values(fused.run(in).at("y"));
  const auto want = ds::test::values(ds::gelu(Tensor::from_vector(xs, {1, n}).to(DType::Float64)));
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    worst = std::max(worst, std::abs(got[i] - want[i]) / (std::abs(want[i]) * 0x1p-24));
  EXPECT_LE(worst, 4);
}

namespace {

// A seeded random chain on x [.., n] and r [.., n]: well-conditioned elementwise
// steps, binary steps with r or a weight [n], and row steps (softmax,
// log_softmax, layer_norm, rms_norm, a centring spelled out), sometimes with an
// intermediate value as an extra output.
Graph random_row_chain(std::mt19937& rng, const Shape& shape, DType dt, std::string* text) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Graph g;
  Tensor x = g.placeholder("x", shape, dt);
  Tensor r = g.placeholder("r", shape, dt);
  const int64_t n = shape.back();
  Tensor w = g.constant(ds::test::random_tensor({n}, pick(1, 1000), dt) * 0.5 + 1.0);
  Tensor h = x;
  const int steps = pick(2, 6);
  for (int s = 0; s < steps; ++s) {
    switch (pick(0, 11)) {
      case 0: h = ds::tanh(h), *text += " tanh"; break;
      case 1: h = ds::sigmoid(h), *text += " sigmoid"; break;
      case 2: h = ds::gelu(h), *text += " gelu"; break;
      case 3: h = ds::silu(h) - r, *text += " silu-r"; break;
      case 4: h = h * w + r, *text += " *w+r"; break;
      case 5: h = ds::relu(h) + ds::abs(r), *text += " relu+|r|"; break;
      case 6: h = ds::softmax(h, -1) * static_cast<double>(n), *text += " softmax*n"; break;
      case 7: h = ds::log_softmax(h, -1) * 0.25, *text += " log_softmax/4"; break;
      case 8: h = ds::layer_norm(h + r, {n}, w, w - 1.0), *text += " layer_norm"; break;
      case 9: h = ds::rms_norm(h, {n}, w), *text += " rms_norm"; break;
      case 10: h = h - ds::mean(h, {-1}, true), *text += " centre"; break;
      default: h = h / (ds::max(ds::abs(h), {-1}, true) + 1.0), *text += " /(max|h|+1)"; break;
    }
    if (pick(0, 5) == 0) {
      g.output(h, "mid" + std::to_string(s));
      *text += "[out]";
    }
  }
  g.output(h, "y");
  return g;
}

}  // namespace

TEST_F(FusedRows, RandomRowChainsMatchTheUnfusedOps) {
  const int64_t lasts[] = {1, 2, 7, 33, 128, 257};
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    std::mt19937 rng(seed);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    Shape shape;
    for (int d = pick(0, 2); d > 0; --d) shape.push_back(pick(1, 5));
    shape.push_back(lasts[pick(0, 5)]);
    const DType dt = pick(0, 2) == 0 ? DType::Float64 : DType::Float32;
    std::string chain;
    const Graph g = random_row_chain(rng, shape, dt, &chain);
    const auto in = feeds(shape, dt, seed * 7);
    auto plain = ds::compile(g, "cpu", {.opt_level = 0});
    auto fused = ds::compile(g, "cpu", {.opt_level = 2});
    EXPECT_LT(fused.stats().kernels, plain.stats().kernels) << "seed " << seed << chain;
    const auto a = plain.run(in), b = fused.run(in);
    for (const auto& [name, t] : a)
      EXPECT_LE(worst_ulps(b.at(name), t, dt), 64)
          << "seed " << seed << ": " << ds::shape_str(shape) << " " << ds::dtype_name(dt)
          << chain << ", output " << name << "\n"
          << fused.graph().str();
  }
}
