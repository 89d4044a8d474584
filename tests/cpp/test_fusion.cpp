// Loop fusion and the kernel IR: fewer kernels for real graph shapes, the same
// results as the unfused graph (opt_level 0) within a few float32 ulps.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "codegen/jit.h"
#include "codegen/kernel_ir.h"
#include "ds/ds.h"
#include "op_check.h"
#include "passes/pass_manager.h"

using ds::Graph;
using ds::Tensor;
namespace codegen = ds::codegen;

namespace {

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

Tensor random_input(const ds::Shape& shape, uint32_t seed, double scale = 2.0) {
  return ds::test::random_tensor(shape, seed, ds::DType::Float64).to(ds::DType::Float32) * scale;
}

// Worst difference in units of float32 rounding of the larger magnitude, with
// `floor` as the smallest magnitude counted (cancellation near zero).
double worst_ulps(const Tensor& a, const Tensor& b, double floor = 1.0) {
  const auto av = ds::test::values(a), bv = ds::test::values(b);
  EXPECT_EQ(av.size(), bv.size());
  double worst = 0;
  for (size_t i = 0; i < av.size() && i < bv.size(); ++i) {
    if (std::isnan(av[i]) && std::isnan(bv[i])) continue;
    const double mag = std::max({std::abs(av[i]), std::abs(bv[i]), floor});
    worst = std::max(worst, std::abs(av[i] - bv[i]) / (mag * std::ldexp(1.0, -23)));
  }
  return worst;
}

struct Compared {
  int kernels_unfused, kernels_fused, fused_nodes;
  double ulps;
};

// Compiles `g` at opt_level 0 and 2, runs both on `feeds`, compares every output.
Compared compare_levels(const Graph& g, const std::map<std::string, Tensor>& feeds,
                        double floor = 1.0) {
  auto plain = ds::compile(g, "cpu", {.opt_level = 0});
  auto fused = ds::compile(g, "cpu", {.opt_level = 2});
  auto a = plain.run(feeds), b = fused.run(feeds);
  double ulps = 0;
  for (const auto& [name, t] : a) ulps = std::max(ulps, worst_ulps(b.at(name), t, floor));
  return {plain.stats().kernels, fused.stats().kernels, count_op(fused.graph(), "fused"), ulps};
}

class Fusion : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!codegen::jit_available()) GTEST_SKIP() << "built without LLVM: loop fusion is off";
  }
};

}  // namespace

TEST(KernelIR, TextRoundTripsAndHashesStably) {
  codegen::KernelIR ir;
  ir.shape = {4, 3};
  ir.inputs = {{ds::DType::Float32, {4, 3}}, {ds::DType::Float32, {3}}};
  ir.insts = {{"add", {}, {0, 1}, ds::DType::Float32},
              {"gelu", {{"approximate", std::string("tanh")}}, {2}, ds::DType::Float32},
              {"leaky_relu", {{"negative_slope", 0.1}}, {3}, ds::DType::Float32},
              {"cast", {{"dtype", ds::DType::Float64}}, {4}, ds::DType::Float64}};
  ir.outputs = {2, 5};
  ir.verify();
  const std::string text = ir.str();
  const codegen::KernelIR back = codegen::parse_kernel_ir(text);
  EXPECT_EQ(back.str(), text);
  EXPECT_EQ(back.hash(), ir.hash());
  EXPECT_DOUBLE_EQ(std::get<double>(back.insts[2].attrs.at("negative_slope")), 0.1);
}

TEST(KernelIR, RejectsMalformedRegions) {
  EXPECT_THROW(codegen::parse_kernel_ir(
                   "region v1 shape=[4]\nin float32 [4]\n%1 = exp float32 %3\nout %1\n"),
               ds::ValueError);  // reads an undefined register
  EXPECT_THROW(codegen::parse_kernel_ir(
                   "region v1 shape=[4]\nin float32 [5]\n%1 = exp float32 %0\nout %1\n"),
               ds::ShapeError);  // input does not broadcast
  EXPECT_THROW(codegen::parse_kernel_ir(
                   "region v1 shape=[4]\nin float32 [4]\n%1 = matmul float32 %0 %0\nout %1\n"),
               ds::ValueError);  // not an elementwise op
  EXPECT_THROW(codegen::parse_kernel_ir(
                   "region v1 shape=[4]\nin float32 [4]\n%1 = exp float64 %0\nout %1\n"),
               ds::ValueError);  // dtype disagrees with inference
  EXPECT_THROW(
      codegen::parse_kernel_ir("region v1 shape=[4]\nin float32 [4]\n%1 = exp float32 %0\n"),
      ds::ValueError);  // no outputs line
}

