// TaskHandle and its shared state.
#include <atomic>

#include "sched/task_state.h"

namespace ds::sched {

const char* status_name(TaskStatus s) {
  switch (s) {
    case TaskStatus::Queued: return "queued";
    case TaskStatus::Running: return "running";
    case TaskStatus::Done: return "done";
    case TaskStatus::Failed: return "failed";
    case TaskStatus::Rejected: return "rejected";
    case TaskStatus::Expired: return "expired";
    case TaskStatus::Cancelled: return "cancelled";
  }
  return "unknown";
}

namespace detail {

int64_t micros_between(TimePoint a, TimePoint b) {
  return std::chrono::duration_cast<Micros>(b - a).count();
}

std::shared_ptr<TaskState> make_task(int priority, std::optional<TimePoint> deadline,
                                     Callback on_done) {
  static std::atomic<uint64_t> next_id{1};
  auto s = std::make_shared<TaskState>();
  s->id = next_id++;
  s->priority = priority;
  s->deadline = deadline;
  s->on_done = std::move(on_done);
  return s;
}

bool TaskState::terminal() const {
  return status != TaskStatus::Queued && status != TaskStatus::Running;
}

TaskStatus TaskState::current() const {
  std::lock_guard lock(m);
  return status;
}

bool TaskState::try_start() {
  std::function<void()> dequeued;
  {
    std::lock_guard lock(m);
    if (status != TaskStatus::Queued) return false;
    status = TaskStatus::Running;
    started = Clock::now();
    dequeued = std::move(on_dequeue);
  }
  if (dequeued) dequeued();
  return true;
}

bool TaskState::resolve(TaskStatus to, Outputs outputs, std::exception_ptr err,
                        bool queued_only) {
  std::function<void()> dequeued;
  {
    std::lock_guard lock(m);
    if (terminal() || (queued_only && status != TaskStatus::Queued)) return false;
    if (status == TaskStatus::Queued) dequeued = std::move(on_dequeue);
    status = to;
    finished = Clock::now();
    result = std::move(outputs);
    error = std::move(err);
  }
  if (dequeued) dequeued();
  if (on_terminal) on_terminal(to);
  cv.notify_all();
  // The callback runs outside the lock: it may read the handle or submit work.
  if (on_done) on_done(TaskHandle(shared_from_this()));
  return true;
}

bool TaskState::reject(TaskStatus to, const std::string& message, bool queued_only) {
  return resolve(to, {}, std::make_exception_ptr(RejectedError(to, message)), queued_only);
}

}  // namespace detail

uint64_t TaskHandle::id() const { return s_->id; }
int TaskHandle::priority() const { return s_->priority; }

TaskStatus TaskHandle::status() const {
  std::lock_guard lock(s_->m);
  return s_->status;
}

bool TaskHandle::done() const {
  std::lock_guard lock(s_->m);
  return s_->terminal();
}

void TaskHandle::wait() const {
  std::unique_lock lock(s_->m);
  s_->cv.wait(lock, [&] { return s_->terminal(); });
}

bool TaskHandle::wait_until(TimePoint t) const {
  std::unique_lock lock(s_->m);
  return s_->cv.wait_until(lock, t, [&] { return s_->terminal(); });
}

Outputs TaskHandle::get() const {
  wait();
  std::lock_guard lock(s_->m);
  if (s_->error) std::rethrow_exception(s_->error);
  return s_->result;
}

bool TaskHandle::cancel() const {
  return s_->reject(TaskStatus::Cancelled, "task " + std::to_string(s_->id) + " was cancelled",
                    /*queued_only=*/true);
}

int64_t TaskHandle::queue_us() const {
  std::lock_guard lock(s_->m);
  if (s_->started != TimePoint{}) return detail::micros_between(s_->enqueued, s_->started);
  if (s_->finished != TimePoint{}) return detail::micros_between(s_->enqueued, s_->finished);
  return 0;
}

int64_t TaskHandle::compute_us() const {
  std::lock_guard lock(s_->m);
  if (s_->started == TimePoint{} || s_->finished == TimePoint{}) return 0;
  return detail::micros_between(s_->started, s_->finished);
}

}  // namespace ds::sched
