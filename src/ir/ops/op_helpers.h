// Helpers for writing OpDefs: float64 staging for reference kernels, common
// inference rules, broadcasting index maps.
#pragma once

#include <cmath>
#include <vector>

#include "ds/op.h"
#include "ds/ops.h"

namespace ds::ops {

// Reference kernels compute in float64: simple and obviously right. (int64
// values beyond 2^53 lose precision here; fast kernels are exact.)
std::vector<double> to_f64(const Tensor& t);
void from_f64(const std::vector<double>& v, Tensor& out);  // rounds/casts into out's dtype

inline std::vector<TensorType> one(DType d, Shape s) { return {TensorType{d, std::move(s)}}; }

// For each element of `out_shape`, the flat index into a tensor of `in_shape`
// broadcast to it.
std::vector<int64_t> broadcast_index(const Shape& in_shape, const Shape& out_shape);

// Axis list normalized, sorted, unique; empty means all axes.
std::vector<int> norm_axes(const std::vector<int64_t>& axes, int rank, const std::string& where);

// Require floating input (for ops like exp on ints, we promote instead: see
// float_result).
DType float_result(DType in);  // ints/bool -> float32, floats unchanged

// Reduces grad of a broadcast operand back to `shape` (sum over broadcast axes).
Tensor unbroadcast(const Tensor& grad, const Shape& shape);

}  // namespace ds::ops
