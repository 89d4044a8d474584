// Scaled dot-product attention as one op, so a backend can serve it with a
// fused (flash-attention) kernel instead of matmul + softmax + matmul.
//   q [..., Sq, D], k [..., Sk, D], v [..., Sk, Dv] (same leading dims, one float dtype)
//   out [..., Sq, Dv] = softmax(q k^T * scale (+ causal mask)) v
// With layout "bshd", q, k, v and out are [..., S, H, D] instead ([B, T, H, D]
// as a transformer's projections give them: no transposes around the op).
// `scale` 0 means 1/sqrt(D). With `causal`, query i attends to keys j <= i
// (top-left aligned, as PyTorch's is_causal). The op's second output, lse
// [..., Sq] (float32; float64 for float64 inputs), is each row's log-sum-exp of
// the scaled, masked scores: what a flash-attention backward needs to rebuild
// the probabilities without another pass over the keys. The gradient is the op
// "scaled_dot_product_attention_backward" (q, k, v, out, grad_out[, lse]) ->
// (dq, dk, dv); kernels without a use for lse may ignore it.
#pragma once

#include <string>

#include "ds/op.h"
#include "ds/tensor.h"

namespace ds {

namespace ops {

// An attention call's sizes: b batches of h heads (h = 1 below rank 3 in layout
// "bhsd"), sq queries and sk keys, head sizes d (q, k) and dv (v); bshd when the
// sequence axis comes before the heads.
struct AttentionDims {
  int64_t b = 1, h = 1, sq = 0, sk = 0, d = 0, dv = 0;
  bool bshd = false;
  int64_t batch() const { return b * h; }  // batch-heads
};

// Checks the layout and q, k, v (ranks, one float dtype, matching dims, at least
// one key) and returns the sizes; the errors name the op's node.
AttentionDims attention_dims(const OpContext& c);

// The backward op's optional input lse; the inputs before it (q, k, v, out,
// grad_out) are tensors of q's dtype in the op's layout.
constexpr size_t kLseInput = 5;

// The scores' scale: the `scale` attribute, or 1/sqrt(d) where it is 0.
double attention_scale(const OpContext& c, int64_t d);

}  // namespace ops

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = false, double scale = 0,
                                    const std::string& layout = "bhsd");

}  // namespace ds
