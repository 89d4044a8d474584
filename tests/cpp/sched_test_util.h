// Shared helpers for the scheduler tests.
#pragma once

#include <condition_variable>
#include <mutex>

namespace ds::sched_test {

// A one-shot gate a task blocks on until the test opens it: timing by latches, not sleeps.
class Gate {
 public:
  void open() {
    {
      std::lock_guard l(m_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock l(m_);
    cv_.wait(l, [&] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace ds::sched_test
