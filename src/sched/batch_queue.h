// The pending requests of one model and the rule that cuts them into batches.
// Clock-free (times in microseconds), so the live batcher and the discrete-event
// simulator share it.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ds/sched.h"

namespace ds::sched::detail {

struct TaskState;

struct PendingRequest {
  int level = 1;
  int64_t rows = 1;
  std::string shape_key;  // dtype and non-batch extents of every input
  int64_t arrival_us = 0;
  std::optional<int64_t> deadline_us;
  std::shared_ptr<TaskState> task;  // live batcher only
  Outputs inputs;                   // live batcher only
  uint64_t seq = 0;
};

class BatchQueue {
 public:
  using Alive = std::function<bool(const PendingRequest&)>;
  explicit BatchQueue(int levels) : levels_(levels) {}

  void push(PendingRequest r);
  // Drops requests that are no longer waiting (expired, cancelled); returns them.
  std::vector<PendingRequest> prune(const Alive& alive);
  std::vector<int64_t> depth() const;  // requests per level (index 0 = level 1)
  size_t size() const;
  bool empty() const { return size() == 0; }
  // The most urgent request: lowest level, then oldest.
  const PendingRequest* head() const;
  std::optional<int64_t> oldest_arrival_us() const;
  // Whether to cut a batch now: the head's compatible rows fill `cap` or reach a
  // preferred size, or the oldest request has waited `delay_us`.
  bool ready(int64_t now_us, int64_t cap, int64_t delay_us,
             const std::vector<int64_t>& preferred) const;
  // Removes and returns the next batch: the head plus requests of the same shape
  // key in (level, arrival) order while the rows fit `cap`, cut back to the
  // largest preferred size when one fits.
  std::vector<PendingRequest> take(int64_t cap, const std::vector<int64_t>& preferred);

 private:
  int64_t compatible_rows(const std::string& key, int64_t cap) const;
  int levels_;
  std::vector<std::deque<PendingRequest>> q_{static_cast<size_t>(levels_)};
  uint64_t seq_ = 0;
};

}  // namespace ds::sched::detail
