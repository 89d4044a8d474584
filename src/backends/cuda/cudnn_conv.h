// cudnn_conv.cpp's convolution call (cached algorithm search, workspace) for the
// kernel files that prepare their own operands (cudnn_conv_nhwc.cpp).
#pragma once

#include "ds/dtype.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cuda {

enum class ConvDir { Forward, BackwardData, BackwardFilter };

// One convolution of `g` in direction `dir` on `device`, every operand of dtype
// `t`; `a`, `b`: the operands in the order the direction takes them (forward x, w;
// backward-data dy, w; backward-filter x, dy), `out` overwritten. Where
// g.channels_last the activations are NHWC and the filter is OHWI (cuDNN's KRSC).
void cudnn_convolution(ConvDir dir, const ops::ConvGeom& g, DType t, int device, const void* a,
                       const void* b, void* out);

}  // namespace ds::cuda
