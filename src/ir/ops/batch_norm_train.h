// Batch norm in training mode as one op (batch_norm_train) with a closed-form
// backward op (batch_norm_train_backward), instead of the mean/var/rsqrt chain
// and its autodiff.
#pragma once

#include "ds/tensor.h"

namespace ds {

// y = (x - mean) / sqrt(var + eps) * weight + bias over x [N, C, ...], with the
// batch statistics per channel: mean and the biased variance (float32; float64
// for a float64 x). Weight and bias are optional [C] tensors of the statistics' type.
struct BatchNormTrainResult {
  Tensor y, mean, var;
};
BatchNormTrainResult batch_norm_train(const Tensor& x, const Tensor& weight = {},
                                      const Tensor& bias = {}, double eps = 1e-5);

}  // namespace ds
