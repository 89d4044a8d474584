// Walks the element offsets of a strided tensor in row-major logical order.
#pragma once

#include <cstdint>
#include <vector>

#include "ds/shape.h"

namespace ds {

// Calls f(i, offset) for i in [begin, end), with offset the element offset of the
// i-th logical element under `strides`.
template <typename F>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t begin, int64_t end, F&& f) {
  const int nd = static_cast<int>(shape.size());
  if (begin >= end) return;
  std::vector<int64_t> idx(nd);
  int64_t rem = begin, off = 0;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = shape[d] ? rem % shape[d] : 0;
    rem = shape[d] ? rem / shape[d] : 0;
    off += idx[d] * strides[d];
  }
  const int64_t inner = nd ? shape[nd - 1] : 1;
  const int64_t inner_stride = nd ? strides[nd - 1] : 0;
  int64_t i = begin;
  while (i < end) {
    // Run along the innermost axis.
    int64_t run = nd ? std::min(inner - idx[nd - 1], end - i) : 1;
    for (int64_t k = 0; k < run; ++k) f(i + k, off + k * inner_stride);
    i += run;
    if (nd == 0) break;
    off += run * inner_stride;
    idx[nd - 1] += run;
    for (int d = nd - 1; d > 0 && idx[d] == shape[d]; --d) {
      off -= idx[d] * strides[d];
      idx[d] = 0;
      ++idx[d - 1];
      off += strides[d - 1];
    }
  }
}

}  // namespace ds
