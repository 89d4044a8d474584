// Strided device-to-device copies (no dtype conversion) and fills: see strided_copy.cpp.
#pragma once

#include "ds/tensor.h"

namespace ds::cuda {

// The device-code unsigned type of `bytes` bytes ("unsigned int" for 4).
const char* word_type(size_t bytes);

// dst[dst_strides . idx] = src[src_strides . idx] for every index of `shape`
// (strides in elements; pointers at the first element) on `device`.
void strided_copy(int device, const void* src, const Shape& shape, const Shape& src_strides,
                  void* dst, const Shape& dst_strides, size_t element_size, const char* what);
// The same for two device tensors (views) of one shape and dtype.
void strided_copy(const Tensor& src, Tensor& dst, const char* what);

// Every element of the contiguous device tensor `out` set to `value` (converted to
// its dtype as the CPU converts).
void fill(Tensor& out, double value, const char* what);

}  // namespace ds::cuda
