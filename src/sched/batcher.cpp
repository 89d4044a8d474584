// DynamicBatcher: requests wait in a BatchQueue; when a batch is ready the
// batcher submits a "pull" task to the scheduler at the level of its most
// urgent request. The batch itself is cut when the pull task starts, so under
// load it takes everything that arrived meanwhile (up to the cap).
#include <algorithm>
#include <cstring>
#include <set>
#include <thread>

#include "sched/batch_queue.h"
#include "sched/rate_meter.h"
#include "sched/task_state.h"

namespace ds::sched {

using detail::PendingRequest;
using detail::TaskState;

namespace {

int64_t now_us() {
  return std::chrono::duration_cast<Micros>(Clock::now().time_since_epoch()).count();
}
int64_t to_us(TimePoint t) {
  return std::chrono::duration_cast<Micros>(t.time_since_epoch()).count();
}

std::string shape_key(const Outputs& inputs) {
  std::string k;
  for (const Tensor& t : inputs) {
    k += dtype_name(t.dtype());
    for (int d = 1; d < t.ndim(); ++d) k += "," + std::to_string(t.shape()[d]);
    k += ";";
  }
  return k;
}

// Concatenates input `i` of every request along dim 0.
Tensor concat_rows(const std::vector<PendingRequest>& batch, size_t i, int64_t rows) {
  const Tensor& first = batch.front().inputs[i];
  Shape shape = first.shape();
  shape[0] = rows;
  Tensor out = Tensor::empty(shape, first.dtype());
  auto* dst = static_cast<char*>(out.raw_data());
  for (const auto& r : batch) {
    Tensor src = r.inputs[i].contiguous();
    std::memcpy(dst, src.raw_data(), src.nbytes());
    dst += src.nbytes();
  }
  return out;
}

}  // namespace

BatchFn batch_fn(Executable exe) {
  return [exe = std::move(exe)](const Outputs& inputs) { return exe.run(inputs); };
}

struct DynamicBatcher::Impl : std::enable_shared_from_this<Impl> {
  std::string name;
  BatchFn fn;
  Scheduler& sched;
  mutable std::mutex m;
  std::condition_variable timer_cv;
  BatcherOptions opt;
  std::shared_ptr<Policy> policy;
  detail::BatchQueue queue;
  std::multiset<int> queued_pulls;  // levels of pull tasks not started yet
  int running_pulls = 0;
  int64_t last_finish_us = 0;  // when a batch of this model last finished
  int64_t expired_since_observe = 0;  // misses the policy has not been told about
  std::condition_variable idle_cv;  // signalled when a pull finishes (destructor waits)
  bool stopping = false;
  // Recent arrival rates and utilization (exponential moving averages).
  detail::RateMeter arrival_rate{detail::kShortRateWindowUs};
  detail::RateMeter long_arrival_rate{detail::kLongRateWindowUs};
  double utilization = 0;
  int64_t util_window_start_us = now_us();
  int64_t busy_in_window_us = 0;
  Stats st;
  std::thread timer;

  Impl(std::string n, BatchFn f, Scheduler& s, BatcherOptions o, std::shared_ptr<Policy> p)
      : name(std::move(n)), fn(std::move(f)), sched(s), opt(std::move(o)), policy(std::move(p)),
        queue(s.options().priority_levels) {
    st.queued.assign(s.options().priority_levels, 0);
  }

  PolicyDecision decision_locked(int64_t now) {
    if (!policy) return {opt.max_batch_size, opt.max_queue_delay.count()};
    PolicyState ps;
    ps.queue_depth = queue.depth();
    ps.arrival_rate = arrival_rate.rate(static_cast<double>(now));
    ps.long_arrival_rate = long_arrival_rate.rate(static_cast<double>(now));
    ps.utilization = utilization;
    if (auto t = queue.oldest_arrival_us()) ps.oldest_wait_us = now - *t;
    PolicyDecision d = policy->decide(ps);
    d.max_batch_size = std::max<int64_t>(1, d.max_batch_size);
    return d;
  }

  void prune_locked() {
    queue.prune([](const PendingRequest& r) { return r.task->current() == TaskStatus::Queued; });
  }

