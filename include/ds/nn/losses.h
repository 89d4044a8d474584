// Losses as compositions of ds ops (so they differentiate and compile like any
// other expression). reduction: "mean" | "sum" | "none".
#pragma once

#include <string>

#include "ds/tensor.h"

namespace ds::nn {

// logits [N, C], integer targets [N]. Stable through log_softmax. Targets equal to
// ignore_index contribute nothing and are left out of the mean.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0,
                     int64_t ignore_index = -100, const std::string& reduction = "mean");
// log-probabilities [N, C], integer targets [N].
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, int64_t ignore_index = -100,
                const std::string& reduction = "mean");
Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction = "mean");
Tensor l1_loss(const Tensor& input, const Tensor& target, const std::string& reduction = "mean");
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, double beta = 1.0,
                      const std::string& reduction = "mean");
// max(x, 0) - x*y + log(1 + exp(-|x|)): stable for any logit.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const std::string& reduction = "mean");

}  // namespace ds::nn
