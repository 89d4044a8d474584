// Epilogue fusion: IR before and after, fused kernels against the float64
// reference, and fewer kernel launches for a ResNet block and a transformer MLP.
#include <gtest/gtest.h>

#include <cmath>

#include "ds/ds.h"
#include "passes/pass_manager.h"

using ds::Graph;
using ds::Tensor;
namespace passes = ds::passes;

namespace {

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

Tensor rnd(const ds::Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  return ds::random_uniform(s, seed, lo, hi);
}

void expect_close(const Tensor& want, const Tensor& got, double tol) {
  ASSERT_EQ(want.shape(), got.shape());
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double w = ds::element_as_double(want, i), g = ds::element_as_double(got, i);
    ASSERT_NEAR(w, g, tol * (1 + std::abs(w))) << "element " << i;
  }
}

}  // namespace

TEST(EpilogueFusion, LinearGeluLinearResidualBecomesTwoFusedOps) {
  Graph g;
  Tensor x = g.placeholder("x", {4, 16});
  Tensor h = ds::gelu(ds::linear(x, g.constant(rnd({32, 16}, 1)), g.constant(rnd({32}, 2))));
  g.output(ds::linear(h, g.constant(rnd({16, 32}, 3))) + x, "y");
  Graph out = passes::dead_code_elimination(passes::epilogue_fusion(g));
  EXPECT_EQ(count_op(out, "fused_linear"), 2) << out.str();
  EXPECT_EQ(count_op(out, "linear") + count_op(out, "gelu") + count_op(out, "add"), 0) << out.str();
  Tensor feed = rnd({4, 16}, 4);
  expect_close(ds::compile(g, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y"),
               ds::compile(out, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y"), 1e-5);
}

TEST(EpilogueFusion, MatmulBiasAndActivation) {
  Graph g;
  Tensor x = g.placeholder("x", {2, 3, 8});
  Tensor w = g.constant(rnd({8, 5}, 1)), b = g.constant(rnd({5}, 2));
  g.output(ds::leaky_relu(ds::matmul(x, w) + b, 0.2), "y");
  Graph out = passes::dead_code_elimination(passes::epilogue_fusion(g));
  ASSERT_EQ(count_op(out, "fused_linear"), 1) << out.str();
  for (const auto& n : out.nodes())
    if (n.op->name == "fused_linear") {
      EXPECT_EQ(std::get<std::string>(n.attrs.at("base")), "matmul");
      EXPECT_EQ(std::get<std::string>(n.attrs.at("activation")), "leaky_relu");
      EXPECT_DOUBLE_EQ(std::get<double>(n.attrs.at("alpha")), 0.2);
      EXPECT_TRUE(std::get<bool>(n.attrs.at("has_bias")));
    }
  Tensor feed = rnd({2, 3, 8}, 4);
  expect_close(ds::compile(g, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y"),
               ds::compile(out, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y"), 1e-5);
}

TEST(EpilogueFusion, IntermediateWithAnotherReaderStaysUnfused) {
  Graph g;
  Tensor x = g.placeholder("x", {3, 4});
  Tensor lin = ds::linear(x, g.constant(rnd({4, 4}, 1)));
  g.output(ds::relu(lin), "y");
  g.output(lin, "pre");  // the pre-activation is an output: the linear must stay
  Graph out = passes::epilogue_fusion(g);
  EXPECT_EQ(count_op(out, "fused_linear"), 0) << out.str();
  // Two convolutions adding each other: one chain takes the add, the other stays whole.
  Graph g2;
  Tensor x2 = g2.placeholder("x", {1, 2, 5, 5});
  Tensor a = ds::conv2d(x2, g2.constant(rnd({2, 2, 3, 3}, 2)), {}, {1}, {1});
  Tensor b = ds::conv2d(x2, g2.constant(rnd({2, 2, 3, 3}, 3)), {}, {1}, {1});
  g2.output(ds::relu(a + b), "y");
  Graph out2 = passes::dead_code_elimination(passes::epilogue_fusion(g2));
  EXPECT_EQ(count_op(out2, "fused_conv2d"), 1) << out2.str();
  EXPECT_EQ(count_op(out2, "conv2d"), 1) << out2.str();
  Tensor feed = rnd({1, 2, 5, 5}, 4);
  expect_close(ds::compile(g2, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y"),
               ds::compile(out2, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y"), 1e-5);
}

// The float32 fast kernels against the float64 reference (the same op on float64
// inputs runs the reference), for every activation and sizes 0, 1, odd and large
// (several GEMM tiles).
TEST(EpilogueFusion, FusedLinearKernelMatchesReference) {
  for (const char* act : {"none", "relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh"})
    for (int64_t rows : {0, 1, 7, 300})
      for (const char* base : {"linear", "matmul"}) {
        const int64_t in = 33, out = 600;
        const bool lin = std::string(base) == "linear";
        std::vector<Tensor> inputs{rnd({rows, in}, 1), rnd(lin ? ds::Shape{out, in} : ds::Shape{in, out}, 2),
                                   rnd({out}, 3), rnd({rows, out}, 4)};
        const ds::AttrMap attrs{{"base", std::string(base)}, {"activation", std::string(act)},
                                {"alpha", 0.1}, {"has_bias", true}, {"has_residual", true}};
        std::vector<Tensor> f64;
        for (const Tensor& t : inputs) f64.push_back(ds::cast(t, ds::DType::Float64));
        SCOPED_TRACE(std::string(act) + " " + base + " rows " + std::to_string(rows));
        expect_close(ds::apply1("fused_linear", f64, attrs), ds::apply1("fused_linear", inputs, attrs),
                     1e-5);
      }
}

TEST(EpilogueFusion, FusedConvKernelMatchesReference) {
  for (const char* act : {"none", "relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh"})
    for (bool residual : {false, true}) {
      std::vector<Tensor> inputs{rnd({2, 3, 9, 7}, 1), rnd({6, 3, 3, 3}, 2), rnd({6}, 3)};
      if (residual) inputs.push_back(rnd({2, 6, 5, 4}, 4));
      const ds::AttrMap attrs{{"activation", std::string(act)}, {"alpha", 0.1},
                              {"stride", std::vector<int64_t>{2}},
                              {"padding", std::vector<int64_t>{1}},
                              {"has_bias", true}, {"has_residual", residual}};
      std::vector<Tensor> f64;
      for (const Tensor& t : inputs) f64.push_back(ds::cast(t, ds::DType::Float64));
      SCOPED_TRACE(std::string(act) + (residual ? " residual" : ""));
      expect_close(ds::apply1("fused_conv2d", f64, attrs), ds::apply1("fused_conv2d", inputs, attrs),
                   1e-5);
    }
}

TEST(EpilogueFusion, BadResidualIsRejectedNamingTheOp) {
  try {
    ds::apply1("fused_linear", {rnd({2, 3}, 1), rnd({4, 3}, 2), rnd({2, 5}, 3)},
               {{"has_residual", true}});
    FAIL() << "expected a TypeError";
  } catch (const ds::TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("fused_linear"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("residual"), std::string::npos) << e.what();
  }
}

// conv-bn-relu-conv-bn-add-relu: after BN folding, two fused convolutions.
TEST(EpilogueFusion, ResNetBlockLaunchesFewerKernels) {
  Graph g;
  Tensor x = g.placeholder("x", {2, 8, 10, 10});
  auto conv_bn = [&](const Tensor& in, uint64_t seed) {
    Tensor c = ds::conv2d(in, g.constant(rnd({8, 8, 3, 3}, seed, -0.2, 0.2)), {}, {1}, {1});
    return ds::batch_norm(c, g.constant(rnd({8}, seed + 1)), g.constant(rnd({8}, seed + 2, 0.5, 2)),
                          g.constant(rnd({8}, seed + 3)), g.constant(rnd({8}, seed + 4)), 1e-5);
  };
  g.output(ds::relu(conv_bn(ds::relu(conv_bn(x, 10)), 20) + x), "y");
  const ds::Executable plain = ds::compile(g, "cpu", {.opt_level = 1});
  const ds::Executable fused = ds::compile(g, "cpu", {.opt_level = 2});
  // Two convolutions; layout propagation may add a reorder at each edge of the chain.
  const int reorders = count_op(fused.graph(), "to_blocked") + count_op(fused.graph(), "from_blocked");
  EXPECT_EQ(fused.stats().kernels - reorders, 2) << fused.graph().str();
  EXPECT_GT(plain.stats().kernels, fused.stats().kernels);
  Tensor feed = rnd({2, 8, 10, 10}, 5);
  expect_close(plain.run({{"x", feed}}).at("y"), fused.run({{"x", feed}}).at("y"), 1e-4);
}

// linear-gelu-linear-add: two fused GEMMs.
TEST(EpilogueFusion, TransformerMlpLaunchesFewerKernels) {
  Graph g;
  Tensor x = g.placeholder("x", {5, 64});
  Tensor h = ds::gelu(ds::linear(x, g.constant(rnd({256, 64}, 1, -0.1, 0.1)), g.constant(rnd({256}, 2))));
  g.output(ds::linear(h, g.constant(rnd({64, 256}, 3, -0.1, 0.1)), g.constant(rnd({64}, 4))) + x, "y");
  const ds::Executable plain = ds::compile(g, "cpu", {.opt_level = 1});
  const ds::Executable fused = ds::compile(g, "cpu", {.opt_level = 2});
  EXPECT_EQ(fused.stats().kernels, 2) << fused.graph().str();
  EXPECT_EQ(plain.stats().kernels, 4) << plain.graph().str();
  Tensor feed = rnd({5, 64}, 5);
  expect_close(plain.run({{"x", feed}}).at("y"), fused.run({{"x", feed}}).at("y"), 1e-5);
}
