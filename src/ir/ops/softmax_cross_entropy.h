// Softmax cross-entropy as one op over logits [N, C] and class indices [N]:
// softmax_cross_entropy returns the per-row loss and the row logsumexp (saved for
// the backward), softmax_cross_entropy_backward the logits' gradient in one pass.
// It replaces log_softmax + gather + masks, which re-read the [N, C] logits
// several times (GPT-2's 50257-class rows).
#pragma once

#include <cstdint>

#include "ds/op.h"
#include "ds/tensor.h"

namespace ds {

// loss[r] = lse[r] - (1 - ls) x[r, t] - ls mean(x[r, :]) with t = target[r] and
// ls = label_smoothing; 0 where t == ignore_index. loss and lse are float32
// (float64 for float64 logits): low-precision logits are widened element by element.
struct SoftmaxCrossEntropyResult {
  Tensor loss, lse;
};
SoftmaxCrossEntropyResult softmax_cross_entropy(const Tensor& logits, const Tensor& target,
                                                int64_t ignore_index = -100,
                                                double label_smoothing = 0.0);

namespace ops {

// The row/statistics type for logits of type `logits`: float64 stays, the rest float32.
inline DType cross_entropy_stat_type(DType logits) {
  return logits == DType::Float64 ? DType::Float64 : DType::Float32;
}

// The error every kernel of the two ops raises for a target outside [0, C) that is
// not ignore_index.
[[noreturn]] void throw_bad_target(const OpContext& ctx, int64_t row, int64_t value,
                                   int64_t classes);

}  // namespace ops
}  // namespace ds
