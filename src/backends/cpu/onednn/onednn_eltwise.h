// The fused convolution primitive (bias, residual sum and activation as oneDNN
// post-ops), shared by the plain- and blocked-layout conv kernels.
#pragma once

#include <utility>

#include <oneapi/dnnl/dnnl.hpp>

#include "ir/ops/conv_geometry.h"
#include "ir/ops/fused_epilogue.h"

namespace ds::cpu::onednn {

// oneDNN's eltwise algorithm and alpha for an activation (silu is swish with alpha 1);
// algorithm::undef for Act::None.
std::pair<dnnl::algorithm, float> eltwise_of(ops::Act a, float alpha);

// A direct forward-inference convolution of geometry `g` over x/w/y in the given
// memory descriptors, with a float32 bias when `bias`, then the residual sum, then
// `act`; scratchpad supplied by the caller.
dnnl::convolution_forward::primitive_desc fused_conv_pd(const ops::ConvGeom& g,
                                                        const dnnl::memory::desc& x,
                                                        const dnnl::memory::desc& w,
                                                        const dnnl::memory::desc& y, bool bias,
                                                        bool residual, ops::Act act, float alpha);

}  // namespace ds::cpu::onednn
