// Which data layout a forward convolution runs in: shared by conv2d and fused_conv2d.
#pragma once

#include "ir/ops/conv_geometry.h"

namespace ds::cpu::onednn {

// True: the plain NCHW/OIHW layout (no reorders); false: oneDNN's blocked layouts.
bool plain_layout(const ops::ConvGeom& g);

}  // namespace ds::cpu::onednn
