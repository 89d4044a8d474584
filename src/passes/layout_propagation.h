// Layout propagation for convolution chains (inference, CPU): convolutions
// linked through layout-agnostic ops keep oneDNN's channel-blocked layout
// between them (see ir/ops/blocked_layout.h); reorders happen only at the edges.
#pragma once

#include <cstdint>
#include <functional>

#include "ds/graph.h"

namespace ds::passes {

// Rewrites every chain of two or more float32 convolutions (conv2d, fused_conv2d;
// groups 1) joined by relu-like unary ops (f(0) = 0, so the zero channels that
// pad the last block stay zero), same-shape add/sub/mul and max_pool2d (floor
// mode): their activations
// become blocked values with `block` channels per block, made by to_blocked where
// a value enters a chain and turned back by from_blocked where one leaves it
// (a graph output or a reader outside the chain). Inference graphs only: a
// graph with backward ops is left alone. block is 8, 16, or
// ops::kChannelsLast (ir/ops/blocked_layout.h); 0: no change.
Graph layout_propagation(const Graph& g, int64_t block);

// The channel block the backend's convolutions pick on this CPU (oneDNN: 8, 16
// or channels-last by ISA and version); 0 when no backend has blocked kernels. The backend sets
// the provider at static initialization; it is asked once, when first needed.
void set_conv_channel_block_provider(std::function<int64_t()> provider);
int64_t conv_channel_block();

}  // namespace ds::passes
