// Shapes: vectors of extents; `dyn` marks a symbolic (run-time) extent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ds {

using Shape = std::vector<int64_t>;
inline constexpr int64_t dyn = -1;  // a symbolic extent, e.g. the batch dimension

int64_t numel(const Shape& s);  // dyn extents count as unknown: returns -1
bool is_static(const Shape& s);
std::string shape_str(const Shape& s);  // "[None, 784]"
Shape contiguous_strides(const Shape& s);
// NumPy broadcasting; throws ShapeError naming `what` when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const std::string& what = "broadcast");
// Normalizes a possibly negative axis for a tensor of `rank`; throws ValueError.
int normalize_axis(int64_t axis, int rank, const std::string& what);

}  // namespace ds
