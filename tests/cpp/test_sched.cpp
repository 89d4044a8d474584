// Scheduler: priorities, FIFO, aging, bounded queues, deadlines, cancellation,
// callbacks, auxiliary tasks. Timing is made deterministic with gates: a worker
// is held inside a task until the test opens the gate.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <mutex>
#include <thread>

#include "ds/sched.h"
#include "sched_test_util.h"

using namespace ds::sched;

namespace {

using ds::sched_test::Gate;

// Occupies the scheduler's single worker until `gate` opens.
TaskHandle block_worker(Scheduler& s, Gate& gate, int priority = 1) {
  auto started = std::make_shared<std::latch>(1);
  auto h = s.submit([&gate, started] {
    started->count_down();
    gate.wait();
    return Outputs{};
  }, {.priority = priority});
  started->wait();
  return h;
}

struct Recorder {
  std::mutex m;
  std::vector<int> order;
  Work task(int tag) {
    return [this, tag] {
      std::lock_guard l(m);
      order.push_back(tag);
      return Outputs{};
    };
  }
};

SchedulerOptions one_worker(int levels = 3, Micros aging = Micros{0}) {
  SchedulerOptions o;
  o.priority_levels = levels;
  o.aging_step = aging;
  return o;
}

}  // namespace

TEST(Sched, StrictPriorityThenFifoWithinLevel) {
  Scheduler s(one_worker());
  Gate gate;
  auto blocker = block_worker(s, gate);
  Recorder rec;
  std::vector<TaskHandle> hs;
  const std::vector<std::pair<int, int>> submitted = {{30, 3}, {20, 2}, {10, 1}, {11, 1}, {31, 3}, {21, 2}};
  for (auto [tag, level] : submitted) hs.push_back(s.submit(rec.task(tag), {.priority = level}));
  EXPECT_EQ(s.stats().queued, (std::vector<int64_t>{2, 2, 2}));
  gate.open();
  for (auto& h : hs) h.wait();
  EXPECT_EQ(rec.order, (std::vector<int>{10, 11, 20, 21, 30, 31}));
  EXPECT_EQ(s.stats().completed, 7);
}

TEST(Sched, AgingPromotesALongWaitingLowLevelTask) {
  Scheduler s(one_worker(3, Micros{1000}));
  Gate gate;
  block_worker(s, gate);
  Recorder rec;
  auto low = s.submit(rec.task(3), {.priority = 3});
  // The level-3 task has waited >= 3 aging steps more than anything submitted
  // from now on, so it ranks at least one level above a new level-1 task.
  const auto aged = Clock::now() + Micros{3000};
  while (Clock::now() < aged) std::this_thread::yield();
  auto high = s.submit(rec.task(1), {.priority = 1});
  gate.open();
  low.wait();
  high.wait();
  EXPECT_EQ(rec.order, (std::vector<int>{3, 1}));
}

TEST(Sched, WithoutAgingHighLevelAlwaysFirst) {
  Scheduler s(one_worker(3, Micros{0}));
  Gate gate;
  block_worker(s, gate);
  Recorder rec;
  auto low = s.submit(rec.task(3), {.priority = 3});
  const auto later = Clock::now() + Micros{3000};
  while (Clock::now() < later) std::this_thread::yield();
  auto high = s.submit(rec.task(1), {.priority = 1});
  gate.open();
  low.wait();
  high.wait();
  EXPECT_EQ(rec.order, (std::vector<int>{1, 3}));
}

TEST(Sched, FullLevelRejectsAtOnceOtherLevelsStillAccept) {
  SchedulerOptions o = one_worker(2);
  o.queue_capacity = 2;
  Scheduler s(o);
  Gate gate;
  block_worker(s, gate);
  Recorder rec;
  auto a = s.submit(rec.task(1), {.priority = 2});
  auto b = s.submit(rec.task(2), {.priority = 2});
  auto c = s.submit(rec.task(3), {.priority = 2});
  EXPECT_EQ(c.status(), TaskStatus::Rejected);  // immediately, the worker is still blocked
  EXPECT_THROW(c.get(), RejectedError);
  auto d = s.submit(rec.task(4), {.priority = 1});
  EXPECT_EQ(d.status(), TaskStatus::Queued);
  gate.open();
  a.wait(), b.wait(), d.wait();
  EXPECT_EQ(rec.order, (std::vector<int>{4, 1, 2}));
  EXPECT_EQ(s.stats().rejected, 1);
}

