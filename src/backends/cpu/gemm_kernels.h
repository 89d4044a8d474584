// matmul, linear and gemm (float32) expressed as row-major SGEMM calls, so each
// BLAS library (OpenBLAS, oneDNN) only supplies its sgemm and the shapes it wins.
#pragma once

#include <functional>
#include <string>

#include "ds/op.h"

namespace ds::cpu {

// Row-major C[m, n] = alpha * op(A) @ op(B) + beta * C.
using SgemmFn = void (*)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                         float* c, int64_t ldc);

// The size of one GEMM call the op makes (batched matmuls make several).
struct GemmSize {
  int64_t m, n, k;
};

// Registers matmul, linear and gemm kernels for float32 calls whose GEMM size
// `prefer` accepts.
void register_gemm_kernels(SgemmFn sgemm, const std::string& impl, int priority,
                           std::function<bool(const GemmSize&)> prefer);

// Registers the fused_linear kernel (GEMM tile + epilogue) with the same SGEMM.
void register_fused_gemm_kernel(SgemmFn sgemm, const std::string& impl, int priority,
                                std::function<bool(const GemmSize&)> prefer);

}  // namespace ds::cpu
