// Helpers for the Linalg* and Conv* op tests: random inputs, the reference
// kernel called directly, and VJPs against central finite differences (float64).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ds/op.h"
#include "ds/ops.h"
#include "ds/runtime.h"

namespace ds::test {

inline Tensor random_tensor(const Shape& shape, uint32_t seed, DType dtype = DType::Float64) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(numel(shape)));
  for (double& e : v) e = u(rng);
  return Tensor::from_vector(v, shape).to(dtype);
}

inline std::vector<double> values(const Tensor& t) {
  Tensor c = t.to(DType::Float64).contiguous();
  const double* p = c.data<double>();
  return std::vector<double>(p, p + c.numel());
}

// Largest |a - b| / (1 + |b|) over all elements; shapes must match.
inline double rel_diff(const Tensor& a, const std::vector<double>& b) {
  EXPECT_EQ(static_cast<size_t>(a.numel()), b.size());
  const auto av = values(a);
  double worst = 0;
  for (size_t i = 0; i < std::min(av.size(), b.size()); ++i)
    worst = std::max(worst, std::abs(av[i] - b[i]) / (1.0 + std::abs(b[i])));
  return worst;
}

inline std::vector<TensorType> types_of(const std::vector<Tensor>& in) {
  std::vector<TensorType> types;
  for (const Tensor& t : in) types.push_back({t.dtype(), t.shape()});
  return types;
}

// Runs op's reference kernel directly (bypassing fast kernels).
inline Tensor run_reference(const std::string& op, const std::vector<Tensor>& in,
                            const AttrMap& attrs = {}) {
  const OpDef& def = get_op(op);
  const AttrMap full = complete_attrs(def, attrs, op);
  OpContext ctx{def, full, types_of(in), ""};
  std::vector<Tensor> outs;
  for (const TensorType& t : def.infer(ctx)) outs.push_back(Tensor::empty(t.shape, t.dtype));
  std::vector<Tensor> ins;
  for (const Tensor& t : in) ins.push_back(t.contiguous());
  def.reference(KernelCall{ctx, ins, outs});
  return outs[0];
}

// The implementation that eager dispatch picks for these inputs.
inline std::string kernel_impl(const std::string& op, const std::vector<Tensor>& in,
                               const AttrMap& attrs = {}) {
  const OpDef& def = get_op(op);
  const AttrMap full = complete_attrs(def, attrs, op);
  OpContext ctx{def, full, types_of(in), ""};
  return select_kernel(ctx, DeviceKind::CPU).impl;
}

inline bool built_with(const std::string& component) {
  for (const auto& [name, on] : build_info().components)
    if (name == component) return on;
  return false;
}

// Checks op's VJP rule (called eagerly on concrete float64 tensors) against
// central differences of sum(cotangent * op(inputs)).
inline void expect_vjp_matches_fd(const std::string& op, const std::vector<Tensor>& inputs,
                                  const AttrMap& attrs = {}, double tol = 1e-6) {
  const OpDef& def = get_op(op);
  const AttrMap full = complete_attrs(def, attrs, op);
  OpContext ctx{def, full, types_of(inputs), ""};
  const std::vector<Tensor> outs = apply(op, inputs, attrs);
  const Tensor cot = random_tensor(outs[0].shape(), 99);
  const auto cv = values(cot);
  auto objective = [&](const std::vector<Tensor>& in) {
    const auto y = values(apply(op, in, attrs)[0]);
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * cv[i];
    return s;
  };
  const std::vector<Tensor> grads = def.vjp(VjpArgs{ctx, inputs, outs, {cot}});
  ASSERT_EQ(grads.size(), inputs.size()) << op;
  const double eps = 1e-6;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(grads[i].defined()) << op << " input " << i;
    ASSERT_EQ(grads[i].shape(), inputs[i].shape()) << op << " input " << i;
    const auto gv = values(grads[i]);
    for (int64_t j = 0; j < inputs[i].numel(); ++j) {
      std::vector<Tensor> plus = inputs, minus = inputs;
      plus[i] = inputs[i].clone();
      minus[i] = inputs[i].clone();
      plus[i].data<double>()[j] += eps;
      minus[i].data<double>()[j] -= eps;
      const double fd = (objective(plus) - objective(minus)) / (2 * eps);
      ASSERT_NEAR(gv[j], fd, tol * (1.0 + std::abs(fd))) << op << " input " << i << " element " << j;
    }
  }
}

// Runs `fn` and checks it throws E with a message containing every part of `parts`.
template <class E, class F> void expect_error(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception mentioning " << parts[0];
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

}  // namespace ds::test
