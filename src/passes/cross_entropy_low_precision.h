// Mixed-precision softmax cross-entropy without the float32 copies of the logits.
#pragma once

#include "ds/graph.h"

namespace ds::passes {

// After autocast (which widens the low-precision logits of the last linear to
// float32 for the loss) and low_precision_layout:
//   softmax_cross_entropy(R(cast_f32(x_low)))           -> softmax_cross_entropy(R(x_low))
//   cast_low(softmax_cross_entropy_backward(R(cast_f32(x_low)), ...))
//                                                       -> softmax_cross_entropy_backward(R(x_low), ...)
// where R is a chain of reshapes. The kernels widen each element to float32
// exactly as the cast did, and the backward rounds the same float32 value once to
// the low type (it is rewritten only when every reader of its float32 gradient is
// such a cast): bit for bit the same on the CPU. The CUDA forward sums a row in
// 16-byte packs (8 bf16 or 4 float32 values), so there the loss and lse (and
// through lse the gradient) agree up to float32 rounding.
Graph cross_entropy_low_precision(const Graph& g);

}  // namespace ds::passes