  // Submits pull tasks for what is ready. Runs without the lock held, because a
  // rejected pull resolves (and calls back) inside Scheduler::submit.
  void dispatch() {
    std::vector<int> levels;
    {
      std::lock_guard lock(m);
      if (stopping) return;
      prune_locked();
      const int64_t now = now_us();
      const PolicyDecision d = decision_locked(now);
      const PendingRequest* h = queue.head();
      if (!h || !queue.ready(now, d.max_batch_size, d.max_queue_delay_us, opt.preferred_batch_sizes))
        return;
      const int outstanding = running_pulls + static_cast<int>(queued_pulls.size());
      // One more pull than instances when the head outranks every waiting pull,
      // so an urgent request is not stuck behind a low-level pull.
      const bool urgent = !queued_pulls.empty() && h->level < *queued_pulls.begin();
      const bool has_room = outstanding < opt.instance_count &&
                            static_cast<int>(queued_pulls.size()) < static_cast<int>(queue.size());
      if (!has_room && !urgent) return;
      queued_pulls.insert(h->level);
      levels.push_back(h->level);
    }
    auto self = shared_from_this();
    for (int level : levels) {
      TaskOptions to;
      to.priority = level;
      to.device = opt.device;
      to.on_done = [self, level](const TaskHandle& h) {
        if (h.status() == TaskStatus::Rejected || h.status() == TaskStatus::Cancelled) {
          std::lock_guard lock(self->m);
          self->queued_pulls.erase(self->queued_pulls.find(level));
          self->idle_cv.notify_all();
        }
      };
      sched.submit([self, level] { return self->run_pull(level); }, std::move(to));
    }
  }

  Outputs run_pull(int level) {
    std::vector<PendingRequest> batch;
    PolicyDecision d;
    {
      std::lock_guard lock(m);
      queued_pulls.erase(queued_pulls.find(level));
      ++running_pulls;
      prune_locked();
      d = decision_locked(now_us());
      batch = queue.take(d.max_batch_size, opt.preferred_batch_sizes);
    }
    dispatch();  // the rest may be ready for another instance
    // A member that expired or was cancelled since the cut is left out.
    std::vector<PendingRequest> live;
    for (auto& r : batch)
      if (r.task->try_start()) live.push_back(std::move(r));
    if (live.empty()) {
      finish_pull(0, 0);
      return {};
    }
    int64_t rows = 0, oldest = live.front().arrival_us;
    for (const auto& r : live) rows += r.rows, oldest = std::min(oldest, r.arrival_us);
    const int64_t t0 = now_us();
    int64_t held_us;
    {
      // Time an instance sat free while this batch's oldest request waited: the
      // price of the queue delay, which learning policies must see.
      std::lock_guard lock(m);
      held_us = std::max<int64_t>(0, t0 - std::max(last_finish_us, oldest));
    }
    Outputs outs;
    std::exception_ptr err;
    try {
      outs = execute(live, rows);
    } catch (...) {
      err = std::current_exception();
    }
    const int64_t t1 = now_us();
    // Counted before the members wake, so stats are current for them.
    finish_pull(rows, t1 - t0);
    int64_t offset = 0;
    for (auto& r : live) {
      if (err) {
        r.task->resolve(TaskStatus::Failed, {}, err);
        continue;
      }
      Outputs mine;
      for (const Tensor& t : outs) mine.push_back(t.slice(0, offset, offset + r.rows));
      offset += r.rows;
      r.task->resolve(TaskStatus::Done, std::move(mine));
    }
    if (policy) policy_observe(live, rows, t1 - t0, held_us);
    dispatch();
    return {};
  }

  void finish_pull(int64_t rows, int64_t busy_us) {
    std::lock_guard lock(m);
    --running_pulls;
    last_finish_us = now_us();
    busy_in_window_us += busy_us;
    if (rows > 0) {
      ++st.batches;
      st.rows += rows;
      st.compute_seconds += busy_us * 1e-6;
    }
    idle_cv.notify_all();
  }

  // Runs one batch of `rows` rows; the outputs keep the batch as dim 0.
  Outputs execute(const std::vector<PendingRequest>& batch, int64_t rows) {
    Outputs in;
    for (size_t i = 0; i < batch.front().inputs.size(); ++i) in.push_back(concat_rows(batch, i, rows));
    Outputs outs = fn(in);
    for (size_t o = 0; o < outs.size(); ++o)
      DS_CHECK(outs[o].ndim() >= 1 && outs[o].shape()[0] == rows, ShapeError, "model '", name,
               "': output ", o, " has shape ", shape_str(outs[o].shape()),
               ", expected the batch (", rows, ") as dim 0, so the batch cannot be split");
    return outs;
  }

