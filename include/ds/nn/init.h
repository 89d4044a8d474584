// Weight initialization, as torch.nn.init, with explicit seeds (Philox: the same
// values on every machine and thread count).
#pragma once

#include "ds/tensor.h"

namespace ds::nn {

// The seed sequence that layers draw their initial weights from.
void manual_seed(uint64_t seed);
uint64_t next_seed();

namespace init {

// fan_in / fan_out of a weight ([out, in] or [out, in/groups, kh, kw]).
std::pair<int64_t, int64_t> fans(const Shape& shape);
// gain for a nonlinearity: "linear", "relu", "leaky_relu" (with param), "tanh", "sigmoid".
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

Tensor uniform(const Shape& shape, double low, double high, uint64_t seed,
               DType dtype = DType::Float32);
Tensor normal(const Shape& shape, double mean, double stddev, uint64_t seed,
              DType dtype = DType::Float32);
// U(-b, b), b = gain * sqrt(3 / fan_in), gain for leaky_relu with slope `a`
// (PyTorch's default for Linear and Conv weights uses a = sqrt(5)).
Tensor kaiming_uniform(const Shape& shape, double a, uint64_t seed, DType dtype = DType::Float32);
Tensor kaiming_normal(const Shape& shape, double a, uint64_t seed, DType dtype = DType::Float32);
Tensor xavier_uniform(const Shape& shape, double gain, uint64_t seed, DType dtype = DType::Float32);
Tensor xavier_normal(const Shape& shape, double gain, uint64_t seed, DType dtype = DType::Float32);

}  // namespace init
}  // namespace ds::nn
