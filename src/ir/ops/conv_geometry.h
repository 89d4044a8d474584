// Geometry of 2-D convolution and pooling (NCHW), read from an op's inputs and
// attributes. Shared by the OpDefs (inference, reference kernels) and the fast
// kernels, so every implementation sees the same shapes and the same checks.
#pragma once

#include <string>

#include "ds/op.h"

namespace ds::ops {

struct Pair2 {
  int64_t h = 0, w = 0;
};

// A "Pair" attribute (1 value for both dims, or 2); `min` is the smallest allowed value.
Pair2 pair_attr(const OpContext& c, const std::string& name, int64_t min);

// A direct convolution: x [n, c, h, w] * weight [o, c/groups, kh, kw] -> y [n, o, oh, ow].
// The backward ops and conv_transpose2d are described by the forward convolution
// they differentiate (conv_transpose2d's output is that convolution's input).
struct ConvGeom {
  int64_t n, c, h, w;
  int64_t o, kh, kw;
  int64_t oh, ow;
  int64_t groups;
  Pair2 stride, pad, dil;
  Shape x_shape() const { return {n, c, h, w}; }
  Shape w_shape() const { return {o, c / groups, kh, kw}; }
  Shape y_shape() const { return {n, o, oh, ow}; }
};

ConvGeom conv2d_geom(const OpContext& c);                   // inputs x, w[, bias]
ConvGeom conv2d_backward_input_geom(const OpContext& c);    // inputs grad_y, w; attr input_size
ConvGeom conv2d_backward_weight_geom(const OpContext& c);   // inputs x, grad_y; attr kernel_size
ConvGeom conv_transpose2d_geom(const OpContext& c);         // inputs x, w[, bias]; output_padding

// A pooling window over x [n, c, h, w] -> y [n, c, oh, ow].
struct PoolGeom {
  int64_t n, c, h, w;
  int64_t kh, kw;
  int64_t oh, ow;
  Pair2 stride, pad, dil;
  Shape y_shape() const { return {n, c, oh, ow}; }
};

// max_pool2d / avg_pool2d on input x (for the backward ops: on their x or input_size).
PoolGeom pool_geom(const OpContext& c, const Shape& x);

}  // namespace ds::ops
