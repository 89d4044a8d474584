// The priority scheduler: per-level FIFO queues (one set shared by all workers,
// one set per device for pinned tasks), aging, bounded levels that reject at
// once, deadlines enforced by a watcher thread, idle-time auxiliary tasks.
#include <algorithm>
#include <deque>
#include <thread>

#if defined(__linux__)
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "sched/deadline_watch.h"

namespace ds::sched {

using detail::TaskState;

namespace {

struct AuxTask {
  AuxWork work;
  std::shared_ptr<TaskState> state;
};

// One worker thread and its auxiliary companion. `idle` is the per-worker
// "no real work" flag: submit clears it before waking the worker, so the
// auxiliary slice in progress sees should_yield() at once, without a lock.
struct WorkerSlot {
  int device = 0;
  std::atomic<bool> idle{false};
};

// Auxiliary work runs on its own thread at the lowest nice level: a slice in
// progress never delays real work (the worker does not wait for it, and the
// kernel gives the CPU to the worker first), and the worker thread itself
// sleeps while idle, so it is woken promptly instead of competing for time
// slices as a busy thread would.
// (Nice 19 rather than SCHED_IDLE: on a machine that is never idle, an
// idle-class thread may not run for minutes, and a yielded task would starve.)
void lower_to_idle_priority() {
#if defined(__linux__)
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
#endif
}

}  // namespace

struct Scheduler::Impl {
  SchedulerOptions opt;
  TimePoint created = Clock::now();
  mutable std::mutex m;
  std::condition_variable cv;
  std::condition_variable aux_cv;  // auxiliary threads: their worker went idle
  // queues[0]: unpinned; queues[1 + d]: pinned to opt.devices[d]. Each: one deque per level.
  std::vector<std::vector<std::deque<std::shared_ptr<TaskState>>>> queues;
  std::vector<std::atomic<int64_t>> queued;  // live (still Queued) tasks per level
  std::deque<AuxTask> aux;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> running{0}, completed{0}, failed{0}, rejected{0}, expired{0},
      cancelled{0}, aux_completed{0}, aux_yields{0};
  std::atomic<int64_t> busy_us{0}, aux_us{0};
  std::vector<std::unique_ptr<WorkerSlot>> slots;
  std::vector<std::thread> workers, aux_workers;
  detail::DeadlineWatch deadlines;

  explicit Impl(SchedulerOptions o) : opt(std::move(o)), queued(opt.priority_levels) {}

  int64_t total_queued() const {
    int64_t n = 0;
    for (const auto& q : queued) n += q.load();
    return n;
  }

  void count_terminal(TaskStatus s) {
    switch (s) {
      case TaskStatus::Done: ++completed; break;
      case TaskStatus::Failed: ++failed; break;
      case TaskStatus::Rejected: ++rejected; break;
      case TaskStatus::Expired: ++expired; break;
      case TaskStatus::Cancelled: ++cancelled; break;
      default: break;
    }
  }

  std::shared_ptr<TaskState> make(int priority, std::optional<TimePoint> deadline, Callback cb) {
    auto t = detail::make_task(priority, deadline, std::move(cb));
    t->on_terminal = [this, raw = t.get()](TaskStatus st) {
      count_terminal(st);
      // A task that started is settled by run_task with its measured time.
      if (raw->placement && raw->started == TimePoint{}) opt.placer->cancel(*raw->placement);
    };
    return t;
  }

  // The most urgent live task for a worker of device `d`: lowest effective level
  // (level minus aging steps waited), then oldest. Drops resolved entries.
  std::shared_ptr<TaskState> pop_best(int d, TimePoint now) {
    std::deque<std::shared_ptr<TaskState>>* best_q = nullptr;
    double best_rank = 0;
    TimePoint best_time{};
    for (int qi : {0, 1 + d}) {
      for (auto& q : queues[qi]) {
        while (!q.empty() && q.front()->current() != TaskStatus::Queued) q.pop_front();
        if (q.empty()) continue;
        const auto& t = q.front();
        double rank = t->priority;
        if (opt.aging_step.count() > 0)
          rank -= static_cast<double>(detail::micros_between(t->enqueued, now) /
                                      opt.aging_step.count());
        if (!best_q || rank < best_rank || (rank == best_rank && t->enqueued < best_time)) {
          best_q = &q;
          best_rank = rank;
          best_time = t->enqueued;
        }
      }
    }
    if (!best_q) return nullptr;
    auto t = std::move(best_q->front());
    best_q->pop_front();
    return t;
  }

