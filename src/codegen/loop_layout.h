// The loop nest of a region: its iteration shape with unit axes dropped and
// neighbouring axes merged wherever every input walks them alike, so the inner
// loop is as long as possible. Each input's inner step is 1 or 0 (broadcast).
// With a reduction (trailing or row) the last axis is kept apart: the inner loop
// is one row.
#pragma once

#include <vector>

#include "codegen/kernel_ir.h"

namespace ds::codegen {

struct LoopLayout {
  Shape dims;                                 // collapsed extents, outermost first; at least one
  std::vector<std::vector<int64_t>> strides;  // per input, elements per step along each dim
  int64_t inner() const { return dims.back(); }
  bool inner_contiguous(size_t input) const { return strides[input].back() != 0; }
  // Element offset of each input at flat index `row * inner()` (outer dims only).
  void row_offsets(int64_t row, std::vector<int64_t>& out) const;
};

LoopLayout loop_layout(const KernelIR& ir);

}  // namespace ds::codegen
