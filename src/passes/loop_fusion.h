// Loop fusion's parts (the pass itself is declared in pass_manager.h).
#pragma once

#include "ds/graph.h"

namespace ds::passes {

// softmax / log_softmax over the last axis and layer_norm / rms_norm over the
// last extent (static shapes, float32/float64) spelled out as row reductions and
// elementwise ops, so loop fusion merges them with the ops around them into one
// kernel. Other nodes are copied.
Graph decompose_row_ops(const Graph& g);

// softmax(scale * a @ op(b)) over the last axis (float32; op(b) a transpose of the
// last two axes read in place) -> one matmul_softmax node, before loop fusion
// would take the softmax apart (matmul_softmax_fusion.cpp).
Graph matmul_softmax_fusion(const Graph& g);

}  // namespace ds::passes
