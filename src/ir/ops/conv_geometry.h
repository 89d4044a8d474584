// Geometry of 2-D convolution and pooling, read from an op's inputs and
// attributes: NCHW, or channels-last (NHWC) where the op's `channels_last`
// attribute is set (the weight stays [O, C/groups, kH, kW] in both). Shared by the OpDefs (inference, reference kernels) and the fast
// kernels, so every implementation sees the same shapes and the same checks.
#pragma once

#include <string>
#include <vector>

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
  bool channels_last = false;  // x [n, h, w, c], y [n, oh, ow, o]
  Shape x_shape() const { return channels_last ? Shape{n, h, w, c} : Shape{n, c, h, w}; }
  Shape w_shape() const { return {o, c / groups, kh, kw}; }
  Shape y_shape() const { return channels_last ? Shape{n, oh, ow, o} : Shape{n, o, oh, ow}; }
};

// The op's `channels_last` attribute (false for ops without one).
bool is_channels_last(const OpContext& c);

// Row-major [a, b, c, d] values reordered to [a, c, d, b] (NCHW -> NHWC) and back.
std::vector<double> nchw_to_nhwc(const std::vector<double>& v, int64_t n, int64_t c, int64_t h,
                                 int64_t w);
std::vector<double> nhwc_to_nchw(const std::vector<double>& v, int64_t n, int64_t h, int64_t w,
                                 int64_t c);

ConvGeom conv2d_geom(const OpContext& c);                   // inputs x, w[, bias]
ConvGeom conv2d_backward_input_geom(const OpContext& c);    // inputs grad_y, w; attr input_size
ConvGeom conv2d_backward_weight_geom(const OpContext& c);   // inputs x, grad_y; attr kernel_size
ConvGeom conv_transpose2d_geom(const OpContext& c);         // inputs x, w[, bias]; output_padding

// A pooling window over x [n, c, h, w] -> y [n, c, oh, ow] (channels-last:
// x [n, h, w, c] -> y [n, oh, ow, c]).
struct PoolGeom {
  int64_t n, c, h, w;
  int64_t kh, kw;
  int64_t oh, ow;
  Pair2 stride, pad, dil;
  bool channels_last = false;
  Shape y_shape() const { return channels_last ? Shape{n, oh, ow, c} : Shape{n, c, oh, ow}; }
};

// max_pool2d / avg_pool2d on input x (for the backward ops: on their x or input_size).
PoolGeom pool_geom(const OpContext& c, const Shape& x);

}  // namespace ds::ops