TEST(Sched, QueuedTaskExpiresWhileWorkerIsBusyAndNeverRuns) {
  Scheduler s(one_worker());
  Gate gate;
  auto blocker = block_worker(s, gate);
  std::atomic<bool> ran{false};
  auto h = s.submit([&] {
    ran = true;
    return Outputs{};
  }, {.priority = 1, .deadline = Clock::now() + Micros{5000}});
  h.wait();  // returns at the deadline although the worker is still blocked
  EXPECT_EQ(h.status(), TaskStatus::Expired);
  EXPECT_EQ(blocker.status(), TaskStatus::Running);
  try {
    h.get();
    FAIL() << "expected RejectedError";
  } catch (const RejectedError& e) {
    EXPECT_EQ(e.status(), TaskStatus::Expired);
    EXPECT_NE(std::string(e.what()).find("deadline"), std::string::npos);
  }
  EXPECT_EQ(s.stats().queued[0], 0);
  gate.open();
  blocker.wait();
  auto after = s.submit([] { return Outputs{}; });
  after.wait();  // FIFO: the expired task's slot has been passed by now
  EXPECT_FALSE(ran);
  EXPECT_EQ(s.stats().expired, 1);
}

TEST(Sched, RunningTaskPastDeadlineIsAnsweredAtTheDeadline) {
  Scheduler s(one_worker());
  Gate gate;
  auto h = s.submit([&] {
    gate.wait();
    return Outputs{ds::Tensor{1.f}};
  }, {.deadline = Clock::now() + Micros{5000}});
  h.wait();
  EXPECT_EQ(h.status(), TaskStatus::Expired);
  gate.open();
  EXPECT_THROW(h.get(), RejectedError);  // the late result is never delivered
}

TEST(Sched, PastDeadlineAtSubmitIsExpiredAtOnce) {
  Scheduler s(one_worker());
  auto h = s.submit([] { return Outputs{}; }, {.deadline = Clock::now() - Micros{1}});
  EXPECT_EQ(h.status(), TaskStatus::Expired);
}

TEST(Sched, CancelQueuedButNotRunning) {
  Scheduler s(one_worker());
  Gate gate;
  auto blocker = block_worker(s, gate);
  std::atomic<bool> ran{false};
  auto h = s.submit([&] {
    ran = true;
    return Outputs{};
  });
  EXPECT_TRUE(h.cancel());
  EXPECT_EQ(h.status(), TaskStatus::Cancelled);
  EXPECT_FALSE(blocker.cancel());
  EXPECT_FALSE(h.cancel());
  gate.open();
  blocker.wait();
  s.submit([] { return Outputs{}; }).wait();
  EXPECT_FALSE(ran);
  EXPECT_EQ(s.stats().cancelled, 1);
}

TEST(Sched, FutureCallbackAndErrors) {
  Scheduler s(one_worker());
  std::latch called(2);
  std::atomic<int> seen_done{0}, seen_failed{0};
  auto cb = [&](const TaskHandle& h) {
    if (h.status() == TaskStatus::Done) ++seen_done;
    if (h.status() == TaskStatus::Failed) ++seen_failed;
    called.count_down();
  };
  auto ok = s.submit([] { return Outputs{ds::Tensor{7.f, 8.f}}; }, {.on_done = cb});
  auto bad = s.submit([]() -> Outputs { throw ds::ValueError("boom in work"); }, {.on_done = cb});
  called.wait();
  EXPECT_EQ(seen_done, 1);
  EXPECT_EQ(seen_failed, 1);
  EXPECT_FLOAT_EQ(ok.get()[0].data<float>()[1], 8.f);
  EXPECT_THROW(bad.get(), ds::ValueError);
  EXPECT_THROW(s.submit([] { return Outputs{}; }, {.priority = 4}), ds::ValueError);
}

TEST(Sched, CallbackMaySubmitMoreWork) {
  Scheduler s(one_worker());
  std::latch second_done(1);
  s.submit([] { return Outputs{}; }, {.on_done = [&](const TaskHandle&) {
              s.submit([] { return Outputs{}; },
                       {.on_done = [&](const TaskHandle&) { second_done.count_down(); }});
            }});
  second_done.wait();
  EXPECT_EQ(s.stats().completed, 2);
}

