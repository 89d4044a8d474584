#include "ds/nn/init.h"

#include <atomic>
#include <cmath>

#include "ds/ops.h"

namespace ds::nn {
namespace {
std::atomic<uint64_t> seed_counter{0};
uint64_t seed_base = 0x5eed;
}  // namespace

void manual_seed(uint64_t seed) {
  seed_base = seed;
  seed_counter = 0;
}

uint64_t next_seed() {
  // splitmix64 of (base, counter): well-separated Philox keys for consecutive layers.
  uint64_t z = seed_base + 0x9E3779B97F4A7C15ull * (seed_counter.fetch_add(1) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

namespace init {

std::pair<int64_t, int64_t> fans(const Shape& shape) {
  DS_CHECK(shape.size() >= 2, ShapeError, "init: fan in/out need a weight of rank >= 2, got ",
           shape_str(shape));
  int64_t receptive = 1;
  for (size_t i = 2; i < shape.size(); ++i) receptive *= shape[i];
  return {shape[1] * receptive, shape[0] * receptive};
}

double calculate_gain(const std::string& nonlinearity, double param) {
  if (nonlinearity == "linear" || nonlinearity == "sigmoid" || nonlinearity == "conv2d")
    return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  throw ValueError("calculate_gain: unknown nonlinearity '" + nonlinearity +
                   "' (expected linear, conv2d, sigmoid, tanh, relu or leaky_relu)");
}

Tensor uniform(const Shape& shape, double low, double high, uint64_t seed, DType dtype) {
  if (low == high) return Tensor::full(shape, low, dtype);
  return random_uniform(shape, seed, low, high, dtype);
}

Tensor normal(const Shape& shape, double mean, double stddev, uint64_t seed, DType dtype) {
  return random_normal(shape, seed, mean, stddev, dtype);
}

Tensor kaiming_uniform(const Shape& shape, double a, uint64_t seed, DType dtype) {
  const double bound =
      std::sqrt(3.0) * calculate_gain("leaky_relu", a) / std::sqrt(double(fans(shape).first));
  return uniform(shape, -bound, bound, seed, dtype);
}

Tensor kaiming_normal(const Shape& shape, double a, uint64_t seed, DType dtype) {
  return normal(shape, 0.0, calculate_gain("leaky_relu", a) / std::sqrt(double(fans(shape).first)),
                seed, dtype);
}

Tensor xavier_uniform(const Shape& shape, double gain, uint64_t seed, DType dtype) {
  auto [fi, fo] = fans(shape);
  const double bound = gain * std::sqrt(6.0 / double(fi + fo));
  return uniform(shape, -bound, bound, seed, dtype);
}

Tensor xavier_normal(const Shape& shape, double gain, uint64_t seed, DType dtype) {
  auto [fi, fo] = fans(shape);
  return normal(shape, 0.0, gain * std::sqrt(2.0 / double(fi + fo)), seed, dtype);
}

}  // namespace init
}  // namespace ds::nn
