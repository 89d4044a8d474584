// Mixed-precision graphs without the float32 round trips around layout ops.
#pragma once

#include "ds/graph.h"

namespace ds::passes {

// After autocast: layout ops (reshape, permute, slice, pad, concat, split, ...)
// between a widening cast (bfloat16/float16 -> float32) and a narrowing one run on
// the narrow values, and the casts that meet cancel; bit for bit the same results.
// See low_precision_layout.cpp for the cost model that decides where casts go.
Graph low_precision_layout(const Graph& g);

// add(pad(a), pad(b), ...) with zero padding that tiles one axis (the gradient of
// slices of one tensor) -> concat(a, b, ...).
Graph padded_sum_to_concat(const Graph& g);

}  // namespace ds::passes