  void run_task(const std::shared_ptr<TaskState>& t, const Work& work) {
    ++running;
    const TimePoint t0 = Clock::now();
    Outputs out;
    std::exception_ptr err;
    try {
      out = work();
    } catch (...) {
      err = std::current_exception();
    }
    const auto elapsed = Clock::now() - t0;
    // Before the task resolves, so whoever waits on it sees the placer settled.
    if (t->placement)
      opt.placer->complete(*t->placement, t->cost, std::chrono::duration<double>(elapsed).count());
    busy_us += std::chrono::duration_cast<Micros>(elapsed).count();
    if (err)
      t->resolve(TaskStatus::Failed, {}, err);
    else
      t->resolve(TaskStatus::Done, std::move(out));
    --running;
  }

  void run_aux(AuxTask a, const WorkerSlot& slot) {
    const TimePoint t0 = Clock::now();
    bool finished = false;
    std::exception_ptr err;
    try {
      finished = a.work(YieldToken([this, &slot] { return stopping || !slot.idle; }));
    } catch (...) {
      err = std::current_exception();
    }
    aux_us += detail::micros_between(t0, Clock::now());
    if (err) {
      a.state->resolve(TaskStatus::Failed, {}, err);
    } else if (finished) {
      ++aux_completed;
      a.state->resolve(TaskStatus::Done);
    } else {
      ++aux_yields;
      std::unique_lock lock(m);
      if (!stopping) {
        aux.push_front(std::move(a));
        aux_cv.notify_all();  // another worker may be idle now
        return;
      }
      lock.unlock();
      a.state->reject(TaskStatus::Cancelled, "auxiliary task stopped: the scheduler shut down");
    }
  }

  void worker_loop(WorkerSlot& slot) {
    std::unique_lock lock(m);
    for (;;) {
      if (auto t = pop_best(slot.device, Clock::now())) {
        slot.idle = false;
        lock.unlock();
        if (t->try_start()) run_task(t, t->work);
        t->work = nullptr;
        lock.lock();
        continue;
      }
      if (stopping) return;
      if (!slot.idle) {
        slot.idle = true;
        aux_cv.notify_all();
      }
      cv.wait(lock);
    }
  }

