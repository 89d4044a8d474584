// Sums of bfloat16/float16 values widened to float32 for the sum alone.
#pragma once

#include "ds/graph.h"

namespace ds::passes {

// After autocast, a linear layer's bias gradient is a float32 sum of the gradient
// that a low-precision op produced and a cast widened:
//   sum(R(cast(x_low, float32)))  ->  sum(R(x_low), dtype=float32)
// where R is a chain of reshapes (possibly none) and, more generally, the cast
// widens any float type to a wider one and the sum's result type is kept. The cast
// is exact and the sum accumulates in float32 or wider either way, so the result
// is the same sum; what goes is the cast's float32 copy of x (written once and read
// once more). The cast and the reshapes stay where other nodes or graph outputs
// read them; a sum over the last axis alone is then left as it is (loop fusion may
// put it in one region with the cast's other readers: one read of x).
Graph sum_low_precision(const Graph& g);

}  // namespace ds::passes
