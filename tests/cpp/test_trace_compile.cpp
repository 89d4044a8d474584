// Tracing compile: once per signature; a symbolic batch serves every batch size.
#include <gtest/gtest.h>

#include <cmath>

#include "ds/ds.h"

using ds::Tensor;

TEST(TraceCompile, CompilesOncePerSignature) {
  int traces = 0;
  ds::CompiledFunction f = ds::compile([&](const std::vector<Tensor>& a) {
    ++traces;
    return std::vector<Tensor>{ds::tanh(a[0]) * a[1] + 1.0};
  });
  Tensor x = Tensor::full({2, 3}, 0.5), y = Tensor::full({2, 3}, 2.0);
  Tensor r = f({x, y})[0];
  EXPECT_NEAR(r.data<float>()[0], std::tanh(0.5) * 2 + 1, 1e-6);
  f({x, y});
  EXPECT_EQ(traces, 1);
  f({Tensor::full({4, 3}, 0.5), Tensor::full({4, 3}, 2.0)});
  EXPECT_EQ(traces, 2);
  f({Tensor::full({2, 3}, 0.5, ds::DType::Float64), y});
  EXPECT_EQ(f.compilations(), 3);
}

TEST(TraceCompile, SymbolicBatchCompilesOnceForAllBatchSizes) {
  ds::CompiledFunction f = ds::compile(
      [](const std::vector<Tensor>& a) { return std::vector<Tensor>{ds::relu(a[0] - 1.0)}; },
      "cpu", {}, /*symbolic_batch=*/true);
  for (int64_t n : {1, 7, 32}) {
    Tensor out = f({Tensor::full({n, 5}, 3.0)})[0];
    ASSERT_EQ(out.shape(), (ds::Shape{n, 5}));
    EXPECT_EQ(out.data<float>()[n * 5 - 1], 2.0f);
  }
  EXPECT_EQ(f.compilations(), 1);
}

TEST(TraceCompile, ErrorsInTheTracedFunctionSurface) {
  ds::CompiledFunction f = ds::compile(
      [](const std::vector<Tensor>& a) { return std::vector<Tensor>{a[0] + a[1]}; });
  EXPECT_THROW(f({Tensor::zeros({2, 3}), Tensor::zeros({4})}), ds::ShapeError);
}