TEST(KernelIR, InterpreterMatchesTheOpsItReplaces) {
  codegen::KernelIR ir = codegen::parse_kernel_ir(
      "region v1 shape=[3,5]\nin float64 [3,5]\nin float64 [5]\n"
      "%2 = mul float64 %0 %1\n%3 = tanh float64 %2\n%4 = gt bool %3 %1\n"
      "%5 = where float64 %4 %3 %0\nout %5 %4\n");
  Tensor x = ds::test::random_tensor({3, 5}, 1), y = ds::test::random_tensor({5}, 2);
  auto out = codegen::interpret(ir, {x, y});
  Tensor t = ds::tanh(x * y);
  Tensor c = ds::gt(t, y);
  EXPECT_EQ(out[1].dtype(), ds::DType::Bool);
  EXPECT_EQ(ds::test::values(out[0]), ds::test::values(ds::where(c, t, x)));
  EXPECT_EQ(ds::test::values(out[1]), ds::test::values(c));
}

TEST(KernelIR, RowReductionRoundTripsAndInterprets) {
  const std::string text =
      "region v1 shape=[4,6]\nin float32 [4,6]\nin float32 [6]\n%2 = sub float32 %0 %1\n"
      "%3 = square float32 %2\nreduce mean %3 keepdims=1\nout %2\n";
  const codegen::KernelIR ir = codegen::parse_kernel_ir(text);
  EXPECT_EQ(ir.str(), text);
  ASSERT_EQ(ir.result_types().size(), 2u);
  EXPECT_EQ(ir.result_types()[1].shape, (ds::Shape{4, 1}));
  Tensor x = ds::test::random_tensor({4, 6}, 3, ds::DType::Float32);
  Tensor y = ds::test::random_tensor({6}, 4, ds::DType::Float32);
  auto out = codegen::interpret(ir, {x, y});
  EXPECT_EQ(ds::test::values(out[1]), ds::test::values(ds::mean(ds::square(x - y), {-1}, true)));
  EXPECT_THROW(
      codegen::parse_kernel_ir("region v1 shape=[4,0]\nin float32 [4,0]\n%1 = exp float32 %0\n"
                               "reduce sum %1 keepdims=0\nout\n"),
      ds::ValueError);  // empty rows
}

TEST_F(Fusion, GeluChainBecomesOneKernel) {
  Graph g;
  Tensor x = g.placeholder("x", {64, 96});
  Tensor w = g.constant(random_input({96, 128}, 3, 0.2));
  Tensor b = g.constant(random_input({128}, 4));
  Tensor h = ds::matmul(x, w) + b;
  // GELU (tanh form) spelled out op by op, as a traced model would.
  Tensor inner = (h + ds::mul(ds::mul(h, h), h) * 0.044715) * std::sqrt(2.0 / M_PI);
  g.output(h * 0.5 * (ds::tanh(inner) + 1.0), "y");
  const Compared c = compare_levels(g, {{"x", random_input({64, 96}, 5)}});
  EXPECT_EQ(c.fused_nodes, 1);
  EXPECT_EQ(c.kernels_fused, 2);  // matmul + one fused loop
  EXPECT_GE(c.kernels_unfused, 9);
  EXPECT_LE(c.ulps, 8);
}

TEST_F(Fusion, LayerNormChainFusesAroundTheReductions) {
  Graph g;
  Tensor x = g.placeholder("x", {32, 80});
  Tensor r = g.placeholder("r", {32, 80});
  Tensor gamma = g.constant(random_input({80}, 6));
  Tensor beta = g.constant(random_input({80}, 7));
  Tensor s = x + r;
  Tensor d = s - ds::mean(s, {-1}, true);
  Tensor var = ds::mean(ds::square(d), {-1}, true);
  g.output(d * ds::rsqrt(var + 1e-5) * gamma + beta, "y");
  const Compared c =
      compare_levels(g, {{"x", random_input({32, 80}, 8)}, {"r", random_input({32, 80}, 9)}});
  EXPECT_LT(c.kernels_fused, c.kernels_unfused);
  EXPECT_EQ(c.kernels_unfused, 10);
  // One pass per reduction and one storing pass, every row in one kernel.
  EXPECT_EQ(c.kernels_fused, 1);
  EXPECT_LE(c.ulps, 8);
}

