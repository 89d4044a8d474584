// The row kernels behind the CPU matmul_softmax kernel, one set per vector ISA
// (matmul_softmax_avx512.cpp, matmul_softmax_avx2.cpp: the same code,
// matmul_softmax_rows.inc, compiled for each). A block of rows of the scaled
// product is computed into a cache-resident scratch buffer by a register-tiled
// micro-kernel and normalized there, so each output row is written once.
#pragma once

#include <cstdint>

namespace ds::cpu {

// An additive mask over the rows of one `rows` call: row r at data + r * row_stride,
// its columns col_stride apart (1, or 0 for one value per row); data null: none.
struct RowMask {
  const float* data = nullptr;
  int64_t row_stride = 0, col_stride = 0;
};

struct MatmulSoftmaxRows {
  const char* isa;
  int64_t panel_cols;  // columns of one packed panel of op(b)
  int64_t block_rows;  // rows computed per block (the scratch holds this many rows)
  // Packs op(b) of one batch item (b [k, n], or [n, k] with trans_b) into panels of
  // panel_cols columns, each [k, panel_cols] row-major, the last one zero-padded:
  // packed_floats(n, k) floats.
  void (*pack)(const float* b, bool trans_b, int64_t n, int64_t k, float* packed);
  // y[r, :] = softmax(scale * a[r, :] @ op(b) + mask row r) for the rows r < m of a
  // [m, k]; y is [m, n]; scratch holds scratch_floats(n) floats.
  void (*rows)(const float* a, const float* packed, int64_t m, int64_t n, int64_t k, float scale,
               RowMask mask, float* y, float* scratch);

  int64_t padded_cols(int64_t n) const { return (n + panel_cols - 1) / panel_cols * panel_cols; }
  int64_t packed_floats(int64_t n, int64_t k) const { return padded_cols(n) * k; }
  int64_t scratch_floats(int64_t n) const { return padded_cols(n) * block_rows; }
};

// nullptr where this build or CPU lacks the instructions.
const MatmulSoftmaxRows* matmul_softmax_rows_avx512();
const MatmulSoftmaxRows* matmul_softmax_rows_avx2();

}  // namespace ds::cpu
