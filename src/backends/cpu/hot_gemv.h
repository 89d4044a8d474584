// Batch-1 linear layers (GEMV, y = act(W x + bias [+ residual])) that split their
// rows over a hot run's spinning workers (core/hot_run.h). At batch 1 a linear
// layer streams its weights once: 1-2 MB take ~15 us on one core, bound by that
// core's bandwidth, so two cores each streaming half halve it.
#pragma once

#include <cstdint>

#include "ir/ops/fused_epilogue.h"

namespace ds::cpu {

struct GemvEpilogue {
  const float* bias = nullptr;      // [rows] or null
  const float* residual = nullptr;  // [rows] or null
  ops::Act act = ops::Act::None;    // None, Relu or LeakyRelu
  float alpha = 0.0f;               // LeakyRelu's slope
};

// y[r] = act(dot(w[r, :], x) + bias[r] + residual[r]) for r in [0, rows), w
// row-major [rows, in], in tasks of chunk_rows rows (hot_split). Each row's dot
// product is summed in the same order whichever thread and block computes it, so
// the result is bit-identical for any split (and with or without a hot run).
void gemv_rows(const float* w, const float* x, float* y, int64_t rows, int64_t in,
               const GemvEpilogue& ep, int64_t chunk_rows);

// The kernel's rows per task: about 64 KB of weights, a multiple of 4.
int64_t gemv_chunk_rows(int64_t in);

}  // namespace ds::cpu
