// Scaled dot-product attention as one op, so a backend can serve it with a
// fused (flash-attention) kernel instead of matmul + softmax + matmul.
//   q [..., Sq, D], k [..., Sk, D], v [..., Sk, Dv] (same leading dims, one float dtype)
//   out [..., Sq, Dv] = softmax(q k^T * scale (+ causal mask)) v
// `scale` 0 means 1/sqrt(D). With `causal`, query i attends to keys j <= i
// (top-left aligned, as PyTorch's is_causal). Its gradient is the op
// "scaled_dot_product_attention_backward" (q, k, v, out, grad_out) -> (dq, dk, dv).
#pragma once

#include "ds/tensor.h"

namespace ds {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = false, double scale = 0);

}  // namespace ds
