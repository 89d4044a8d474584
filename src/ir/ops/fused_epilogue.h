// The epilogue that the epilogue-fusion pass folds into conv2d/linear/matmul:
// y = activation(op(x, w) [+ bias] [+ residual]). Shared by the fused OpDefs
// (fused_linear, fused_conv2d), the pass and the fast kernels.
#pragma once

#include <cmath>
#include <string>

#include "ds/tensor.h"

namespace ds::ops {

// Activation names a fused op accepts in its `activation` attribute ("none" for
// none); `alpha` is leaky_relu's negative slope.
bool is_epilogue_activation(const std::string& name);
// The activation applied with ds ops (works on any float dtype; used by references).
Tensor apply_epilogue_activation(const Tensor& x, const std::string& name, double alpha);

// One scalar of the activation in float: the fast kernels' epilogue loop.
enum class Act { None, Relu, LeakyRelu, Gelu, GeluTanh, Silu, Sigmoid, Tanh };
Act parse_activation(const std::string& name);

inline float activate(Act a, float x, float alpha) {
  switch (a) {
    case Act::None: return x;
    case Act::Relu: return x > 0.0f || std::isnan(x) ? x : 0.0f;
    case Act::LeakyRelu: return x > 0.0f ? x : x * alpha;
    case Act::Gelu: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case Act::GeluTanh: {
      const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + std::tanh(inner));
    }
    case Act::Silu: return x / (1.0f + std::exp(-x));
    case Act::Sigmoid: return 1.0f / (1.0f + std::exp(-x));
    case Act::Tanh: return std::tanh(x);
  }
  return x;
}

}  // namespace ds::ops
