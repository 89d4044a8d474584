// Memory planning: lifetimes that overlap never share bytes; in-place reuse;
// planned runs give the same results with a much smaller footprint.
#include <gtest/gtest.h>

#include <random>

#include "ds/ds.h"
#include "runtime/memory_plan.h"

using ds::BufferRequest;
using ds::Tensor;

TEST(MemoryPlan, OverlappingLifetimesNeverShareBytes) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<BufferRequest> req;
    for (int i = 0; i < 30; ++i) {
      int a = static_cast<int>(rng() % 40), b = a + static_cast<int>(rng() % 10);
      req.push_back({static_cast<int64_t>(1 + rng() % 5000), a, b, -1});
    }
    auto plan = ds::plan_memory(req);
    for (size_t i = 0; i < req.size(); ++i) {
      EXPECT_EQ(plan.offsets[i] % 64, 0);
      EXPECT_LE(plan.offsets[i] + req[i].bytes, plan.arena_bytes);
      for (size_t j = i + 1; j < req.size(); ++j) {
        const bool live_together =
            !(req[i].last_step < req[j].first_step || req[j].last_step < req[i].first_step);
        const bool bytes_overlap = plan.offsets[i] < plan.offsets[j] + req[j].bytes &&
                                   plan.offsets[j] < plan.offsets[i] + req[i].bytes;
        EXPECT_FALSE(live_together && bytes_overlap) << "requests " << i << " and " << j;
      }
    }
    EXPECT_LE(plan.arena_bytes, plan.unplanned_bytes);
  }
}

TEST(MemoryPlan, InPlaceAliasSharesTheOffset) {
  std::vector<BufferRequest> req = {{1024, 0, 1, -1}, {1024, 1, 2, 0}, {1024, 2, 3, 1}};
  auto plan = ds::plan_memory(req);
  EXPECT_EQ(plan.offsets[0], plan.offsets[1]);
  EXPECT_EQ(plan.offsets[1], plan.offsets[2]);
  EXPECT_EQ(plan.arena_bytes, 1024);
  EXPECT_EQ(plan.unplanned_bytes, 3 * 1024);
}

TEST(MemoryPlan, DeepChainUsesAFractionOfTheUnplannedMemory) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {64, 256});
  Tensor h = x;
  for (int layer = 0; layer < 20; ++layer) h = ds::tanh(h * 0.5 + static_cast<double>(layer));
  g.output(h, "y");
  // opt_level 1: loop fusion (level 2) would leave no intermediates to plan.
  ds::Executable exe = ds::compile(g, "cpu", {.opt_level = 1});
  std::vector<float> v(64 * 256);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 97) / 50.0f - 1.0f;
  Tensor feed = Tensor::from_vector(v, {64, 256});
  Tensor planned = exe.run({{"x", feed}}).at("y");
  const auto stats = exe.stats();
  EXPECT_GT(stats.unplanned_bytes, 0);
  EXPECT_LE(stats.arena_bytes * 2, stats.unplanned_bytes)
      << stats.arena_bytes << " vs " << stats.unplanned_bytes;
  // Reference: eager evaluation, one fresh buffer per op.
  Tensor e = feed;
  for (int layer = 0; layer < 20; ++layer) e = ds::tanh(e * 0.5 + static_cast<double>(layer));
  for (int64_t i = 0; i < e.numel(); ++i) ASSERT_EQ(planned.data<float>()[i], e.data<float>()[i]);
}
