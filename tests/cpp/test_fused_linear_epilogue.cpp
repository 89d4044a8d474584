// The CPU fused_linear kernel's epilogue passes for every combination of bias,
// residual and activation (float32 kernel vs the float64 reference).
#include <gtest/gtest.h>

#include <string>

#include "ds/ds.h"
#include "op_check.h"

using ds::Tensor;

TEST(FusedLinearEpilogue, EveryBiasResidualActivationCombination) {
  const int64_t rows = 37, in = 19, out = 129;
  for (const char* act : {"none", "relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh"})
    for (bool bias : {false, true})
      for (bool residual : {false, true}) {
        std::vector<Tensor> inputs{ds::test::random_tensor({rows, in}, 1, ds::DType::Float32),
                                   ds::test::random_tensor({out, in}, 2, ds::DType::Float32)};
        if (bias) inputs.push_back(ds::test::random_tensor({out}, 3, ds::DType::Float32));
        if (residual) inputs.push_back(ds::test::random_tensor({rows, out}, 4, ds::DType::Float32));
        const ds::AttrMap attrs{{"base", std::string("linear")}, {"activation", std::string(act)},
                                {"alpha", 0.1}, {"has_bias", bias}, {"has_residual", residual}};
        std::vector<Tensor> f64;
        for (const Tensor& t : inputs) f64.push_back(t.to(ds::DType::Float64));
        const auto want = ds::test::values(ds::apply1("fused_linear", f64, attrs));
        SCOPED_TRACE(std::string(act) + (bias ? " bias" : "") + (residual ? " residual" : ""));
        EXPECT_LE(ds::test::rel_diff(ds::apply1("fused_linear", inputs, attrs), want), 1e-5);
      }
}
