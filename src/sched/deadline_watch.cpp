#include "sched/deadline_watch.h"

namespace ds::sched::detail {

DeadlineWatch::DeadlineWatch() : thread_([this] { loop(); }) {}

DeadlineWatch::~DeadlineWatch() {
  {
    std::lock_guard lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DeadlineWatch::watch(const std::shared_ptr<TaskState>& task) {
  bool earliest;
  {
    std::lock_guard lock(m_);
    earliest = heap_.empty() || *task->deadline < heap_.top().deadline;
    heap_.push({*task->deadline, task});
  }
  if (earliest) cv_.notify_all();
}

void DeadlineWatch::loop() {
  std::unique_lock lock(m_);
  while (!stop_) {
    if (heap_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const TimePoint next = heap_.top().deadline;
    if (Clock::now() < next) {
      cv_.wait_until(lock, next);
      continue;
    }
    std::shared_ptr<TaskState> task = heap_.top().task.lock();
    heap_.pop();
    if (!task) continue;
    lock.unlock();
    TaskStatus was;
    {
      std::lock_guard tl(task->m);
      was = task->status;
    }
    task->reject(TaskStatus::Expired,
                 "task " + std::to_string(task->id) + " (priority " +
                     std::to_string(task->priority) + ") missed its deadline while " +
                     (was == TaskStatus::Running ? "running" : "queued") + " (" +
                     std::to_string(micros_between(task->enqueued, Clock::now())) +
                     " us after submission)");
    lock.lock();
  }
}

}  // namespace ds::sched::detail
