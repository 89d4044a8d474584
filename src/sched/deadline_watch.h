// One thread that expires tasks the moment their deadline passes, wherever they
// are (a scheduler queue, a batcher queue, or running), so no task is answered
// late without a word.
#pragma once

#include <condition_variable>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "sched/task_state.h"

namespace ds::sched::detail {

class DeadlineWatch {
 public:
  DeadlineWatch();
  ~DeadlineWatch();
  void watch(const std::shared_ptr<TaskState>& task);  // task->deadline must be set

 private:
  struct Entry {
    TimePoint deadline;
    std::weak_ptr<TaskState> task;
    bool operator>(const Entry& o) const { return deadline > o.deadline; }
  };
  void loop();

  std::mutex m_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ds::sched::detail
