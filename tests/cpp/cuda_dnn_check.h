// Checks shared by the CUDA kernel tests of test_cuda_dnn*.cpp: each kernel is
// called directly on fresh random inputs with its outputs poisoned with NaN (an
// element the kernel forgets shows up) and compared with the op's float64
// reference kernel.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ds/cuda.h"
#include "ds/ds.h"

#define DS_REQUIRE_GPU()             \
  if (ds::cuda::device_count() == 0) \
  GTEST_SKIP() << "no CUDA device: " << ds::cuda::unavailable_reason()

namespace cuda_dnn_test {

using ds::AttrMap;
using ds::DType;
using ds::Shape;
using ds::Tensor;

inline const DType kFloats[] = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16};

// One low-precision rounding of the result, per dtype (relative and absolute).
inline double tol(DType t) {
  switch (t) {
    case DType::Float64: return 1e-12;
    case DType::Float16: return 2e-3;
    case DType::BFloat16: return 1.6e-2;
    default: return 2e-6;
  }
}

inline std::string at(DType t, const Shape& s) {
  return std::string(" ") + ds::dtype_name(t) + " " + ds::shape_str(s);
}

inline void expect_close(const Tensor& got, const Tensor& want, double t, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = ds::element_as_double(got, i), w = ds::element_as_double(want, i);
    if (std::isnan(w)) {
      ASSERT_TRUE(std::isnan(g)) << what << " element " << i << ": got " << g << ", want NaN";
      continue;
    }
    if (std::isinf(w)) {
      ASSERT_EQ(g, w) << what << " element " << i;
      continue;
    }
    ASSERT_LE(std::abs(g - w), t * (1 + std::abs(w)))
        << what << " element " << i << ": got " << g << ", want " << w;
  }
}

// Runs op `name` through its CUDA kernel (which must be `impl`) and its reference
// kernel on the same inputs; the GPU outputs start as NaN. An empty `impl`
// accepts any CUDA kernel. `tols`: one per output.
inline void check_op(const std::string& name, const std::vector<Tensor>& inputs, const AttrMap& attrs,
                     const std::string& impl, const std::vector<double>& tols,
                     const std::string& what) {
  const ds::OpDef& op = ds::get_op(name);
  const AttrMap full = ds::complete_attrs(op, attrs, name);
  std::vector<ds::TensorType> types;
  for (const Tensor& in : inputs) types.push_back({in.dtype(), in.shape()});
  const ds::OpContext ctx{op, full, types, what};
  const std::vector<ds::TensorType> out_types = op.infer(ctx);
  ASSERT_EQ(tols.size(), out_types.size()) << what << ": one tolerance per output";

  std::vector<Tensor> want;
  for (const auto& o : out_types) want.push_back(Tensor::empty(o.shape, o.dtype));
  op.reference(ds::KernelCall{ctx, inputs, want});

  const ds::KernelEntry& k = ds::select_kernel(ctx, ds::DeviceKind::CUDA);
  if (impl.empty())
    ASSERT_NE(k.impl, "reference") << what << ": no CUDA kernel took these inputs";
  else
    ASSERT_EQ(k.impl, impl) << what << ": the CUDA kernel declined these inputs";
  const ds::Device gpu = ds::Device::cuda();
  std::vector<Tensor> in_gpu, got;
  for (const Tensor& in : inputs) in_gpu.push_back(in.to(gpu));
  for (const auto& o : out_types) got.push_back(Tensor::full(o.shape, NAN, o.dtype).to(gpu));
  k.fn(ds::KernelCall{ctx, in_gpu, got});
  for (size_t i = 0; i < got.size(); ++i)
    expect_close(got[i].to(ds::Device::cpu()), want[i], tols[i], what + " output " + std::to_string(i));
}

// The same with one tolerance for every output.
inline void check_op(const std::string& name, const std::vector<Tensor>& inputs, const AttrMap& attrs,
                     const std::string& impl, double t, const std::string& what) {
  const ds::OpDef& op = ds::get_op(name);
  std::vector<ds::TensorType> types;
  for (const Tensor& in : inputs) types.push_back({in.dtype(), in.shape()});
  const AttrMap full = ds::complete_attrs(op, attrs, name);
  const size_t outputs = op.infer(ds::OpContext{op, full, types, what}).size();
  check_op(name, inputs, attrs, impl, std::vector<double>(outputs, t), what);
}

inline Tensor uniform(const Shape& s, uint64_t seed, DType t, double lo = -1, double hi = 1) {
  return ds::random_uniform(s, seed, lo, hi, t);
}

// Sums of k products: float32/float64 error grows with sqrt(k); float16/bfloat16
// results are dominated by the final rounding (and Winograd/FFT transforms).
inline double sum_tol(DType t, int64_t k) {
  const double r = std::sqrt(static_cast<double>(k) + 1);
  return t == DType::Float32 || t == DType::Float64 ? tol(t) * 8 * r : tol(t) * (1 + r / 4);
}

// Integer indices in [lo, hi) (random, repeats included), as `t`.
inline Tensor indices(const Shape& s, uint64_t seed, int64_t lo, int64_t hi, DType t) {
  return ds::cast(ds::floor(ds::random_uniform(s, seed, static_cast<double>(lo),
                                               static_cast<double>(hi), DType::Float64)),
                  t);
}

// Every dtype's data for the byte-moving ops: floats, integers and bools.
inline Tensor any_dtype(const Shape& s, uint64_t seed, DType t) {
  if (t == DType::Bool) return ds::gt(uniform(s, seed, DType::Float32), Tensor::scalar(0.0));
  if (!ds::is_floating(t)) return indices(s, seed, 0, 100, t);
  return uniform(s, seed, t, -3, 3);
}

}  // namespace cuda_dnn_test
