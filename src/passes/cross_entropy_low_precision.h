// Mixed-precision softmax cross-entropy without the float32 copies of the logits.
#pragma once

#include "ds/graph.h"

namespace ds::passes {

// After autocast (which widens the low-precision logits of the last linear to
// float32 for the loss) and low_precision_layout:
//   softmax_cross_entropy(R(cast_f32(x_low)))           -> softmax_cross_entropy(R(x_low))
//   cast_low(softmax_cross_entropy_backward(R(cast_f32(x_low)), ...))
//                                                       -> softmax_cross_entropy_backward(R(x_low), ...)
// where R is a chain of reshapes. Bit for bit the same: the kernels widen each
// element to float32 exactly as the cast did, and the backward rounds the same
// float32 value once to the low type (it is rewritten only when every reader of
// its float32 gradient is such a cast).
Graph cross_entropy_low_precision(const Graph& g);

}  // namespace ds::passes
