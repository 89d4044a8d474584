// What the cuBLASLt users (matmul/linear, gemm, 1x1 convolutions) share: one
// handle and workspace per device, the data-type mapping, RAII owners of the
// descriptors (destroyed on every path) and the one matmul call they all make.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "backends/cuda/cuda_check.h"
#include "ds/dtype.h"

namespace ds::cuda {

constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;  // what cuBLASLt's fast Hopper kernels want

struct LtDevice {
  cublasLtHandle_t handle = nullptr;
  std::shared_ptr<void> workspace;  // kLtWorkspaceBytes
};
// The device's handle and workspace, made on first use (kept to exit). Launches
// using them go on the device's stream, so they never overlap.
LtDevice& lt_device(int device);

// float16/bfloat16/float64 to their CUDA types; everything else float32.
cudaDataType_t lt_data_type(DType t);
// The dtypes lt_matmul multiplies: float32, float16, bfloat16, float64.
bool lt_dtype(DType t);

struct LtLayout {
  cublasLtMatrixLayout_t h = nullptr;
  LtLayout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
    DS_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&h, t, rows, cols, ld));
    if (batch > 1) {
      const int32_t count = static_cast<int32_t>(batch);
      DS_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(h, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                       &count, sizeof count));
      DS_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          h, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
  }
  LtLayout(const LtLayout&) = delete;
  ~LtLayout() { cublasLtMatrixLayoutDestroy(h); }
};

struct LtDesc {
  cublasLtMatmulDesc_t h = nullptr;
  LtDesc(cublasComputeType_t compute, cudaDataType_t scale) {
    DS_CUBLAS_CHECK(cublasLtMatmulDescCreate(&h, compute, scale));
  }
  LtDesc(const LtDesc&) = delete;
  ~LtDesc() { cublasLtMatmulDescDestroy(h); }
};

// D = alpha * op(A) @ op(B) + beta * D in cuBLASLt's own (column-major) terms,
// over `batch` matrices. A is stored a_rows x a_cols (ld = a_rows), op(A) is
// rows x inner; likewise B (op(B) inner x cols); D is rows x cols (ld = rows).
// Strides are in elements; 0 repeats a matrix over the batch. `bias` (length
// rows) and `epilogue` are cuBLASLt's fused epilogue.
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
  const void* bias = nullptr;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
};
// Runs on the device's stream. `what` names the op in errors. inner must be >= 1.
void lt_matmul(int device, const LtMatmul& m, const char* what);

struct LtPreference {
  cublasLtMatmulPreference_t h = nullptr;
  LtPreference() { DS_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&h)); }
  LtPreference(const LtPreference&) = delete;
  ~LtPreference() { cublasLtMatmulPreferenceDestroy(h); }
};

}  // namespace ds::cuda