  void policy_observe(const std::vector<PendingRequest>& batch, int64_t rows, int64_t service_us,
                      int64_t held_us) {
    BatchOutcome o;
    o.batch_size = rows;
    o.service_us = static_cast<double>(service_us);
    o.held_us = static_cast<double>(held_us);
    o.requests = static_cast<int64_t>(batch.size());
    for (const auto& r : batch) {
      std::lock_guard tl(r.task->m);
      const bool met = r.task->status == TaskStatus::Done &&
                       (!r.task->deadline || r.task->finished <= *r.task->deadline);
      (met ? o.deadlines_met : o.deadlines_missed)++;
      o.latency_us.push_back(static_cast<double>(
          detail::micros_between(r.task->enqueued, r.task->finished)));
    }
    {
      std::lock_guard lock(m);
      o.deadlines_missed += expired_since_observe;
      expired_since_observe = 0;
    }
    policy->observe(o);
  }

  void count(TaskStatus s, const TaskState& t) {
    std::lock_guard lock(m);
    switch (s) {
      case TaskStatus::Done: ++st.succeeded; break;
      case TaskStatus::Failed: ++st.failed; break;
      case TaskStatus::Rejected: ++st.rejected; break;
      case TaskStatus::Expired: ++st.expired, ++expired_since_observe; break;
      case TaskStatus::Cancelled: ++st.cancelled; break;
      default: break;
    }
    if (t.started != TimePoint{}) st.queue_seconds += detail::micros_between(t.enqueued, t.started) * 1e-6;
  }

  void timer_loop() {
    std::unique_lock lock(m);
    while (!stopping) {
      const int64_t delay = decision_locked(now_us()).max_queue_delay_us;
      auto oldest = queue.oldest_arrival_us();
      if (!oldest || delay <= 0) {
        timer_cv.wait(lock);
        continue;
      }
      const int64_t wake = *oldest + delay;
      if (now_us() < wake) {
        timer_cv.wait_until(lock, TimePoint(Micros(wake)));
        continue;
      }
      lock.unlock();
      dispatch();
      lock.lock();
      // Nothing more to do until a new arrival or a pull finishes.
      if (queue.oldest_arrival_us() == oldest) timer_cv.wait(lock);
    }
  }

