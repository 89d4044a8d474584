// Hardware-aware placement against a table of two fake devices: a slow one
// (listed first, "cpu") and a fast one ("cuda:0"); only the table's numbers
// differ, so every decision is deterministic.
#include <gtest/gtest.h>

#include <latch>
#include <thread>

#include "ds/monitor.h"
#include "ds/ops.h"
#include "ds/placement.h"
#include "ds/sched.h"
#include "sched/task_state.h"

using namespace ds::sched;
using ds::Device;

namespace {

// 1 GFLOP: 0.909 s on the slow device, 0.25 s on the fast one.
constexpr TaskCost kTask{1e9, 1e6};

std::vector<DeviceProfile> two_devices() {
  return {{Device::cpu(), 1.1e9, 1e10, 1}, {Device::cuda(0), 4e9, 1e11, 1}};
}

}  // namespace

TEST(SchedPlacement, PrefersTheFasterDeviceUntilItsQueueMakesTheSlowerFinishFirst) {
  Placer p(two_devices());
  std::vector<Device> got;
  for (int i = 0; i < 5; ++i) got.push_back(p.place(kTask).device);
  // Fast finishes at 0.25, 0.5, 0.75; the 4th would finish at 1.0 there but at
  // 0.909 on the idle slow device; the 5th: 1.0 (fast) against 1.82 (slow).
  EXPECT_EQ(got, (std::vector<Device>{Device::cuda(0), Device::cuda(0), Device::cuda(0),
                                      Device::cpu(), Device::cuda(0)}));
  const auto st = p.devices();
  EXPECT_EQ(st[0].in_flight, 1);
  EXPECT_EQ(st[1].in_flight, 4);
  EXPECT_NEAR(st[1].queued_seconds, 1.0, 1e-9);
}

TEST(SchedPlacement, RespectsAPinnedDevice) {
  Placer p(two_devices());
  const Placement a = p.place(kTask, Device::cpu());
  EXPECT_EQ(a.device, Device::cpu());
  EXPECT_NEAR(a.estimated_seconds, 1e9 / 1.1e9, 1e-9);
  EXPECT_THROW(p.place(kTask, Device::cuda(3)), ds::NotFoundError);
}

TEST(SchedPlacement, MemoryBoundTasksGoWhereTheBandwidthIs) {
  // Same compute, but the slow device has 10x the bandwidth and the task moves 1 GB.
  Placer p({{Device::cpu(), 1e9, 1e11, 1}, {Device::cuda(0), 4e9, 1e10, 1}});
  const Placement a = p.place({1e6, 1e9});
  EXPECT_EQ(a.device, Device::cpu());
  EXPECT_NEAR(a.estimated_seconds, 1e9 / 1e11, 1e-12);
}

TEST(SchedPlacement, LearnsTheAchievedThroughputFromRuns) {
  Placer p(two_devices(), 0.5);
  // The fast device turns out to run at a tenth of its prior (2.5 s a task).
  for (int i = 0; i < 6; ++i) {
    const Placement a = p.place(kTask, Device::cuda(0));
    p.complete(a, kTask, 2.5);
  }
  const auto st = p.devices();
  EXPECT_EQ(st[1].in_flight, 0);
  EXPECT_NEAR(st[1].queued_seconds, 0, 1e-12);
  // EWMA from 1 toward 0.1 with weight 0.5: 0.1 + 0.9 / 2^6.
  EXPECT_NEAR(st[1].efficiency, 0.1 + 0.9 / 64, 1e-9);
  EXPECT_NEAR(st[1].achieved_flops_per_s, (0.1 + 0.9 / 64) * 4e9, 1);
  EXPECT_EQ(p.place(kTask).device, Device::cpu());
}

TEST(SchedPlacement, OutsideUtilizationSlowsADevice) {
  Placer p(two_devices());
  p.set_outside_utilization(Device::cuda(0), 0.9);  // 0.25 s / 0.1 free = 2.5 s
  EXPECT_NEAR(p.estimate_seconds(1, kTask), 2.5, 1e-9);
  EXPECT_EQ(p.place(kTask).device, Device::cpu());
  EXPECT_THROW(p.set_outside_utilization(Device::cpu(), 1.5), ds::ValueError);

  // The same from a resource monitor sample: GPU 0 at 90 % SM utilization.
  Placer q(two_devices());
  ds::ResourceSample s;
  s.gpus.push_back({.index = 0, .utilization_pct = 90.0});
  q.observe(s);
  EXPECT_NEAR(q.devices()[1].outside_utilization, 0.9, 1e-12);
  EXPECT_EQ(q.place(kTask).device, Device::cpu());
}

TEST(SchedPlacement, CancelledTasksLeaveTheQueue) {
  Placer p(two_devices());
  std::vector<Placement> ps;
  for (int i = 0; i < 3; ++i) ps.push_back(p.place(kTask));
  for (const auto& a : ps) p.cancel(a);
  const auto st = p.devices();
  EXPECT_EQ(st[1].in_flight, 0);
  EXPECT_NEAR(st[1].queued_seconds, 0, 1e-12);
  EXPECT_NEAR(st[1].efficiency, 1, 1e-12);  // nothing learned from tasks that never ran
}

TEST(SchedPlacement, CostOfAnExecutableComesFromTheCostModel) {
  auto cost = [](int64_t k) {
    ds::Graph g;
    ds::Tensor a = g.placeholder("a", {4, k});
    ds::Tensor b = g.placeholder("b", {k, 16});
    g.output(ds::matmul(a, b), "c");
    return cost_of(ds::compile(g, "cpu"));
  };
  const TaskCost small = cost(8), big = cost(64);
  EXPECT_GT(small.flops, 0);
  EXPECT_GT(small.bytes, 0);
  EXPECT_NEAR(big.flops / small.flops, 8, 1e-9);  // matmul FLOPs grow with k
}

TEST(SchedPlacement, SchedulerPlacesTasksByCostAndLearnsFromTheirRuns) {
  auto placer = std::make_shared<Placer>(two_devices());
  SchedulerOptions o;
  o.devices = {{Device::cpu(), 1}, {Device::cuda(0), 1}};
  o.placer = placer;
  Scheduler s(o);
  std::latch release(1);
  std::vector<TaskHandle> hs;
  for (int i = 0; i < 5; ++i)
    hs.push_back(s.submit([&] {
      release.wait();
      return Outputs{};
    }, {.cost = kTask}));
  std::vector<Device> placed;
  for (const auto& h : hs) placed.push_back(*h.state()->device);
  EXPECT_EQ(placed, (std::vector<Device>{Device::cuda(0), Device::cuda(0), Device::cuda(0),
                                         Device::cpu(), Device::cuda(0)}));
  // A queued task that is cancelled gives its estimate back at once.
  EXPECT_TRUE(hs[4].cancel());
  EXPECT_EQ(placer->devices()[1].in_flight, 3);
  release.count_down();
  for (const auto& h : hs) h.wait();
  const auto st = placer->devices();
  EXPECT_EQ(st[0].in_flight + st[1].in_flight, 0);
  // These tasks took far less than their 0.25 s estimate: the device looks faster now.
  EXPECT_GT(st[1].efficiency, 1);

  // A placer device without workers is a configuration error.
  SchedulerOptions bad;
  bad.placer = placer;
  EXPECT_THROW(Scheduler{bad}, ds::ValueError);
}
