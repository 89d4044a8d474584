// Gradient checking for tests: analytic gradients (ds::value_and_grad) against
// central finite differences of the same function evaluated eagerly in float64.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ds/autodiff.h"
#include "ds/ops.h"

namespace ds::testing {

// A float64 tensor of `shape` with values from a fixed-seed linear congruential
// sequence in [lo, hi): deterministic without needing the random ops.
inline Tensor lcg_tensor(const Shape& shape, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  Tensor t = Tensor::empty(shape, DType::Float64);
  uint32_t s = seed * 2654435761u + 12345u;
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 1664525u + 1013904223u;
    p[i] = lo + (hi - lo) * (static_cast<double>(s >> 8) / static_cast<double>(1u << 24));
  }
  return t;
}

inline double eval_scalar(const ScalarFn& fn, const std::vector<Tensor>& args) {
  return fn(args).item<double>();
}

// Checks every element of the gradients w.r.t. `argnums` against central differences.
inline void expect_gradients_match(const ScalarFn& fn, std::vector<Tensor> args,
                                   const std::vector<int>& argnums, double tol = 1e-6,
                                   double h = 1e-6) {
  auto [value, grads] = value_and_grad(fn, argnums)(args);
  EXPECT_NEAR(value.item<double>(), eval_scalar(fn, args), 1e-9);
  ASSERT_EQ(grads.size(), argnums.size());
  for (size_t k = 0; k < argnums.size(); ++k) {
    Tensor& x = args[argnums[k]];
    ASSERT_EQ(grads[k].shape(), x.shape());
    Tensor g = grads[k].contiguous();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double* p = x.data<double>() + i;
      const double orig = *p;
      *p = orig + h;
      const double up = eval_scalar(fn, args);
      *p = orig - h;
      const double down = eval_scalar(fn, args);
      *p = orig;
      const double numeric = (up - down) / (2 * h);
      const double analytic = element_as_double(g, i);
      EXPECT_NEAR(analytic, numeric, tol * std::max(1.0, std::abs(numeric)))
          << "argument " << argnums[k] << " element " << i;
    }
  }
}

}  // namespace ds::testing