  // Runs auxiliary tasks while `slot`'s worker is idle; a task that yields
  // goes back to the front of the queue and resumes when a worker idles again.
  void aux_loop(const WorkerSlot& slot) {
    lower_to_idle_priority();
    std::unique_lock lock(m);
    for (;;) {
      aux_cv.wait(lock, [&] { return stopping || (slot.idle && !aux.empty()); });
      if (stopping) return;
      AuxTask a = std::move(aux.front());
      aux.pop_front();
      lock.unlock();
      // A yielded task resumes in Running; a new one starts unless cancelled.
      if (a.state->current() == TaskStatus::Running || a.state->try_start())
        run_aux(std::move(a), slot);
      lock.lock();
    }
  }
};

Scheduler::Scheduler(SchedulerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& s = *impl_;
  DS_CHECK(s.opt.priority_levels >= 1, ValueError,
           "Scheduler: priority_levels must be >= 1, got ", s.opt.priority_levels);
  DS_CHECK(!s.opt.devices.empty(), ValueError, "Scheduler: no devices given");
  s.queues.resize(1 + s.opt.devices.size(),
                  std::vector<std::deque<std::shared_ptr<TaskState>>>(s.opt.priority_levels));
  for (int d = 0; d < static_cast<int>(s.opt.devices.size()); ++d) {
    DS_CHECK(s.opt.devices[d].workers >= 1, ValueError, "Scheduler: device ",
             s.opt.devices[d].device.str(), " needs at least one worker, got ",
             s.opt.devices[d].workers);
    for (int w = 0; w < s.opt.devices[d].workers; ++w) {
      s.slots.push_back(std::make_unique<WorkerSlot>());
      s.slots.back()->device = d;
    }
  }
  if (s.opt.placer)
    for (const auto& pd : s.opt.placer->devices())
      DS_CHECK(std::any_of(s.opt.devices.begin(), s.opt.devices.end(),
                           [&](const DeviceWorkers& w) { return w.device == pd.device; }),
               ValueError, "Scheduler: the placer may choose ", pd.device.str(),
               " but the scheduler has no workers for it");
  for (auto& slot : s.slots) {
    s.workers.emplace_back([&s, p = slot.get()] { s.worker_loop(*p); });
    s.aux_workers.emplace_back([&s, p = slot.get()] { s.aux_loop(*p); });
  }
}

Scheduler::~Scheduler() { shutdown(); }

TaskHandle Scheduler::submit(Work work, TaskOptions options) {
  Impl& s = *impl_;
  DS_CHECK(options.priority >= 1 && options.priority <= s.opt.priority_levels, ValueError,
           "Scheduler::submit: priority must be 1..", s.opt.priority_levels, ", got ",
           options.priority);
  auto t = s.make(options.priority, options.deadline, std::move(options.on_done));
  if (options.cost && s.opt.placer) {
    t->cost = *options.cost;
    t->placement = s.opt.placer->place(t->cost, options.device);
    options.device = t->placement->device;
  }
  t->device = options.device;
  t->work = std::move(work);
  int qi = 0;
  if (options.device) {
    auto it = std::find_if(s.opt.devices.begin(), s.opt.devices.end(),
                           [&](const DeviceWorkers& w) { return w.device == *options.device; });
    DS_CHECK(it != s.opt.devices.end(), NotFoundError, "Scheduler::submit: no workers for device ",
             options.device->str());
    qi = 1 + static_cast<int>(it - s.opt.devices.begin());
  }
  TaskHandle h(t);
  const int level = options.priority - 1;
  std::string refusal;  // rejected outside the lock: the callback may submit again
  TaskStatus refused_as = TaskStatus::Rejected;
  {
    std::lock_guard lock(s.m);
    if (s.stopping) {
      refusal = "Scheduler::submit: the scheduler is shutting down";
    } else if (static_cast<size_t>(s.queued[level].load()) >= s.opt.queue_capacity) {
      refusal = "Scheduler::submit: the queue of priority " + std::to_string(options.priority) +
                " is full (" + std::to_string(s.opt.queue_capacity) + " tasks)";
    } else if (t->deadline && *t->deadline <= Clock::now()) {
      refusal = "Scheduler::submit: the deadline had already passed";
      refused_as = TaskStatus::Expired;
    } else {
      ++s.queued[level];
      t->on_dequeue = [&s, level] { --s.queued[level]; };
      s.queues[qi][level].push_back(t);
      for (auto& slot : s.slots)
        if (qi == 0 || slot->device == qi - 1) slot->idle = false;
    }
  }
  if (!refusal.empty()) {
    t->reject(refused_as, refusal);
    return h;
  }
  if (t->deadline) s.deadlines.watch(t);
  // Every worker may be waiting on a pinned queue; wake them all.
  s.cv.notify_all();
  return h;
}

TaskHandle Scheduler::submit_auxiliary(AuxWork work, Callback on_done) {
  Impl& s = *impl_;
  auto t = s.make(s.opt.priority_levels + 1, std::nullopt, std::move(on_done));
  TaskHandle h(t);
  bool refused = false;
  {
    std::lock_guard lock(s.m);
    refused = s.stopping || s.aux.size() >= s.opt.auxiliary_capacity;
    if (!refused) s.aux.push_back({std::move(work), t});
  }
  if (refused) {
    t->reject(TaskStatus::Rejected, "Scheduler::submit_auxiliary: shutting down or queue full (" +
                                        std::to_string(s.opt.auxiliary_capacity) + " tasks)");
    return h;
  }
  s.aux_cv.notify_all();  // only the threads whose worker is idle take it
  return h;
}

void Scheduler::watch_deadline(const TaskHandle& task) {
  if (task.state()->deadline) impl_->deadlines.watch(task.state());
}

void Scheduler::shutdown() {
  Impl& s = *impl_;
  std::vector<std::shared_ptr<TaskState>> dropped;
  {
    std::lock_guard lock(s.m);
    if (s.stopping) return;
    s.stopping = true;
    for (auto& per_level : s.queues)
      for (auto& q : per_level) {
        for (auto& t : q) dropped.push_back(t);
        q.clear();
      }
    for (auto& a : s.aux) dropped.push_back(a.state);
    s.aux.clear();
  }
  for (auto& t : dropped)
    t->reject(TaskStatus::Rejected, "task " + std::to_string(t->id) +
                                        " rejected: the scheduler shut down before it ran",
              /*queued_only=*/true);
  s.cv.notify_all();
  s.aux_cv.notify_all();
  for (auto& w : s.workers) w.join();
  for (auto& w : s.aux_workers) w.join();
}

SchedulerStats Scheduler::stats() const {
  const Impl& s = *impl_;
  SchedulerStats st;
  for (const auto& q : s.queued) st.queued.push_back(q.load());
  st.running = s.running;
  st.completed = s.completed;
  st.failed = s.failed;
  st.rejected = s.rejected;
  st.expired = s.expired;
  st.cancelled = s.cancelled;
  st.auxiliary_completed = s.aux_completed;
  st.auxiliary_yields = s.aux_yields;
  st.busy_seconds = s.busy_us.load() * 1e-6;
  st.auxiliary_seconds = s.aux_us.load() * 1e-6;
  st.uptime_seconds = detail::micros_between(s.created, Clock::now()) * 1e-6;
  st.workers = static_cast<int>(s.workers.size());
  return st;
}

const SchedulerOptions& Scheduler::options() const { return impl_->opt; }

}  // namespace ds::sched
