#include "codegen/loop_layout.h"

namespace ds::codegen {

LoopLayout loop_layout(const KernelIR& ir) {
  const int rank = static_cast<int>(ir.shape.size());
  // Broadcast strides of every input over the full iteration shape.
  std::vector<std::vector<int64_t>> full(ir.inputs.size(), std::vector<int64_t>(rank, 0));
  for (size_t i = 0; i < ir.inputs.size(); ++i) {
    const Shape& s = ir.inputs[i].shape;
    const int off = rank - static_cast<int>(s.size());
    int64_t step = 1;
    for (int d = static_cast<int>(s.size()) - 1; d >= 0; --d) {
      full[i][d + off] = s[d] == 1 ? 0 : step;
      step *= s[d];
    }
  }
  LoopLayout l;
  l.strides.assign(ir.inputs.size(), {});
  // A reduction's rows are the last axis: it stays a dim of its own.
  const bool rows = ir.reduce.has_value() || ir.has_row_reductions();
  for (int d = 0; d < rank; ++d) {
    const bool own_axis = rows && d == rank - 1;
    if (ir.shape[d] == 1 && !own_axis) continue;
    bool merge = !l.dims.empty() && !own_axis;
    for (size_t i = 0; merge && i < full.size(); ++i)
      merge = l.strides[i].back() == full[i][d] * ir.shape[d];
    if (merge) {
      l.dims.back() *= ir.shape[d];
      for (size_t i = 0; i < full.size(); ++i) l.strides[i].back() = full[i][d];
    } else {
      l.dims.push_back(ir.shape[d]);
      for (size_t i = 0; i < full.size(); ++i) l.strides[i].push_back(full[i][d]);
    }
  }
  if (l.dims.empty()) {  // a single element
    l.dims.push_back(1);
    for (auto& s : l.strides) s.push_back(0);
  }
  return l;
}

void LoopLayout::row_offsets(int64_t row, std::vector<int64_t>& out) const {
  out.assign(strides.size(), 0);
  for (int d = static_cast<int>(dims.size()) - 2; d >= 0 && row > 0; --d) {
    const int64_t idx = row % dims[d];
    row /= dims[d];
    for (size_t i = 0; i < strides.size(); ++i) out[i] += idx * strides[i][d];
  }
}

}  // namespace ds::codegen