TEST(Sched, AuxiliaryRunsOnlyWhenIdleAndYieldsToRealWork) {
  Scheduler s(one_worker());
  Gate gate;
  auto blocker = block_worker(s, gate);
  std::latch aux_started(1);
  std::atomic<int> aux_calls{0};
  Recorder rec;
  std::atomic<bool> real_done{false};
  auto aux = s.submit_auxiliary([&](const YieldToken& y) {
    if (++aux_calls == 1) {
      aux_started.count_down();
      // The worker does not wait for this slice, so the real task may be done
      // before this low-priority thread looks again.
      while (!y.should_yield() && !real_done) std::this_thread::yield();
      std::lock_guard l(rec.m);
      rec.order.push_back(-1);  // yielded
      return false;
    }
    std::lock_guard l(rec.m);
    rec.order.push_back(-2);  // resumed and finished
    return true;
  });
  EXPECT_EQ(aux.status(), TaskStatus::Queued);  // the worker is busy with real work
  gate.open();
  aux_started.wait();
  auto real = s.submit(rec.task(1), {.on_done = [&](const TaskHandle&) { real_done = true; }});
  real.wait();
  aux.wait();
  EXPECT_EQ(aux.status(), TaskStatus::Done);
  // The real task may run while the yielding slice ends; the resumed slice
  // runs only after it.
  ASSERT_EQ(rec.order.size(), 3u);
  EXPECT_EQ(rec.order.back(), -2);
  EXPECT_EQ(s.stats().auxiliary_yields, 1);
  EXPECT_EQ(s.stats().auxiliary_completed, 1);
}

TEST(Sched, RealWorkDoesNotWaitForTheAuxiliarySliceInProgress) {
  Scheduler s(one_worker());
  std::latch aux_started(1), real_done(1);
  std::atomic<bool> real_ran_during_slice{false};
  auto aux = s.submit_auxiliary([&](const YieldToken&) {
    aux_started.count_down();
    // A slice that ends only after the real task finished (or after 10 s when
    // the worker waits for the slice, which is what this test rules out).
    const auto until = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < until && !real_ran_during_slice) std::this_thread::yield();
    return true;
  });
  aux_started.wait();
  s.submit([&] {
     real_ran_during_slice = true;
     return Outputs{};
   }).wait();
  aux.wait();
  EXPECT_TRUE(real_ran_during_slice);
  EXPECT_EQ(aux.status(), TaskStatus::Done);
}

TEST(Sched, AuxiliaryYieldsOnlyForWorkItsWorkerCanRun) {
  SchedulerOptions o;
  o.devices = {{ds::Device::cpu(), 1}, {ds::Device::cuda(0), 1}};
  Scheduler s(o);
  // Keep the CUDA worker busy so the auxiliary task can only run beside the CPU worker.
  Gate gate;
  std::latch blocker_started(1);
  auto blocker = s.submit([&] {
    blocker_started.count_down();
    gate.wait();
    return Outputs{};
  }, {.device = ds::Device::cuda(0)});
  blocker_started.wait();
  std::latch aux_started(1), pinned_queued(1);
  std::atomic<bool> yielded_early{false};
  auto aux = s.submit_auxiliary([&](const YieldToken& y) {
    aux_started.count_down();
    pinned_queued.wait();
    // Work pinned to the busy CUDA worker is not this worker's: no yield.
    yielded_early = y.should_yield();
    return true;
  });
  aux_started.wait();
  auto pinned = s.submit([] { return Outputs{}; }, {.device = ds::Device::cuda(0)});
  pinned_queued.count_down();
  aux.wait();
  EXPECT_FALSE(yielded_early);
  gate.open();
  pinned.wait();
  EXPECT_EQ(pinned.status(), TaskStatus::Done);
}

TEST(Sched, PinnedTasksRunOnTheirDevicesWorkers) {
  SchedulerOptions o;
  o.devices = {{ds::Device::cpu(), 1}, {ds::Device::cuda(0), 1}};
  Scheduler s(o);
  auto thread_of = [&](std::optional<ds::Device> d) {
    std::thread::id id;
    s.submit([&] {
      id = std::this_thread::get_id();
      return Outputs{};
    }, {.device = d}).wait();
    return id;
  };
  const auto gpu_thread = thread_of(ds::Device::cuda(0));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(thread_of(ds::Device::cuda(0)), gpu_thread);
  for (int i = 0; i < 4; ++i) EXPECT_NE(thread_of(ds::Device::cpu()), gpu_thread);
  EXPECT_THROW(s.submit([] { return Outputs{}; }, {.device = ds::Device::cuda(3)}),
               ds::NotFoundError);
}

TEST(Sched, ShutdownRejectsQueuedAndFinishesRunning) {
  auto s = std::make_unique<Scheduler>(one_worker());
  Gate gate;
  auto blocker = block_worker(*s, gate);
  auto queued = s->submit([] { return Outputs{}; });
  std::thread closer([&] { s->shutdown(); });
  queued.wait();
  EXPECT_EQ(queued.status(), TaskStatus::Rejected);
  gate.open();
  closer.join();
  EXPECT_EQ(blocker.status(), TaskStatus::Done);
  EXPECT_EQ(s->submit([] { return Outputs{}; }).status(), TaskStatus::Rejected);
}
