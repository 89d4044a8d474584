#include <gtest/gtest.h>

#include "ds/ds.h"
#include "ds/autodiff.h"
#include "gradcheck.h"

namespace {

using ds::Tensor;
using ds::testing::expect_gradients_match;
using ds::testing::lcg_tensor;

TEST(Autodiff, ElementwiseCompositeWithBroadcastMatchesFiniteDifferences) {
  auto fn = [](const std::vector<Tensor>& a) {
    const Tensor &x = a[0], &y = a[1];
    return ds::sum(ds::tanh(x * y + x) / (1.0 + ds::exp(y)));
  };
  expect_gradients_match(fn, {lcg_tensor({2, 3}, 1), lcg_tensor({1, 3}, 2)}, {0, 1});
}

TEST(Autodiff, NormalizationStyleChainMatchesFiniteDifferences) {
  auto fn = [](const std::vector<Tensor>& a) {
    const Tensor& x = a[0];
    return ds::sum(ds::rsqrt(ds::square(x) + 0.5) * ds::sqrt(ds::abs(x) + 1.0));
  };
  expect_gradients_match(fn, {lcg_tensor({6}, 9)}, {0});
}

TEST(Autodiff, ValueUsedTwiceAccumulates) {
  auto fn = [](const std::vector<Tensor>& a) {
    return ds::sum(a[0] * a[0] + ds::sigmoid(a[0]));
  };
  expect_gradients_match(fn, {lcg_tensor({5}, 3)}, {0});
}

TEST(Autodiff, GradFlowsThroughWhereBranchesNotTheBoolCondition) {
  auto fn = [](const std::vector<Tensor>& a) {
    const Tensor& x = a[0];
    return ds::sum(ds::where(ds::gt(x, ds::scalar_like(0.0, x)), x * 2.0, ds::square(x)));
  };
  expect_gradients_match(fn, {lcg_tensor({7}, 4)}, {0});
}

TEST(Autodiff, ReshapeAndReductionChain) {
  auto fn = [](const std::vector<Tensor>& a) {
    Tensor r = ds::reshape(a[0], {3, 4});
    Tensor s = ds::sum(ds::square(r), {1}, true);  // [3, 1]
    return ds::sum(ds::sqrt(s + 1.0) * a[1]);
  };
  expect_gradients_match(fn, {lcg_tensor({12}, 5), lcg_tensor({3, 1}, 6)}, {0, 1});
}

TEST(Autodiff, OnlyRequestedArgumentsAndUnreachableGetZeros) {
  auto fn = [](const std::vector<Tensor>& a) { return ds::sum(a[0] * 3.0); };
  auto g = ds::grad(fn, {0, 1})({lcg_tensor({2, 2}, 7), lcg_tensor({4}, 8)});
  ASSERT_EQ(g.size(), 2u);
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(ds::element_as_double(g[0], i), 3.0);
    EXPECT_DOUBLE_EQ(ds::element_as_double(g[1], i), 0.0);
  }
}

TEST(Autodiff, GraphGradCompilesWithForwardIntoOneExecutable) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {4, 3});
  Tensor w = g.placeholder("w", {1, 3});
  Tensor loss = ds::sum(ds::square(x * w));
  auto grads = ds::grad(g, loss, {w});
  g.output(loss, "loss");
  g.output(grads[0], "dw");
  auto exe = ds::compile(g, "cpu");
  auto out = exe.run({{"x", Tensor::full({4, 3}, 2.0)},
                      {"w", Tensor::from_vector<float>({1, 2, 3}, {1, 3})}});
  EXPECT_FLOAT_EQ(out["loss"].item<float>(), 4 * 4 * (1 + 4 + 9));
  // d/dw sum((x w)^2) = sum_b 2 x^2 w = 8 * 4 * w.
  for (int j = 0; j < 3; ++j) EXPECT_FLOAT_EQ(out["dw"].data<float>()[j], 32.0f * (j + 1));
}