TEST_F(Fusion, TransformerBlockLaunchesFewerKernels) {
  const int64_t t = 16, d = 32;
  Graph g;
  Tensor x = g.placeholder("x", {t, d});
  auto w = [&](int64_t a, int64_t b, uint32_t seed) {
    return g.constant(random_input({a, b}, seed, 0.3));
  };
  Tensor q = ds::matmul(x, w(d, d, 10)), k = ds::matmul(x, w(d, d, 11)),
         v = ds::matmul(x, w(d, d, 12));
  Tensor att = ds::softmax(ds::matmul(q, ds::transpose(k)) / std::sqrt(static_cast<double>(d)));
  Tensor h = x + ds::matmul(ds::matmul(att, v), w(d, d, 13));
  Tensor mu = ds::mean(h, {-1}, true);
  Tensor c0 = h - mu;
  Tensor n = c0 * ds::rsqrt(ds::mean(c0 * c0, {-1}, true) + 1e-5);
  Tensor f = ds::matmul(n, w(d, 4 * d, 14)) + g.constant(random_input({4 * d}, 15));
  Tensor act = f * ds::sigmoid(f * 1.702);
  g.output(n + ds::matmul(act, w(4 * d, d, 16)), "y");
  const Compared c = compare_levels(g, {{"x", random_input({t, d}, 17)}});
  EXPECT_GE(c.fused_nodes, 2);
  EXPECT_LE(c.kernels_fused, c.kernels_unfused - 4);
  EXPECT_LE(c.ulps, 16);
}

TEST_F(Fusion, ResNetBlockLaunchesFewerKernels) {
  Graph g;
  Tensor x = g.placeholder("x", {2, 8, 10, 10});
  auto conv = [&](const Tensor& in, uint32_t seed) {
    return ds::conv2d(in, g.constant(random_input({8, 8, 3, 3}, seed, 0.2)), {}, {1}, {1});
  };
  auto affine = [&](const Tensor& in, uint32_t seed) {  // inference batch norm as scale + shift
    return in * g.constant(random_input({8, 1, 1}, seed)) +
           g.constant(random_input({8, 1, 1}, seed + 1));
  };
  Tensor y = ds::relu(affine(conv(x, 20), 21));
  y = affine(conv(y, 23), 24);
  g.output(ds::relu(y + x), "y");
  const Compared c = compare_levels(g, {{"x", random_input({2, 8, 10, 10}, 26)}});
  EXPECT_EQ(c.fused_nodes, 2);
  EXPECT_EQ(c.kernels_unfused, 9);
  EXPECT_EQ(c.kernels_fused, 4);  // conv | mul+add+relu | conv | mul+add+add+relu
  EXPECT_LE(c.ulps, 8);
}

TEST_F(Fusion, ValuesReadOutsideBecomeExtraOutputs) {
  Graph g;
  Tensor x = g.placeholder("x", {7, 9});
  Tensor e = ds::exp(x);
  Tensor s = ds::sum(e, {-1}, true);  // reads e outside the region
  g.output(ds::tanh(e * 3.0) + s, "y");
  g.output(e, "e");
  auto fused = ds::compile(g, "cpu", {.opt_level = 2});
  int outputs_of_fused = 0;
  for (const auto& n : fused.graph().nodes())
    if (n.op->name == "fused")
      outputs_of_fused = std::max(outputs_of_fused, static_cast<int>(n.outputs.size()));
  // exp, mul, tanh fuse (exp's value also leaves: to the sum and as "e"); the add
  // reads the sum of exp, so it stays outside.
  EXPECT_EQ(count_op(fused.graph(), "exp"), 0);
  EXPECT_EQ(outputs_of_fused, 2);
  const Compared c = compare_levels(g, {{"x", random_input({7, 9}, 27)}});
  EXPECT_LE(c.ulps, 8);
}

