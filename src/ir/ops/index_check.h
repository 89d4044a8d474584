// Index validation and axis geometry shared by the indexing ops' reference
// kernels and their fast CPU kernels, so both fail with the same message.
#pragma once

#include <cstdint>
#include <string>

#include "ds/op.h"

namespace ds::ops {

// A tensor viewed as [outer, extent, inner] around one axis.
struct AxisSplit {
  int64_t outer = 1, extent = 1, inner = 1;
};
inline AxisSplit split_at(const Shape& s, int axis) {
  AxisSplit a;
  for (int d = 0; d < static_cast<int>(s.size()); ++d) {
    if (d < axis) a.outer *= s[d];
    if (d == axis) a.extent = s[d];
    if (d > axis) a.inner *= s[d];
  }
  return a;
}

// Gather-style ops take NumPy's indices in [-extent, extent); embedding and
// one_hot take PyTorch's [0, extent).
enum class IndexRange { AllowNegative, NonNegative };

[[noreturn]] inline void throw_bad_index(const OpContext& ctx, int64_t index, int64_t position,
                                         int axis, int64_t extent, IndexRange range) {
  throw ValueError(
      ctx.where() + "index " + std::to_string(index) + " (at position " + std::to_string(position) +
      " of the indices) is out of range for axis " + std::to_string(axis) + " with extent " +
      std::to_string(extent) +
      (range == IndexRange::AllowNegative
           ? "; expected -" + std::to_string(extent) + " <= index < " + std::to_string(extent)
           : "; expected 0 <= index < " + std::to_string(extent)));
}

// Returns the index in [0, extent), or throws naming the op, index and extent.
inline int64_t checked_index(int64_t index, int64_t extent, IndexRange range, const OpContext& ctx,
                             int64_t position, int axis) {
  const int64_t low = range == IndexRange::AllowNegative ? -extent : 0;
  if (index < low || index >= extent) throw_bad_index(ctx, index, position, axis, extent, range);
  return index < 0 ? index + extent : index;
}

}  // namespace ds::ops
