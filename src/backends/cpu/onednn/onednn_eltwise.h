// An epilogue activation as oneDNN's eltwise post-op: shared by the fused
// convolution kernels (plain and blocked layouts).
#pragma once

#include <utility>

#include <oneapi/dnnl/dnnl.hpp>

#include "ir/ops/fused_epilogue.h"

namespace ds::cpu::onednn {

// oneDNN's eltwise algorithm and alpha for an activation (silu is swish with alpha 1);
// algorithm::undef for Act::None.
std::pair<dnnl::algorithm, float> eltwise_of(ops::Act a, float alpha);

}  // namespace ds::cpu::onednn
