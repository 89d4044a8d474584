// The epilogue of the fused library ops on the GPU: out = act(src + bias[channel]
// + residual) in one elementwise pass (src may be out itself). fused_conv2d and
// fused_linear use it where cuDNN / cuBLASLt cannot fuse the activation.
#pragma once

#include "ds/tensor.h"
#include "ir/ops/fused_epilogue.h"

namespace ds::cuda {

// bias [channels] is indexed by (i / plane) % channels; bias and residual may be
// null. src and out have out's dtype and element count.
void apply_epilogue(const Tensor& src, Tensor& out, const Tensor* bias, const Tensor* residual,
                    ops::Act act, double alpha, int64_t channels, int64_t plane, const char* what);

}  // namespace ds::cuda
