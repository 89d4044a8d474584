#include "runtime/memory_plan.h"

#include <algorithm>
#include <numeric>

namespace ds {
namespace {
constexpr int64_t kAlign = 64;
int64_t aligned(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

MemoryPlan plan_memory(const std::vector<BufferRequest>& req) {
  MemoryPlan plan;
  const int n = static_cast<int>(req.size());
  plan.offsets.assign(n, -1);
  // In-place chains: a request aliasing another shares its memory, so the pair
  // is one interval [first of the root, last of the chain's tail].
  std::vector<int> root(n);
  std::iota(root.begin(), root.end(), 0);
  for (int i = 0; i < n; ++i)
    if (req[i].alias_of >= 0) root[i] = root[req[i].alias_of];
  std::vector<int64_t> size(n, 0);
  std::vector<int> first(n, 0), last(n, -1);
  for (int i = 0; i < n; ++i) {
    plan.unplanned_bytes += aligned(req[i].bytes);
    const int r = root[i];
    size[r] = std::max(size[r], aligned(req[i].bytes));
    if (r == i) first[r] = req[i].first_step;
    last[r] = std::max(last[r], req[i].last_step);
  }
  std::vector<int> order;
  for (int i = 0; i < n; ++i)
    if (root[i] == i) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return size[a] > size[b]; });
  std::vector<int> placed;
  for (int r : order) {
    // Collect the occupied ranges of placed buffers whose lifetimes overlap.
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (int p : placed)
      if (!(last[p] < first[r] || last[r] < first[p]))
        busy.emplace_back(plan.offsets[p], plan.offsets[p] + size[p]);
    std::sort(busy.begin(), busy.end());
    int64_t best = -1, best_gap = INT64_MAX, cursor = 0;
    for (const auto& [b, e] : busy) {
      if (b - cursor >= size[r] && b - cursor < best_gap) {
        best = cursor;
        best_gap = b - cursor;
      }
      cursor = std::max(cursor, e);
    }
    if (best < 0) best = cursor;
    plan.offsets[r] = best;
    plan.arena_bytes = std::max(plan.arena_bytes, best + size[r]);
    placed.push_back(r);
  }
  for (int i = 0; i < n; ++i) plan.offsets[i] = plan.offsets[root[i]];
  return plan;
}

}  // namespace ds