TEST(Autodiff, GraphGradWithSymbolicBatchRunsForAnyBatch) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {ds::dyn, 3});
  Tensor w = g.placeholder("w", {1, 3});
  Tensor unused = g.placeholder("unused", {ds::dyn, 2});
  Tensor loss = ds::mean(ds::square(x * w));
  auto grads = ds::grad(g, loss, {w, x, unused});
  g.output(loss, "loss");
  g.output(grads[0], "dw");
  g.output(grads[1], "dx");
  g.output(grads[2], "dunused");
  auto exe = ds::compile(g, "cpu");
  for (int64_t batch : {1, 4}) {
    auto out = exe.run({{"x", Tensor::full({batch, 3}, 2.0)},
                        {"w", Tensor::from_vector<float>({1, 2, 3}, {1, 3})},
                        {"unused", Tensor::full({batch, 2}, 5.0)}});
    // d/dw mean_{b,j}((x w)^2) = sum_b 2 x^2 w / (3 batch) = 8 w / 3.
    for (int j = 0; j < 3; ++j)
      EXPECT_FLOAT_EQ(out["dw"].data<float>()[j], 8.0f * (j + 1) / 3) << "batch " << batch;
    EXPECT_EQ(out["dx"].shape(), (ds::Shape{batch, 3}));
    EXPECT_EQ(out["dunused"].shape(), (ds::Shape{batch, 2}));
    EXPECT_FLOAT_EQ(out["dunused"].data<float>()[0], 0.0f);
  }
}

TEST(Autodiff, SameSignatureReusesTheCompiledExecutable) {
  int traces = 0;
  auto vg = ds::value_and_grad([&](const std::vector<Tensor>& a) {
    ++traces;
    return ds::sum(ds::square(a[0]));
  });
  auto [v1, g1] = vg({Tensor{1, 2}});
  auto [v2, g2] = vg({Tensor{3, 4}});
  EXPECT_EQ(traces, 1);
  EXPECT_FLOAT_EQ(v2.item<float>(), 25.f);
  EXPECT_FLOAT_EQ(g2[0].data<float>()[1], 8.f);
  vg({Tensor{1, 2, 3}});
  EXPECT_EQ(traces, 2);
}

TEST(Autodiff, IntegerWrtIsRejected) {
  ds::Graph g;
  Tensor i = g.placeholder("i", {3}, ds::DType::Int64);
  Tensor loss = ds::sum(ds::cast(i, ds::DType::Float32));
  EXPECT_THROW(ds::grad(g, loss, {i}), ds::TypeError);
}

TEST(Autodiff, NonScalarLossIsRejectedWithAHint) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {3});
  try {
    ds::grad(g, x * 2.0, {x});
    FAIL() << "expected ShapeError";
  } catch (const ds::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("one element"), std::string::npos);
  }
}

TEST(Autodiff, OpWithoutVjpOnThePathIsNamed) {
  if (!ds::find_op("test_no_vjp_square"))
    ds::register_op({.name = "test_no_vjp_square",
                     .num_inputs = 1,
                     .infer = [](const ds::OpContext& c) { return std::vector{c.inputs[0]}; }});
  ds::Graph g;
  Tensor x = g.placeholder("x", {3});
  Tensor y = ds::apply1("test_no_vjp_square", {x});
  try {
    ds::grad(g, ds::sum(y), {x});
    FAIL() << "expected ValueError";
  } catch (const ds::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("test_no_vjp_square"), std::string::npos) << e.what();
  }
  // Not on the path to x: no error.
  Tensor z = g.placeholder("z", {3});
  EXPECT_NO_THROW(ds::grad(g, ds::sum(y + z), {z}));
}

TEST(Autodiff, VjpWithCotangent) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {2});
  Tensor y = x * x;
  auto gx = ds::vjp(g, {y}, {Tensor{1.f, 10.f}}, {x});
  g.output(gx[0], "gx");
  auto out = ds::compile(g, "cpu").run({{"x", Tensor{3, 4}}});
  EXPECT_FLOAT_EQ(out["gx"].data<float>()[0], 6.f);
  EXPECT_FLOAT_EQ(out["gx"].data<float>()[1], 80.f);
}

}  // namespace