  void note_arrival_locked(int64_t now) {
    arrival_rate.arrive(static_cast<double>(now));
    long_arrival_rate.arrive(static_cast<double>(now));
    const int64_t window = now - util_window_start_us;
    if (window >= 100000) {  // utilization over 100 ms windows, smoothed
      utilization = 0.5 * utilization + 0.5 * std::min(1.0, static_cast<double>(busy_in_window_us) /
                                                                (window * opt.instance_count));
      util_window_start_us = now;
      busy_in_window_us = 0;
    }
  }
};

DynamicBatcher::DynamicBatcher(std::string name, BatchFn fn, Scheduler& scheduler,
                               BatcherOptions options, std::shared_ptr<Policy> policy)
    : impl_(std::make_shared<Impl>(std::move(name), std::move(fn), scheduler, std::move(options),
                                   std::move(policy))) {
  DS_CHECK(impl_->opt.max_batch_size >= 1, ValueError, "DynamicBatcher '", impl_->name,
           "': max_batch_size must be >= 1, got ", impl_->opt.max_batch_size);
  DS_CHECK(impl_->opt.instance_count >= 1, ValueError, "DynamicBatcher '", impl_->name,
           "': instance_count must be >= 1, got ", impl_->opt.instance_count);
  impl_->timer = std::thread([impl = impl_.get()] { impl->timer_loop(); });
}

DynamicBatcher::~DynamicBatcher() {
  Impl& b = *impl_;
  std::vector<PendingRequest> dropped;
  {
    std::unique_lock lock(b.m);
    b.stopping = true;
    dropped = b.queue.prune([](const PendingRequest&) { return false; });
  }
  b.timer_cv.notify_all();
  b.timer.join();
  for (auto& r : dropped)
    r.task->reject(TaskStatus::Rejected,
                   "model '" + b.name + "' was unloaded before the request ran", true);
  // Pull tasks hold the Impl alive; wait until none runs or waits, so `fn` (and
  // what it refers to) is not used after the batcher is gone.
  std::unique_lock lock(b.m);
  b.idle_cv.wait(lock, [&] { return b.running_pulls == 0 && b.queued_pulls.empty(); });
}

TaskHandle DynamicBatcher::submit(Outputs inputs, RequestOptions options) {
  Impl& b = *impl_;
  const int levels = b.sched.options().priority_levels;
  DS_CHECK(options.priority >= 1 && options.priority <= levels, ValueError, "model '", b.name,
           "': priority must be 1..", levels, ", got ", options.priority);
  DS_CHECK(!inputs.empty(), ValueError, "model '", b.name, "': a request needs at least one input");
  int64_t rows = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    DS_CHECK(t.defined() && !t.is_symbolic() && t.ndim() >= 1, ValueError, "model '", b.name,
             "': input ", i, " must be a concrete tensor with a batch dimension");
    DS_CHECK(t.shape()[0] >= 1, ShapeError, "model '", b.name, "': input ", i,
             " has an empty batch (shape ", shape_str(t.shape()), ")");
    DS_CHECK(rows < 0 || t.shape()[0] == rows, ShapeError, "model '", b.name, "': input ", i,
             " has batch ", t.shape()[0], ", input 0 has ", rows);
    rows = t.shape()[0];
  }
  auto task = detail::make_task(options.priority, options.deadline, std::move(options.on_done));
  task->on_terminal = [impl = b.weak_from_this(), t = task.get()](TaskStatus s) {
    if (auto self = impl.lock()) self->count(s, *t);
  };
  TaskHandle h(task);
  const int level = options.priority - 1;
  std::string refusal;
  {
    std::lock_guard lock(b.m);
    ++b.st.requests;
    const int64_t now = now_us();
    b.note_arrival_locked(now);
    if (b.stopping) {
      refusal = "model '" + b.name + "' is shutting down";
    } else if (static_cast<size_t>(b.queue.depth()[level]) >= b.opt.max_queue_size) {
      b.prune_locked();
      if (static_cast<size_t>(b.queue.depth()[level]) >= b.opt.max_queue_size)
        refusal = "model '" + b.name + "': the queue of priority " +
                  std::to_string(options.priority) + " is full (" +
                  std::to_string(b.opt.max_queue_size) + " requests)";
    }
    if (refusal.empty() && task->deadline && *task->deadline <= Clock::now())
      refusal = "model '" + b.name + "': the deadline had already passed";
    if (refusal.empty()) {
      PendingRequest r;
      r.level = options.priority;
      r.rows = rows;
      r.shape_key = shape_key(inputs);
      r.arrival_us = now;
      if (task->deadline) r.deadline_us = to_us(*task->deadline);
      r.task = task;
      r.inputs = std::move(inputs);
      b.queue.push(std::move(r));
    }
  }
  if (!refusal.empty()) {
    task->reject(refusal.find("deadline") != std::string::npos ? TaskStatus::Expired
                                                                : TaskStatus::Rejected,
                 refusal);
    return h;
  }
  if (task->deadline) b.sched.watch_deadline(h);
  b.timer_cv.notify_all();
  b.dispatch();
  return h;
}

void DynamicBatcher::set_options(const BatcherOptions& options) {
  DS_CHECK(options.max_batch_size >= 1 && options.instance_count >= 1, ValueError,
           "DynamicBatcher '", impl_->name, "': max_batch_size and instance_count must be >= 1");
  {
    std::lock_guard lock(impl_->m);
    impl_->opt = options;
  }
  impl_->timer_cv.notify_all();
  impl_->dispatch();
}

BatcherOptions DynamicBatcher::options() const {
  std::lock_guard lock(impl_->m);
  return impl_->opt;
}

void DynamicBatcher::set_policy(std::shared_ptr<Policy> policy) {
  {
    std::lock_guard lock(impl_->m);
    impl_->policy = std::move(policy);
  }
  impl_->timer_cv.notify_all();
  impl_->dispatch();
}

DynamicBatcher::Stats DynamicBatcher::stats() const {
  std::lock_guard lock(impl_->m);
  Stats s = impl_->st;
  impl_->prune_locked();
  s.queued = impl_->queue.depth();
  return s;
}

const std::string& DynamicBatcher::name() const { return impl_->name; }

}  // namespace ds::sched
