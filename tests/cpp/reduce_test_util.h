// Helpers for the Reduce* and Norm* tests: random inputs, element access, running
// an op's reference kernel or VJP directly, value comparison and error checks.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ds/ds.h"
#include "ds/op.h"

namespace ds::reduce_test {

// Uniform values in [lo, hi) (integers: floored; bool: positive values).
inline Tensor random_tensor(const Shape& shape, DType dtype, std::mt19937& rng, double lo = -2.0,
                            double hi = 2.0) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(numel(shape)));
  for (double& x : v) {
    x = dist(rng);
    if (!is_floating(dtype)) x = dtype == DType::Bool ? (x > 0 ? 1.0 : 0.0) : std::floor(x);
  }
  return Tensor::from_vector(v, shape).to(dtype);
}

inline std::vector<double> values(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = element_as_double(t, i);
  return v;
}

// Element by element within tol * (1 + |want|); NaN must meet NaN, infinities must match.
inline void expect_values(const Tensor& got, const std::vector<double>& want, double tol = 0.0,
                          const std::string& what = "") {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = element_as_double(got, static_cast<int64_t>(i));
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g)) << what << " at " << i << ": got " << g << ", want NaN";
      continue;
    }
    if (g == want[i]) continue;
    EXPECT_LE(std::abs(g - want[i]), tol * (1.0 + std::abs(want[i])))
        << what << " at " << i << ": got " << g << ", want " << want[i];
  }
}

inline OpContext context(const OpDef& op, const AttrMap& full, const std::vector<Tensor>& in) {
  std::vector<TensorType> types;
  for (const Tensor& t : in) types.push_back({t.dtype(), t.shape()});
  return OpContext{op, full, types, ""};
}

// Runs `name`'s reference kernel on concrete inputs (bypassing fast kernels).
inline std::vector<Tensor> run_reference(const std::string& name, const std::vector<Tensor>& inputs,
                                         const AttrMap& attrs = {}) {
  const OpDef& op = get_op(name);
  const AttrMap full = complete_attrs(op, attrs, name + ": ");
  const OpContext ctx = context(op, full, inputs);
  std::vector<Tensor> in, out;
  for (const Tensor& t : inputs) in.push_back(t.contiguous());
  for (const TensorType& t : op.infer(ctx)) out.push_back(Tensor::empty(t.shape, t.dtype));
  op.reference(KernelCall{ctx, in, out});
  return out;
}

// The implementation the CPU dispatcher picks for `name` on `inputs`.
inline std::string kernel_impl(const std::string& name, const AttrMap& attrs,
                               const std::vector<Tensor>& inputs) {
  const OpDef& op = get_op(name);
  const AttrMap full = complete_attrs(op, attrs, name + ": ");
  return select_kernel(context(op, full, inputs), DeviceKind::CPU).impl;
}

// Calls `name`'s VJP eagerly with output cotangents `grads`.
inline std::vector<Tensor> vjp(const std::string& name, const std::vector<Tensor>& inputs,
                               const AttrMap& attrs, const std::vector<Tensor>& grads) {
  const OpDef& op = get_op(name);
  const AttrMap full = complete_attrs(op, attrs, name + ": ");
  return op.vjp(VjpArgs{context(op, full, inputs), inputs, apply(name, inputs, attrs), grads});
}

// Expects `fn` to throw E with a message containing every one of `parts`.
template <typename E, typename F>
void expect_error(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception containing '" << parts.front() << "'";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg;
  }
}

}  // namespace ds::reduce_test
