// One cuBLASLt matmul in cuBLASLt's own (column-major) terms, for the kernels
// that map onto a GEMM: the gemm op and 1x1 convolutions.
#pragma once

#include <cstdint>

#include "ds/dtype.h"

namespace ds::cuda {

// D = alpha * op(A) @ op(B) + beta * D, column-major, over `batch` matrices.
// A is stored a_rows x a_cols (ld = a_rows), op(A) is rows x inner; likewise B
// (op(B) inner x cols); D is rows x cols (ld = rows). Strides are in elements;
// 0 repeats a matrix over the batch.
struct LtMatmul {
  DType dtype = DType::Float32;
  int64_t rows = 0, cols = 0, inner = 0, batch = 1;
  const void* a = nullptr;
  bool trans_a = false;
  int64_t stride_a = 0;
  const void* b = nullptr;
  bool trans_b = false;
  int64_t stride_b = 0;
  void* d = nullptr;
  int64_t stride_d = 0;
  double alpha = 1, beta = 0;
};
void lt_matmul(int device, const LtMatmul& m, const char* what);

}  // namespace ds::cuda
