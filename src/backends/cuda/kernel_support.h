// Helpers shared by the NVRTC kernel families: dtype names in device code,
// launch geometry and the checks kernels make on their tensors.
#pragma once

#include <initializer_list>
#include <string>

#include "ds/op.h"

namespace ds::cuda {

// float32/float64/float16/bfloat16: the types the NVRTC kernels compute on.
bool nvrtc_float(DType t);
// The device-code type of `t` ("float", "ds_half", "unsigned char" for bool, ...).
std::string device_type(DType t);
// The CUDA device all tensors of a call are on (checked: one device).
int call_device(const KernelCall& kc);
// Element strides of an operand of shape `in` read at every index of `out`
// (numpy broadcasting: 0 on broadcast and prepended dims).
Shape broadcast_strides(const Shape& in, const Shape& out);
// Blocks for a grid-stride loop over n items with 256-thread blocks.
unsigned grid_for(int64_t n, int device);
// The device's multiprocessor count (cached: device_info() reads every property).
int sm_count(int device);
// Elements per pack for 16-byte vector access: the widest of 16/8/4/2 bytes that
// divides `extent` (elements) and every pointer's alignment; 1 if none does.
int pack_width(int64_t extent, size_t elem, std::initializer_list<const void*> ptrs);

}  // namespace ds::cuda
