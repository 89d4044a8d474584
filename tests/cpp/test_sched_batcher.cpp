// DynamicBatcher: concatenation and split, caps, preferred sizes, queue delay,
// priorities inside a batch, shape separation, deadlines, run-time knobs.
// A gate holds the scheduler's only worker so requests pile up deterministically.
#include <gtest/gtest.h>

#include <latch>
#include <mutex>

#include "ds/ds.h"
#include "ds/sched.h"
#include "sched_test_util.h"

using namespace ds::sched;
using ds::Tensor;

namespace {

using ds::sched_test::Gate;

void block_worker(Scheduler& s, Gate& gate) {
  std::latch started(1);
  s.submit([&] {
    started.count_down();
    gate.wait();
    return Outputs{};
  });
  started.wait();
}

// y = 2 * x, recording every batch's rows.
struct Doubler {
  std::mutex m;
  std::vector<int64_t> batches;
  std::vector<std::vector<float>> firsts;  // first column of each batch
  BatchFn fn() {
    return [this](const Outputs& in) {
      Tensor y = Tensor::empty(in[0].shape(), in[0].dtype());
      const float* x = in[0].data<float>();
      for (int64_t i = 0; i < in[0].numel(); ++i) y.data<float>()[i] = 2 * x[i];
      std::lock_guard l(m);
      batches.push_back(in[0].shape()[0]);
      std::vector<float> col;
      const int64_t w = in[0].numel() / in[0].shape()[0];
      for (int64_t r = 0; r < in[0].shape()[0]; ++r) col.push_back(x[r * w]);
      firsts.push_back(col);
      return Outputs{y};
    };
  }
};

Tensor row(float v, int64_t width = 2) { return Tensor::full({1, width}, v); }

SchedulerOptions single_worker() {
  SchedulerOptions o;
  o.aging_step = Micros{0};
  return o;
}

}  // namespace

TEST(SchedBatcher, ConcatenatesWaitingRequestsAndSplitsOutputs) {
  Scheduler s(single_worker());
  Doubler d;
  DynamicBatcher b("double", d.fn(), s, {.max_batch_size = 8});
  Gate gate;
  block_worker(s, gate);
  std::vector<TaskHandle> hs;
  for (int i = 0; i < 4; ++i) hs.push_back(b.submit({row(float(i))}));
  hs.push_back(b.submit({Tensor::from_vector<float>({5, 6, 7, 8}, {2, 2})}));  // 2 rows
  EXPECT_EQ(b.stats().queued[0], 5);
  gate.open();
  for (int i = 0; i < 4; ++i) {
    Outputs y = hs[i].get();
    ASSERT_EQ(y[0].shape(), (ds::Shape{1, 2}));
    EXPECT_FLOAT_EQ(y[0].data<float>()[0], 2.f * i);
  }
  Outputs y = hs[4].get();
  ASSERT_EQ(y[0].shape(), (ds::Shape{2, 2}));
  EXPECT_FLOAT_EQ(y[0].contiguous().data<float>()[3], 16.f);
  EXPECT_EQ(d.batches, (std::vector<int64_t>{6}));
  auto st = b.stats();
  EXPECT_EQ(st.batches, 1);
  EXPECT_EQ(st.rows, 6);
  EXPECT_EQ(st.succeeded, 5);
}

TEST(SchedBatcher, RespectsTheCapAndPreferredSizes) {
  Scheduler s(single_worker());
  Doubler d;
  DynamicBatcher b("double", d.fn(), s, {.max_batch_size = 8, .preferred_batch_sizes = {4}});
  Gate gate;
  block_worker(s, gate);
  std::vector<TaskHandle> hs;
  for (int i = 0; i < 11; ++i) hs.push_back(b.submit({row(float(i))}));
  gate.open();
  for (auto& h : hs) h.wait();
  // 11 waiting: cut to the preferred 4, then 4, then the remaining 3.
  EXPECT_EQ(d.batches, (std::vector<int64_t>{4, 4, 3}));

  b.set_options({.max_batch_size = 2});  // a run-time knob change applies to the next batch
  Gate gate2;
  block_worker(s, gate2);
  for (int i = 0; i < 3; ++i) hs.push_back(b.submit({row(float(i))}));
  gate2.open();
  for (auto& h : hs) h.wait();
  EXPECT_EQ(d.batches, (std::vector<int64_t>{4, 4, 3, 2, 1}));
}

TEST(SchedBatcher, UrgentRequestsGoFirstAndFillWithOlderLowOnes) {
  Scheduler s(single_worker());
  Doubler d;
  DynamicBatcher b("double", d.fn(), s, {.max_batch_size = 2});
  Gate gate;
  block_worker(s, gate);
  std::vector<TaskHandle> hs;
  for (int i = 0; i < 3; ++i) hs.push_back(b.submit({row(30.f + i)}, {.priority = 3}));
  hs.push_back(b.submit({row(10.f)}, {.priority = 1}));
  gate.open();
  for (auto& h : hs) h.wait();
  ASSERT_EQ(d.firsts.size(), 2u);
  EXPECT_EQ(d.firsts[0], (std::vector<float>{10.f, 30.f}));
  EXPECT_EQ(d.firsts[1], (std::vector<float>{31.f, 32.f}));
}

