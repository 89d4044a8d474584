// Batching policies and the discrete-event simulator.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <latch>
#include <mutex>

#include "ds/sched.h"

using namespace ds::sched;

namespace {

// t(1) = 400 us, t(16) = 1600 us: batching pays, sub-linearly.
ServiceModel sublinear() { return ServiceModel::parse("1:400,16:1600"); }

SimOptions two_classes(double rate, double seconds = 2, uint64_t seed = 7) {
  SimOptions o;
  o.classes = {{"high", 1, 0.2, 1, 4000}, {"low", 3, 0.8, 1, std::nullopt}};
  o.phases = {{seconds, rate}};
  o.seed = seed;
  return o;
}

}  // namespace

TEST(SchedPolicy, ServiceModelInterpolatesAndParses) {
  ServiceModel m = sublinear();
  EXPECT_DOUBLE_EQ(m(1), 400);
  EXPECT_DOUBLE_EQ(m(16), 1600);
  EXPECT_DOUBLE_EQ(m(6), 800);
  EXPECT_DOUBLE_EQ(m(31), 2800);  // extrapolated along the last segment
  EXPECT_DOUBLE_EQ(ServiceModel::parse("4:100")(8), 200);
  EXPECT_THROW(ServiceModel::parse("4-100"), ds::ValueError);
  EXPECT_THROW(ServiceModel::parse("0:100"), ds::ValueError);
  EXPECT_THROW(ServiceModel::parse("x:1"), ds::ValueError);
}

TEST(SchedPolicy, MeasuresAServiceModelFromACallable) {
  int calls = 0;
  std::vector<int64_t> rows_seen;
  BatchFn fn = [&](const Outputs& in) {
    ++calls;
    rows_seen.push_back(in[0].shape()[0]);
    return in;
  };
  ServiceModel m = measure_service_model(fn, {ds::Tensor::full({1, 3}, 1)}, {1, 4}, 3);
  EXPECT_EQ(calls, 8);  // a warm-up and 3 runs per size
  EXPECT_EQ(rows_seen.back(), 4);
  ASSERT_EQ(m.table().size(), 2u);
  EXPECT_GT(m.table()[0].second, 0);
}

TEST(SchedPolicy, SimulationIsDeterministicBySeed) {
  auto p = static_policy(16, 0);
  SimResult a = simulate(two_classes(2000), sublinear(), *p);
  SimResult b = simulate(two_classes(2000), sublinear(), *p);
  SimResult c = simulate(two_classes(2000, 2, 8), sublinear(), *p);
  EXPECT_EQ(a.classes[1].requests, b.classes[1].requests);
  EXPECT_DOUBLE_EQ(a.classes[1].p99_us, b.classes[1].p99_us);
  EXPECT_DOUBLE_EQ(a.avg_batch_size, b.avg_batch_size);
  EXPECT_NE(a.classes[1].requests, c.classes[1].requests);
  // About 2000/s for 2 s, 20 % high priority.
  const double n = a.classes[0].requests + a.classes[1].requests;
  EXPECT_NEAR(n, 4000, 300);
  EXPECT_NEAR(a.classes[0].requests / n, 0.2, 0.03);
}

TEST(SchedPolicy, BatchingSustainsALoadThatOverwhelmsBatchOne) {
  // 1.2x the capacity without batching (2500 req/s).
  SimOptions o = two_classes(3000);
  o.max_queue_size = 256;
  SimResult one = simulate(o, sublinear(), *static_policy(1, 0));
  SimResult many = simulate(o, sublinear(), *static_policy(16, 0));
  EXPECT_GT(one.classes[1].rejected, 0);
  EXPECT_EQ(many.classes[1].rejected, 0);
  EXPECT_GT(many.avg_batch_size, 1.2);
  EXPECT_LT(many.classes[1].p99_us, one.classes[1].p99_us / 10);
  // Priority keeps the urgent class in time even without batching.
  EXPECT_LT(one.classes[0].p99_us, 4000);
}

TEST(SchedPolicy, QueueDelayBuysBiggerBatchesWithLatency) {
  SimOptions o = two_classes(1000);
  SimResult eager = simulate(o, sublinear(), *static_policy(16, 0));
  SimResult patient = simulate(o, sublinear(), *static_policy(16, 3000));
  EXPECT_GT(patient.avg_batch_size, 2 * eager.avg_batch_size);
  EXPECT_GT(patient.classes[1].p50_us, eager.classes[1].p50_us);
}

TEST(SchedPolicy, AimdGrowsTheCapWhileBatchesFitTheTargetAndHalvesItWhenNot) {
  auto p = aimd_policy(1000, 16, 0, 4);
  EXPECT_EQ(p->decide({}).max_batch_size, 1);
  BatchOutcome fast;
  fast.service_us = 400;
  for (int i = 0; i < 5 * 4; ++i) p->observe(fast);
  EXPECT_EQ(p->decide({}).max_batch_size, 6);
  BatchOutcome slow = fast;
  slow.service_us = 1500;
  p->observe(slow);
  for (int i = 0; i < 3; ++i) p->observe(fast);
  EXPECT_EQ(p->decide({}).max_batch_size, 3);
  for (int i = 0; i < 100 * 4; ++i) p->observe(fast);
  EXPECT_EQ(p->decide({}).max_batch_size, 16);  // never above the maximum
  EXPECT_THROW(aimd_policy(0, 16, 0), ds::ValueError);
}

