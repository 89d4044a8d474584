// The shared state behind a TaskHandle: a status that moves once from
// Queued/Running to a terminal state, whoever gets there first (the worker, the
// deadline watcher, a cancel, a shutdown).
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>

#include "ds/sched.h"

namespace ds::sched::detail {

int64_t micros_between(TimePoint a, TimePoint b);

struct TaskState : std::enable_shared_from_this<TaskState> {
  uint64_t id = 0;
  int priority = 1;
  std::optional<TimePoint> deadline;
  std::optional<Device> device;
  std::optional<Placement> placement;  // settled once: completed when run, else cancelled
  TaskCost cost;
  TimePoint enqueued = Clock::now();
  TimePoint started{}, finished{};
  Callback on_done;
  // Counts the outcome; runs before waiters wake, so stats are current for them.
  std::function<void(TaskStatus)> on_terminal;
  Work work;  // held by the scheduler until the task runs
  // Called once when the task leaves the Queued state (queue depth counters).
  std::function<void()> on_dequeue;

  mutable std::mutex m;
  mutable std::condition_variable cv;
  TaskStatus status = TaskStatus::Queued;
  Outputs result;
  std::exception_ptr error;

  // Queued -> Running; false when it was resolved (expired, cancelled) meanwhile.
  bool try_start();
  // Moves to a terminal state unless already there; true when this call did.
  // With `queued_only`, only a task that has not started moves.
  bool resolve(TaskStatus to, Outputs outputs = {}, std::exception_ptr err = nullptr,
               bool queued_only = false);
  bool reject(TaskStatus to, const std::string& message, bool queued_only = false);
  bool terminal() const;  // caller holds m
  TaskStatus current() const;
};

std::shared_ptr<TaskState> make_task(int priority, std::optional<TimePoint> deadline,
                                     Callback on_done);

}  // namespace ds::sched::detail