TEST_F(Fusion, EveryKernelOpMatchesTheUnfusedGraph) {
  const std::vector<std::string> unary = {
      "neg", "abs",   "exp",     "log",   "log1p",      "expm1",      "sqrt",  "rsqrt", "sin",
      "cos", "tanh",  "sigmoid", "relu",  "leaky_relu", "elu",        "gelu",  "silu",  "softplus",
      "erf", "floor", "ceil",    "round", "sign",       "reciprocal", "square"};
  const std::vector<std::string> binary = {"add", "sub",     "mul",     "div",
                                           "pow", "maximum", "minimum", "mod"};
  for (ds::DType dt : {ds::DType::Float32, ds::DType::Float64}) {
    for (const auto& op : unary) {
      Graph g;
      Tensor x = g.placeholder("x", {5, 67}, dt);
      Tensor b = g.placeholder("b", {67}, dt);
      const bool positive = op == "log" || op == "sqrt" || op == "rsqrt";
      Tensor in = positive ? ds::abs(x * b) + 0.1 : x * b;
      g.output(g.add(op, {in})[0] - b, "y");
      const Compared c = compare_levels(
          g, {{"x", random_input({5, 67}, 30).to(dt) * 3.0}, {"b", random_input({67}, 31).to(dt)}});
      EXPECT_EQ(c.fused_nodes, 1) << op;
      EXPECT_LE(c.ulps, 8) << op << " " << ds::dtype_name(dt);
    }
    for (const auto& op : binary) {
      Graph g;
      Tensor x = g.placeholder("x", {5, 67}, dt);
      Tensor b = g.placeholder("b", {5, 1}, dt);
      Tensor base = op == "pow" ? ds::abs(x) + 0.5 : x;
      g.output(ds::exp(g.add(op, {base, b + 0.25})[0] * 0.5), "y");
      const Compared c = compare_levels(
          g, {{"x", random_input({5, 67}, 32).to(dt)}, {"b", random_input({5, 1}, 33).to(dt)}});
      EXPECT_EQ(c.fused_nodes, 1) << op;
      EXPECT_LE(c.ulps, 8) << op << " " << ds::dtype_name(dt);
    }
  }
}

TEST_F(Fusion, ComparisonsWhereAndCastsInsideARegion) {
  Graph g;
  Tensor x = g.placeholder("x", {4, 33});
  Tensor y = g.placeholder("y", {33}, ds::DType::Float64);
  Tensor mask = ds::logical_and(ds::gt(x, ds::Tensor::scalar(0.0)), ds::logical_not(ds::isnan(x)));
  Tensor picked = ds::where(mask, ds::cast(x, ds::DType::Float64) * y, y - 1.0);
  g.output(picked, "p");
  g.output(ds::cast(ds::ne(picked, y), ds::DType::Float32) + x, "q");
  const Compared c = compare_levels(
      g, {{"x", random_input({4, 33}, 34)}, {"y", random_input({33}, 35).to(ds::DType::Float64)}});
  EXPECT_EQ(c.fused_nodes, 1);
  EXPECT_EQ(c.kernels_fused, 2);  // y - 1 has y's shape [33], not the region's [4, 33]
  EXPECT_EQ(c.ulps, 0);
}

TEST_F(Fusion, NaNsAndInfinitiesPropagateLikeTheOps) {
  Graph g;
  Tensor x = g.placeholder("x", {6});
  Tensor y = g.placeholder("y", {6});
  g.output(ds::maximum(x, y) + ds::relu(x) * ds::sign(y), "m");
  g.output(ds::minimum(ds::mod(x, y), x * 2.0), "n");
  Tensor xs = Tensor::from_vector<float>({NAN, 1.f, -0.f, INFINITY, -3.f, 2.5f}, {6});
  Tensor ys = Tensor::from_vector<float>({1.f, NAN, 0.f, 2.f, 2.f, -INFINITY}, {6});
  auto a = ds::compile(g, "cpu", {.opt_level = 0}).run({{"x", xs}, {"y", ys}});
  auto b = ds::compile(g, "cpu", {.opt_level = 2}).run({{"x", xs}, {"y", ys}});
  for (const char* name : {"m", "n"}) {
    const auto av = ds::test::values(a.at(name)), bv = ds::test::values(b.at(name));
    for (size_t i = 0; i < av.size(); ++i)
      EXPECT_TRUE((std::isnan(av[i]) && std::isnan(bv[i])) || av[i] == bv[i])
          << name << "[" << i << "]: " << av[i] << " vs " << bv[i];
  }
}

