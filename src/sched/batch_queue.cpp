#include "sched/batch_queue.h"

#include <algorithm>

namespace ds::sched::detail {

void BatchQueue::push(PendingRequest r) {
  r.seq = seq_++;
  q_[r.level - 1].push_back(std::move(r));
}

std::vector<PendingRequest> BatchQueue::prune(const Alive& alive) {
  std::vector<PendingRequest> gone;
  for (auto& q : q_) {
    std::deque<PendingRequest> keep;
    for (auto& r : q) {
      if (alive(r)) {
        keep.push_back(std::move(r));
      } else {
        gone.push_back(std::move(r));
      }
    }
    q.swap(keep);
  }
  return gone;
}

std::vector<int64_t> BatchQueue::depth() const {
  std::vector<int64_t> d;
  for (const auto& q : q_) d.push_back(static_cast<int64_t>(q.size()));
  return d;
}

size_t BatchQueue::size() const {
  size_t n = 0;
  for (const auto& q : q_) n += q.size();
  return n;
}

const PendingRequest* BatchQueue::head() const {
  for (const auto& q : q_)
    if (!q.empty()) return &q.front();
  return nullptr;
}

std::optional<int64_t> BatchQueue::oldest_arrival_us() const {
  std::optional<int64_t> t;
  for (const auto& q : q_)
    if (!q.empty() && (!t || q.front().arrival_us < *t)) t = q.front().arrival_us;
  return t;
}

int64_t BatchQueue::compatible_rows(const std::string& key, int64_t cap) const {
  int64_t rows = 0;
  for (const auto& q : q_)
    for (const auto& r : q)
      if (r.shape_key == key && rows + r.rows <= cap) rows += r.rows;
  return rows;
}

bool BatchQueue::ready(int64_t now_us, int64_t cap, int64_t delay_us,
                       const std::vector<int64_t>& preferred) const {
  const PendingRequest* h = head();
  if (!h) return false;
  if (now_us - *oldest_arrival_us() >= delay_us) return true;
  const int64_t rows = compatible_rows(h->shape_key, std::max<int64_t>(cap, h->rows));
  if (rows >= cap) return true;
  return std::any_of(preferred.begin(), preferred.end(),
                     [&](int64_t p) { return p <= cap && rows >= p && p > 1; });
}

std::vector<PendingRequest> BatchQueue::take(int64_t cap, const std::vector<int64_t>& preferred) {
  const PendingRequest* h = head();
  if (!h) return {};
  const std::string key = h->shape_key;
  // The head always goes, even when it alone exceeds the cap (it cannot be split).
  struct Pick {
    int level;
    size_t index;
    int64_t rows;
  };
  std::vector<Pick> picks;
  int64_t rows = 0;
  for (int l = 0; l < levels_; ++l)
    for (size_t i = 0; i < q_[l].size(); ++i) {
      const auto& r = q_[l][i];
      if (r.shape_key != key) continue;
      if (!picks.empty() && rows + r.rows > cap) continue;
      picks.push_back({l, i, r.rows});
      rows += r.rows;
    }
  int64_t target = 0;
  for (int64_t p : preferred)
    if (p <= rows && p > target) target = p;
  while (target > 0 && rows > target && picks.size() > 1) {
    rows -= picks.back().rows;
    picks.pop_back();
  }
  std::vector<PendingRequest> batch;
  std::vector<std::vector<bool>> taken(levels_);
  for (int l = 0; l < levels_; ++l) taken[l].assign(q_[l].size(), false);
  for (const Pick& p : picks) {
    batch.push_back(std::move(q_[p.level][p.index]));
    taken[p.level][p.index] = true;
  }
  for (int l = 0; l < levels_; ++l) {
    std::deque<PendingRequest> keep;
    for (size_t i = 0; i < q_[l].size(); ++i)
      if (!taken[l][i]) keep.push_back(std::move(q_[l][i]));
    q_[l].swap(keep);
  }
  return batch;
}

}  // namespace ds::sched::detail
