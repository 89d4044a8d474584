// Shared by the layer files.
#pragma once

#include <string>

#include "ds/ops.h"

namespace ds::nn {

std::string pair_str(const Pair& p);  // "3" or "(3, 5)"
// PyTorch's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
Tensor default_bias(int64_t size, int64_t fan_in);

}  // namespace ds::nn
