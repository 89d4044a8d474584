// Helpers for op tests: random tensors, element access, running an op's
// reference kernel directly, and VJP-vs-central-difference gradient checks.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ds/ds.h"

namespace ds::shape_test {

inline Tensor random_tensor(const Shape& shape, DType dtype, std::mt19937& rng, double lo = -2.0,
                            double hi = 2.0) {
  Tensor t = Tensor::empty(shape, dtype);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (double& x : v) x = is_floating(dtype) ? dist(rng) : std::floor(dist(rng));
  if (dtype == DType::Bool)
    for (double& x : v) x = x > 0 ? 1.0 : 0.0;
  Tensor staged = Tensor::from_vector(v, shape);
  copy_into(staged, t);
  return t;
}

inline std::vector<double> values(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = element_as_double(t, i);
  return v;
}

inline Tensor f64(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

// Compares element by element with an absolute + relative tolerance; NaNs must match.
inline void expect_values(const Tensor& got, const std::vector<double>& want, double tol = 0.0,
                          const std::string& what = "") {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = element_as_double(got, static_cast<int64_t>(i));
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g)) << what << " at " << i;
      continue;
    }
    if (g == want[i]) continue;
    EXPECT_LE(std::abs(g - want[i]), tol * (1.0 + std::abs(want[i])))
        << what << " at " << i << ": got " << g << ", want " << want[i];
  }
}

// Runs `op`'s reference kernel on concrete inputs (bypassing fast kernels).
inline std::vector<Tensor> run_reference(const std::string& name, const std::vector<Tensor>& inputs,
                                         const AttrMap& attrs = {}) {
  const OpDef& op = get_op(name);
  AttrMap full = complete_attrs(op, attrs, name + ": ");
  std::vector<TensorType> types;
  std::vector<Tensor> in;
  for (const Tensor& t : inputs) {
    types.push_back({t.dtype(), t.shape()});
    in.push_back(t.contiguous());
  }
  OpContext ctx{op, full, types, ""};
  std::vector<Tensor> out;
  for (const TensorType& t : op.infer(ctx)) out.push_back(Tensor::empty(t.shape, t.dtype));
  op.reference(KernelCall{ctx, in, out});
  return out;
}

// Calls `op`'s VJP eagerly with output cotangents `grads`.
inline std::vector<Tensor> vjp(const std::string& name, const std::vector<Tensor>& inputs,
                               const AttrMap& attrs, const std::vector<Tensor>& grads) {
  const OpDef& op = get_op(name);
  AttrMap full = complete_attrs(op, attrs, name + ": ");
  std::vector<TensorType> types;
  for (const Tensor& t : inputs) types.push_back({t.dtype(), t.shape()});
  OpContext ctx{op, full, types, ""};
  std::vector<Tensor> outputs = apply(name, inputs, attrs);
  return op.vjp(VjpArgs{ctx, inputs, outputs, grads});
}

// Checks the VJP of `name` for the float64 inputs listed in `wrt` against central
// differences of L = sum_k <output_k, w_k> with random weights w_k.
inline void gradcheck(const std::string& name, std::vector<Tensor> inputs, const AttrMap& attrs,
                      const std::vector<size_t>& wrt, double eps = 1e-6, double tol = 1e-6) {
  std::mt19937 rng(1234);
  std::vector<Tensor> outs = apply(name, inputs, attrs);
  std::vector<Tensor> weights;
  for (const Tensor& o : outs) weights.push_back(random_tensor(o.shape(), DType::Float64, rng));
  auto loss = [&](const std::vector<Tensor>& in) {
    double l = 0;
    auto o = apply(name, in, attrs);
    for (size_t k = 0; k < o.size(); ++k) {
      auto ov = values(o[k]), wv = values(weights[k]);
      for (size_t i = 0; i < ov.size(); ++i) l += ov[i] * wv[i];
    }
    return l;
  };
  const auto grads = vjp(name, inputs, attrs, weights);
  ASSERT_EQ(grads.size(), inputs.size()) << name << ": one gradient per input";
  for (size_t which : wrt) {
    ASSERT_EQ(inputs[which].dtype(), DType::Float64);
    ASSERT_TRUE(grads[which].defined()) << name << ": no gradient for input " << which;
    ASSERT_EQ(grads[which].shape(), inputs[which].shape()) << name << " input " << which;
    const auto analytic = values(grads[which]);
    Tensor x = inputs[which].clone();
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double keep = p[i];
      std::vector<Tensor> in = inputs;
      in[which] = x;
      p[i] = keep + eps;
      const double up = loss(in);
      p[i] = keep - eps;
      const double down = loss(in);
      p[i] = keep;
      const double numeric = (up - down) / (2 * eps);
      EXPECT_NEAR(analytic[i], numeric, tol * (1 + std::abs(numeric)))
          << name << ": d/d input " << which << " element " << i;
    }
  }
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

}  // namespace ds::shape_test