TEST(SchedBatcher, NeverMergesDifferentNonBatchShapes) {
  Scheduler s(single_worker());
  Doubler d;
  DynamicBatcher b("double", d.fn(), s, {.max_batch_size = 8});
  Gate gate;
  block_worker(s, gate);
  auto a = b.submit({row(1, 3)});
  auto c = b.submit({row(2, 4)});
  auto e = b.submit({row(3, 3)});
  auto f = b.submit({Tensor::full({1, 3}, 4, ds::DType::Float64)});
  gate.open();
  EXPECT_EQ(a.get()[0].shape(), (ds::Shape{1, 3}));
  EXPECT_EQ(c.get()[0].shape(), (ds::Shape{1, 4}));
  e.wait();
  f.wait();
  // float64 reaches the Doubler, which reads float: it fails alone, not the others.
  EXPECT_EQ(f.status(), TaskStatus::Failed);
  EXPECT_EQ(d.batches, (std::vector<int64_t>{2, 1}));
}

TEST(SchedBatcher, WaitsForTheCapUntilTheQueueDelay) {
  Scheduler s(single_worker());
  Doubler d;
  // The delay is far longer than the test: only a full batch can leave.
  DynamicBatcher b("double", d.fn(), s, {.max_batch_size = 3, .max_queue_delay = std::chrono::hours(1)});
  auto h1 = b.submit({row(1)});
  auto h2 = b.submit({row(2)});
  EXPECT_EQ(h1.status(), TaskStatus::Queued);
  auto h3 = b.submit({row(3)});
  h1.wait(), h2.wait(), h3.wait();
  EXPECT_EQ(d.batches, (std::vector<int64_t>{3}));

  b.set_options({.max_batch_size = 3, .max_queue_delay = Micros{2000}});
  auto h4 = b.submit({row(4)});
  EXPECT_FLOAT_EQ(h4.get()[0].data<float>()[0], 8.f);  // left alone after 2 ms
  EXPECT_EQ(d.batches, (std::vector<int64_t>{3, 1}));
}

TEST(SchedBatcher, RequestExpiresInTheBatcherQueueAndIsLeftOut) {
  Scheduler s(single_worker());
  Doubler d;
  DynamicBatcher b("double", d.fn(), s, {.max_batch_size = 8});
  Gate gate;
  block_worker(s, gate);
  auto late = b.submit({row(1)}, {.deadline = Clock::now() + Micros{3000}});
  auto ok = b.submit({row(2)});
  late.wait();
  EXPECT_EQ(late.status(), TaskStatus::Expired);
  gate.open();
  ok.wait();
  EXPECT_EQ(d.firsts, (std::vector<std::vector<float>>{{2.f}}));
  EXPECT_EQ(b.stats().expired, 1);
}

TEST(SchedBatcher, BadRequestsAndFullQueuesAreRefusedAtOnce) {
  Scheduler s(single_worker());
  Doubler d;
  DynamicBatcher b("double", d.fn(), s, {.max_batch_size = 8, .max_queue_size = 2});
  EXPECT_THROW(b.submit({}), ds::ValueError);
  EXPECT_THROW(b.submit({Tensor::full({0, 2}, 1)}), ds::ShapeError);
  EXPECT_THROW(b.submit({row(1), Tensor::full({2, 2}, 1)}), ds::ShapeError);
  EXPECT_THROW(b.submit({row(1)}, {.priority = 9}), ds::ValueError);
  Gate gate;
  block_worker(s, gate);
  auto a = b.submit({row(1)});
  auto c = b.submit({row(2)});
  auto r = b.submit({row(3)});
  EXPECT_EQ(r.status(), TaskStatus::Rejected);
  EXPECT_EQ(b.submit({row(3)}, {.priority = 2}).status(), TaskStatus::Queued);
  gate.open();
  a.wait(), c.wait();
  EXPECT_EQ(b.stats().rejected, 1);
}

TEST(SchedBatcher, ModelErrorsReachEveryMember) {
  Scheduler s(single_worker());
  DynamicBatcher b("bad", [](const Outputs&) { return Outputs{Tensor::scalar(1)}; }, s);
  auto h = b.submit({row(1)});
  h.wait();
  EXPECT_EQ(h.status(), TaskStatus::Failed);
  try {
    h.get();
    FAIL() << "expected ShapeError";
  } catch (const ds::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be split"), std::string::npos);
  }
}

TEST(SchedBatcher, RunsAnExecutableWithASymbolicBatch) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {ds::dyn, 3});
  g.output(ds::relu(x) * 3.0, "y");
  Scheduler s(single_worker());
  DynamicBatcher b("relu3", batch_fn(ds::compile(g, "cpu")), s, {.max_batch_size = 4});
  Gate gate;
  block_worker(s, gate);
  auto a = b.submit({Tensor::from_vector<float>({-1, 2, 3}, {1, 3})});
  auto c = b.submit({Tensor::from_vector<float>({4, -5, 6, 7, 8, -9}, {2, 3})});
  gate.open();
  Tensor ya = a.get()[0].contiguous(), yc = c.get()[0].contiguous();
  EXPECT_EQ(ya.shape(), (ds::Shape{1, 3}));
  EXPECT_EQ(std::vector<float>(ya.data<float>(), ya.data<float>() + 3), (std::vector<float>{0, 6, 9}));
  EXPECT_EQ(std::vector<float>(yc.data<float>(), yc.data<float>() + 6),
            (std::vector<float>{12, 0, 18, 21, 24, 0}));
  EXPECT_EQ(b.stats().batches, 1);
}
