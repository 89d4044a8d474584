// Channels-last (NHWC) convolution and max pooling, the layout cuDNN's fastest
// kernels use (PyTorch's memory_format=torch.channels_last). The layout is
// explicit in the shapes: a channels-last activation is a row-major tensor
// [N, H, W, C]. Weights keep the [O, C/groups, kH, kW] of ds/ops.h, so
// parameters, optimizers and checkpoints are those of the NCHW layers.
#pragma once

#include "ds/ops.h"

namespace ds {

// x [N, H, W, C], w [O, C/groups, kH, kW], bias [O] -> [N, OH, OW, O].
Tensor conv2d_channels_last(const Tensor& x, const Tensor& w, const Tensor& bias = {},
                            const Pair& stride = {1}, const Pair& padding = {0},
                            const Pair& dilation = {1}, int64_t groups = 1);
// x [N, H, W, C] -> [N, OH, OW, C].
Tensor max_pool2d_channels_last(const Tensor& x, const Pair& kernel, const Pair& stride = {},
                                const Pair& padding = {0}, const Pair& dilation = {1},
                                bool ceil_mode = false);

// [N, C, H, W] -> [N, H, W, C] and back (permutes).
Tensor to_channels_last(const Tensor& x);
Tensor from_channels_last(const Tensor& x);

}  // namespace ds
