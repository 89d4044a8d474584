// matmul_softmax: softmax over the last axis of a scaled matrix product, as one
// op, so the CPU computes a block of rows of the product in cache and normalizes
// it there instead of writing the whole product out and reading it back:
//   y = softmax(scale * (a @ op(b)) [+ mask], axis=-1)
//   a [..., M, K]; b [..., K, N], or [..., N, K] with trans_b (op(b) = b^T, as
//   attention's q @ k^T reads k); batch dims broadcast as in matmul; y [..., M, N];
//   the optional additive mask (a causal mask, padding) broadcasts to y's shape.
// The loop-fusion pipeline forms it from softmax(matmul(a, b) * c [+ mask]) and
// the transposes and scalar scales around the matmul
// (passes/matmul_softmax_fusion.cpp).
#pragma once

#include "ds/tensor.h"

namespace ds {

Tensor matmul_softmax(const Tensor& a, const Tensor& b, bool trans_b = false, double scale = 1.0,
                      const Tensor& mask = Tensor());

}  // namespace ds
