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

#include "ds/tensor.h"

namespace ds {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = false, double scale = 0,
                                    const std::string& layout = "bhsd");

}  // namespace ds