TEST(SchedPolicy, AimdKeepsUpWithOverloadInSimulation) {
  SimOptions o = two_classes(3000);
  o.max_queue_size = 256;
  auto p = aimd_policy(1000, 32, 0);
  SimResult r = simulate(o, sublinear(), *p);
  EXPECT_EQ(r.classes[1].rejected, 0);
  EXPECT_GT(r.avg_batch_size, 1.2);
}

TEST(SchedPolicy, QLearningLearnsToBatchUnderOverloadAndRoundTripsItsTable) {
  SimOptions o = two_classes(3000, 2);
  o.max_queue_size = 256;
  QLearningOptions qo;
  qo.max_rate = 5000;
  QLearningPolicy q(qo);
  for (int e = 0; e < 10; ++e) {
    SimOptions train = o;
    train.seed = 100 + e;
    simulate(train, sublinear(), q);
  }
  q.set_exploration(0);
  SimResult learned = simulate(o, sublinear(), q);
  SimResult one = simulate(o, sublinear(), *static_policy(1, 0));
  SimResult best = simulate(o, sublinear(), *static_policy(16, 0));
  EXPECT_EQ(learned.classes[1].rejected, 0);
  EXPECT_GT(learned.avg_batch_size, 1.2);
  EXPECT_GE(learned.deadline_hit_rate, best.deadline_hit_rate - 0.05);
  EXPECT_GT(learned.deadline_hit_rate, one.deadline_hit_rate);
  EXPECT_GT(q.states_visited(), 5u);

  const auto path = (std::filesystem::temp_directory_path() / "ds_qtable_test.txt").string();
  q.save(path);
  QLearningPolicy copy(qo);
  copy.load(path);
  copy.set_exploration(0);
  EXPECT_EQ(copy.states_visited(), q.states_visited());
  // Same table, same greedy choices: the same simulation result.
  QLearningPolicy again(qo);
  again.load(path);
  again.set_exploration(0);
  SimResult r1 = simulate(o, sublinear(), copy);
  SimResult r2 = simulate(o, sublinear(), again);
  EXPECT_DOUBLE_EQ(r1.classes[1].p99_us, r2.classes[1].p99_us);
  QLearningOptions other = qo;
  other.batch_caps = {1, 2};
  QLearningPolicy mismatch(other);
  EXPECT_THROW(mismatch.load(path), ds::ValueError);
  EXPECT_THROW(copy.load(path + ".missing"), ds::IOError);
  std::remove(path.c_str());
}

namespace {

// Load that shifts every second: low, high, low, then past what batches of 16
// can serve. Urgent requests (20 %) have 2 ms (5 t(1)), the others 20 ms.
SimOptions shifting(uint64_t seed) {
  SimOptions o;
  o.classes = {{"high", 1, 0.2, 1, 2000}, {"low", 3, 0.8, 1, 20000}};
  o.phases = {{1, 3000}, {1, 8000}, {1, 3000}, {1, 10500}};
  o.seed = seed;
  return o;
}

}  // namespace

TEST(SchedPolicy, QLearningBeatsTheBestStaticSettingUnderShiftingLoad) {
  QLearningOptions qo;
  qo.max_rate = 12000;
  qo.queue_delays_us = {0, 400};
  QLearningPolicy q(qo);
  // Trained on seeds of its own (100..129), evaluated on seeds it never saw.
  for (int e = 0; e < 30; ++e) {
    q.set_exploration(0.2 * (1 - e / 30.0) + 0.01);
    simulate(shifting(100 + e), sublinear(), q);
  }
  const auto path = (std::filesystem::temp_directory_path() / "ds_qtable_shift_test.txt").string();
  q.save(path);
  for (uint64_t seed : {1, 2, 3}) {
    // The best fixed setting for this very trace (chosen with hindsight).
    double best = 0;
    std::string best_name;
    for (int64_t b : {1, 2, 4, 8, 12, 16, 24, 32})
      for (int64_t d : {0, 200, 400, 800}) {
        SimResult r = simulate(shifting(seed), sublinear(), *static_policy(b, d));
        if (r.deadline_hit_rate > best) best = r.deadline_hit_rate, best_name = r.policy;
      }
    QLearningPolicy learned(qo);
    learned.load(path);
    learned.set_exploration(0);
    const SimResult r = simulate(shifting(seed), sublinear(), learned);
    EXPECT_GT(r.deadline_hit_rate, best + 0.01) << "seed " << seed << ": " << best_name;
  }
  std::remove(path.c_str());
}

TEST(SchedPolicy, LiveBatcherConsultsItsPolicy) {
  SchedulerOptions so;
  Scheduler s(so);
  std::vector<int64_t> batches;
  std::mutex m;
  BatchFn fn = [&](const Outputs& in) {
    std::lock_guard l(m);
    batches.push_back(in[0].shape()[0]);
    return in;
  };
  // The policy caps at 2 although the options allow 8.
  DynamicBatcher b("p", fn, s, {.max_batch_size = 8}, static_policy(2, 0));
  std::latch started(1);
  std::mutex gm;
  std::condition_variable gcv;
  bool open = false;
  s.submit([&] {
    started.count_down();
    std::unique_lock l(gm);
    gcv.wait(l, [&] { return open; });
    return Outputs{};
  });
  started.wait();
  std::vector<TaskHandle> hs;
  for (int i = 0; i < 5; ++i) hs.push_back(b.submit({ds::Tensor::full({1, 1}, i)}));
  {
    std::lock_guard l(gm);
    open = true;
  }
  gcv.notify_all();
  for (auto& h : hs) h.wait();
  EXPECT_EQ(batches, (std::vector<int64_t>{2, 2, 1}));
}
