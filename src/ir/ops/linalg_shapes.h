// Shape rules of the linear-algebra ops, shared by their OpDefs and the fast
// kernels (which must agree on how batch dimensions broadcast).
#pragma once

#include <string>

#include "ds/shape.h"

namespace ds::ops {

// numpy.matmul on shapes a [..., M, K] and b [..., K, N]: a 1-D a is [1, K] and a
// 1-D b is [K, 1] (the added axis is dropped from the result); batch dims broadcast.
struct MatmulDims {
  int64_t m = 1, k = 1, n = 1;
  Shape a_batch, b_batch;  // the batch dims of each operand (as given, before broadcasting)
  Shape batch;             // the broadcast batch dims
  Shape out;               // batch + [M if a is not 1-D] + [N if b is not 1-D]
};
MatmulDims matmul_dims(const Shape& a, const Shape& b, const std::string& where);

// Y = op(A) @ op(B): M, K, N of ONNX Gemm for 2-D a and b.
struct GemmDims {
  int64_t m, k, n;
};
GemmDims gemm_dims(const Shape& a, const Shape& b, bool trans_a, bool trans_b,
                   const std::string& where);

}  // namespace ds::ops
