// Batch norm in training mode with its following relu (and residual add) in one op.
#pragma once

#include "ds/graph.h"

namespace ds::passes {

// batch_norm_train's y, through reshapes read once, that feeds
//   relu(y)                   -> batch_norm_train(..., relu=true)
//   relu(y + r) (r computed before the batch norm, y's type and shape)
//                             -> batch_norm_train(x, w, b, r, relu=true)
// where the relu's input has no other readers than relu's gradient masks
// gt(v, 0), which then read the fused output (gt(relu(v), 0) == gt(v, 0)). A CNN's
// normalize pass then writes the block's activation at once: the separate relu
// (or add + relu) pass that read y and wrote it again is gone. Bit for bit the
// graph's result: the op rounds y to its type before adding r, as the add did.
Graph batch_norm_epilogue(const Graph& g);

}  // namespace ds::passes
