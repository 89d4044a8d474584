// Classifier heads over a large number of classes that is not a multiple of 64
// (GPT-2's 50257-word vocabulary), padded inside the graph.
#pragma once

#include <cstdint>

#include "ds/graph.h"

namespace ds::passes {

// Heads with at least this many classes are padded (the padding is then < 6 %).
constexpr int64_t kPadClassesFrom = 1024;
// ...to a multiple of this many classes (nanoGPT's 50304 for GPT-2).
constexpr int64_t kClassAlignment = 64;

// The logits' leading dimension (the class count) sets the leading dimension of
// the head's three GEMMs; an unaligned one sends cuBLASLt to slow kernels or to
// padded copies of the whole logits (1.6 GB for GPT-2 at 16x1024 tokens, three
// per step). Where linear(x, W[, b]) feeds a softmax cross-entropy (no label
// smoothing) through reshapes that keep the classes last:
//   W [C, K] -> Wp = pad(W) [Cp, K] (zero rows), b -> pad(b or 0, value -inf) [Cp]
//   linear -> linear(x, Wp, bp): the padding logits are -inf, so the softmax
//             gives them probability 0: the loss and lse are unchanged and the
//             gradient's padding columns are exactly 0;
//   reshapes, softmax_cross_entropy(_backward) -> the same on the padded values;
//   matmul(dlogits, W)       -> matmul(padded dlogits, Wp) (adds 0 * 0 terms);
//   gemm(dlogits^T, x)       -> its first C rows of the padded product;
//   sum(dlogits) over leading axes (the bias gradient) -> the first C of the padded sum;
//   any other reader         -> the first C classes (a slice).
Graph pad_classes(const Graph& g);

}  // namespace ds::passes