TEST_F(Fusion, LeavesSingleOpsAndDynamicShapesAlone) {
  Graph g;
  Tensor x = g.placeholder("x", {ds::dyn, 8});
  g.output(ds::exp(ds::tanh(x)), "y");
  EXPECT_EQ(count_op(ds::passes::loop_fusion(g), "fused"), 0);
  Graph h;
  Tensor z = h.placeholder("z", {4, 8});
  h.output(ds::exp(ds::matmul(z, ds::transpose(z))), "y");
  EXPECT_EQ(count_op(ds::passes::loop_fusion(h), "fused"), 0);
}

TEST_F(Fusion, RefusesMergesThatWouldFormACycle) {
  // a = exp(x); c = a + transpose(a): merging exp and add would make the fused
  // node both feed and read the transpose.
  Graph g;
  Tensor x = g.placeholder("x", {4, 4});
  Tensor a = ds::exp(x);
  Tensor c = a + ds::transpose(a);
  g.output(ds::tanh(c), "y");
  Graph out = ds::passes::loop_fusion(g);
  out.verify();
  EXPECT_EQ(count_op(out, "exp"), 1);
  EXPECT_EQ(count_op(out, "fused"), 1);  // add + tanh
  const Compared cmp = compare_levels(g, {{"x", random_input({4, 4}, 36)}});
  EXPECT_LE(cmp.ulps, 8);
}

TEST_F(Fusion, RowReductionsFeedTheOpsAfterThem) {
  // softmax and variance rows spelled out: exp(x - max) summed, squares averaged.
  for (ds::DType dt : {ds::DType::Float32, ds::DType::Float64}) {
    Graph g;
    Tensor x = g.placeholder("x", {6, 3, 37}, dt);
    Tensor b = g.placeholder("b", {37}, dt);
    Tensor z = x * b;
    Tensor e = ds::exp(z - ds::max(z, {-1}, true));
    g.output(e / ds::sum(e, {2}, true), "softmax");
    Tensor d = x - b;
    g.output(ds::mean(ds::square(d), {-1}), "var");
    g.output(ds::max(ds::abs(d), {-1}, true), "absmax");
    const Compared c = compare_levels(g, {{"x", random_input({6, 3, 37}, 40).to(dt) * 3.0},
                                          {"b", random_input({37}, 41).to(dt)}});
    // The softmax rows, and the variance and abs-max rows of one shared x - b
    // (plus the reshape dropping the variance's kept row axis).
    EXPECT_EQ(c.fused_nodes, 2) << ds::dtype_name(dt);
    EXPECT_EQ(c.kernels_fused, 3) << ds::dtype_name(dt);
    EXPECT_EQ(c.kernels_unfused, 11);
    EXPECT_LE(c.ulps, 8) << ds::dtype_name(dt);
  }
}

TEST_F(Fusion, ReductionNaNsPropagate) {
  Graph g;
  Tensor x = g.placeholder("x", {3, 4});
  g.output(ds::max(x * 2.0, {-1}), "m");
  g.output(ds::sum(x + 1.0, {-1}), "s");
  Tensor xs =
      Tensor::from_vector<float>({1, NAN, 3, 4, -INFINITY, -2, -3, -4, 5, 6, 7, NAN}, {3, 4});
  auto a = ds::compile(g, "cpu", {.opt_level = 0}).run({{"x", xs}});
  auto f = ds::compile(g, "cpu", {.opt_level = 2});
  EXPECT_EQ(count_op(f.graph(), "fused"), 2);
  auto b = f.run({{"x", xs}});
  for (const char* name : {"m", "s"}) {
    const auto av = ds::test::values(a.at(name)), bv = ds::test::values(b.at(name));
    for (size_t i = 0; i < av.size(); ++i)
      EXPECT_TRUE((std::isnan(av[i]) && std::isnan(bv[i])) || av[i] == bv[i])
          << name << "[" << i << "]: " << av[i] << " vs " << bv[i];
  }
}
