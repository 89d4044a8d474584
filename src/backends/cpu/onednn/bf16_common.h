// bfloat16 kernels through oneDNN: whether this CPU runs bf16 natively, and
// plain-layout bf16 memory descriptors.
#pragma once

#include <algorithm>

#include "backends/cpu/low_precision.h"
#include "backends/cpu/onednn/onednn_common.h"
#include "ds/op.h"

namespace ds::cpu::onednn {

// True when oneDNN dispatches to avx512_core_bf16 (or a superset, AMX) code on
// this CPU: the bf16 dot-product instructions exist, so bf16 primitives are fast.
// Elsewhere the float32-emulated kernels (low_precision_kernels.cpp) stay in use.
bool native_bf16();

// bfloat16 in the plain row-major layout of `s`.
inline dnnl::memory::desc plain_bf16(const Shape& s) {
  return dnnl::memory::desc(dims_of(s), dnnl::memory::data_type::bf16, dims_of(contiguous_strides(s)));
}

// Every input bfloat16, every extent static and nonzero, and the CPU native:
// the kernels below never see an empty or symbolic problem.
inline bool bf16_call(const OpContext& c) {
  if (!native_bf16() || !native_bf16_allowed() || c.inputs.empty()) return false;
  return std::all_of(c.inputs.begin(), c.inputs.end(), [](const TensorType& t) {
    return t.dtype == DType::BFloat16 &&
           std::all_of(t.shape.begin(), t.shape.end(), [](int64_t d) { return d > 0; });
  });
}

}  // namespace ds::cpu::onednn
