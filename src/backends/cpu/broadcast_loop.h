// NumPy broadcasting for CPU kernels over contiguous operands: the output shape
// is collapsed (unit axes dropped, mergeable neighbours fused) and walked in runs
// along its innermost axis, where each operand advances by 1 (same shape) or 0
// (broadcast). Typical cases collapse to one run per chunk: same shape, scalar
// operand; a row or column broadcast becomes one run per row.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "ds/shape.h"

namespace ds::cpu {

template <int N>
struct BroadcastPlan {
  Shape shape;                   // collapsed output shape, rank >= 1
  std::array<Shape, N> strides;  // per operand, in elements; 0 on broadcast axes
};

template <int N>
BroadcastPlan<N> plan_broadcast(const Shape& out, const std::array<const Shape*, N>& in) {
  const int nd = static_cast<int>(out.size());
  BroadcastPlan<N> p;
  std::array<Shape, N> full;
  for (int k = 0; k < N; ++k) {
    const Shape& s = *in[k];
    const int off = nd - static_cast<int>(s.size());
    full[k].assign(nd, 0);
    int64_t stride = 1;
    for (int d = nd - 1; d >= off; --d) {
      full[k][d] = s[d - off] == 1 ? 0 : stride;
      stride *= s[d - off];
    }
  }
  for (int d = 0; d < nd; ++d) {
    if (out[d] == 1) continue;
    bool merge = !p.shape.empty();
    for (int k = 0; merge && k < N; ++k) merge = p.strides[k].back() == full[k][d] * out[d];
    if (merge) {
      p.shape.back() *= out[d];
      for (int k = 0; k < N; ++k) p.strides[k].back() = full[k][d];
    } else {
      p.shape.push_back(out[d]);
      for (int k = 0; k < N; ++k) p.strides[k].push_back(full[k][d]);
    }
  }
  if (p.shape.empty()) {
    p.shape.push_back(1);
    for (int k = 0; k < N; ++k) p.strides[k].push_back(0);
  }
  return p;
}

// Calls run(offsets, out_begin, count) for the runs covering output elements
// [begin, end); offsets[k] is operand k's element offset at out_begin, and along
// the run operand k advances by plan.strides[k].back() (0 or 1).
template <int N, typename Run>
void for_each_run(const BroadcastPlan<N>& p, int64_t begin, int64_t end, Run&& run) {
  const int nd = static_cast<int>(p.shape.size());
  std::vector<int64_t> idx(nd);
  std::array<int64_t, N> off{};
  int64_t rem = begin;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = rem % p.shape[d];
    rem /= p.shape[d];
    for (int k = 0; k < N; ++k) off[k] += idx[d] * p.strides[k][d];
  }
  const int64_t inner = p.shape[nd - 1];
  for (int64_t i = begin; i < end;) {
    const int64_t n = std::min(inner - idx[nd - 1], end - i);
    run(off, i, n);
    i += n;
    idx[nd - 1] += n;
    for (int k = 0; k < N; ++k) off[k] += n * p.strides[k][nd - 1];
    for (int d = nd - 1; d > 0 && idx[d] == p.shape[d]; --d) {
      for (int k = 0; k < N; ++k) off[k] += p.strides[k][d - 1] - idx[d] * p.strides[k][d];
      idx[d] = 0;
      ++idx[d - 1];
    }
  }
}

}  // namespace ds::cpu
