// Hot runs (core/hot_run.h): splits over spinning pool workers cover every item
// once, each thread starting on its own segment, and give the serial result bit for
// bit; the batch-1 GEMV kernel matches the float64 reference for odd sizes; workers
// linger between back-to-back runs only, leave for a parallel_for, and sleep once
// the linger is over; and two executables run concurrently from two threads stay
// correct without deadlock.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backends/cpu/hot_gemv.h"
#include "core/hot_run.h"
#include "core/thread_pool.h"
#include "core/worker_loan.h"
#include "ds/ds.h"
#include "op_check.h"

namespace ds {
namespace {

using namespace std::chrono_literals;

constexpr const char* kNoWorker = "hot runs off (DS_HOT_RUNS=0) or no pool worker to lend";

// Two threads for the test's scope (the pool needs a worker to lend).
class HotRun : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = num_threads();
    saved_linger_ = hot_run_linger();
    set_num_threads(2);
    reset_hot_run_feedback();
  }
  void TearDown() override {
    set_hot_run_linger(saved_linger_);
    set_num_threads(saved_);
  }

  // A scope whose worker is already spinning, or a skip on a one-core machine.
  static bool wait_for_helper(const HotRunScope& scope) {
    if (scope.helpers() == 0) return false;
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (lent_workers() == 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::yield();
    return lent_workers() > 0;
  }

  // True once no worker is lent any more (lingering ones leave at their deadline).
  static bool workers_asleep_within(std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (lent_workers() > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(1ms);
    return lent_workers() == 0;
  }

 private:
  int saved_ = 0;
  std::chrono::microseconds saved_linger_{};
};

// With 5 threads the team has 5 segments, more than this 2-core machine's one
// worker: the segments without a worker at home are taken by the others.
TEST_F(HotRun, SplitCoversEveryItemOnceForAnySizeAndChunk) {
  for (int threads : {2, 5}) {
    set_num_threads(threads);
    HotRunScope scope;
    if (scope.helpers() == 0) GTEST_SKIP() << kNoWorker;
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1001})
      for (int64_t chunk : {0, 1, 3, 64, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        hot_split(n, chunk, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LT(b, e);
          ASSERT_LE(e, n);
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1)
              << threads << " threads, n " << n << " chunk " << chunk << " item " << i;
      }
  }
}

TEST_F(HotRun, SpinningWorkerTakesChunks) {
  HotRunScope scope;
  if (!wait_for_helper(scope)) GTEST_SKIP() << kNoWorker;
  std::mutex mu;
  std::set<std::thread::id> threads;
  hot_split(40, 1, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(1ms);
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(threads.size(), 2u);
  EXPECT_EQ(hot_helpers(), 1);
}

// The owner starts on the first half of the chunks and the worker on the second
// (its home), so run after run each core streams the same rows.
TEST_F(HotRun, EachThreadStartsOnItsOwnHalf) {
  HotRunScope scope;
  if (!wait_for_helper(scope)) GTEST_SKIP() << kNoWorker;
  const std::thread::id caller = std::this_thread::get_id();
  std::mutex mu;
  std::vector<int64_t> owner_order, worker_order;
  hot_split(40, 1, [&](int64_t b, int64_t) {
    std::this_thread::sleep_for(1ms);
    std::lock_guard<std::mutex> lock(mu);
    (std::this_thread::get_id() == caller ? owner_order : worker_order).push_back(b);
  });
  ASSERT_FALSE(owner_order.empty());
  EXPECT_EQ(owner_order.front(), 0);
  if (worker_order.empty()) GTEST_SKIP() << "the worker took no chunk (busy machine)";
  EXPECT_GE(worker_order.front(), 20) << "the worker did not start on its own half";
}

TEST_F(HotRun, ExceptionInAChunkReachesTheCallerAndTheTeamKeepsWorking) {
  HotRunScope scope;
  if (!wait_for_helper(scope)) GTEST_SKIP() << kNoWorker;
  EXPECT_THROW(hot_split(16, 1,
                         [](int64_t b, int64_t) {
                           if (b == 11) throw std::runtime_error("chunk 11");
                         }),
               std::runtime_error);
  std::atomic<int64_t> sum{0};
  hot_split(100, 7, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 100);
}

TEST_F(HotRun, NestedAndConcurrentScopesGetNoSecondTeam) {
  HotRunScope outer;
  if (outer.helpers() == 0) GTEST_SKIP() << kNoWorker;
  {
    HotRunScope inner;
    EXPECT_EQ(inner.helpers(), 0);
    EXPECT_EQ(hot_helpers(), outer.helpers());  // the outer team still serves this thread
  }
  EXPECT_EQ(hot_helpers(), outer.helpers());
  std::thread([] {
    HotRunScope other;  // another thread while the team is held: it runs alone
    EXPECT_EQ(other.helpers(), 0);
    EXPECT_EQ(hot_helpers(), 0);
    int64_t seen = 0;
    hot_split(10, 1, [&](int64_t b, int64_t e) { seen += e - b; });
    EXPECT_EQ(seen, 10);
  }).join();
}

// A scope whose split the worker did not share in time (here: it sleeps in the
// chunk it takes, as if preempted) makes the next scope run alone; the one after
// has its worker again.
TEST_F(HotRun, ScopeWhoseWorkerDidNotHelpMakesTheNextOneRunAlone) {
  const std::thread::id caller = std::this_thread::get_id();
  {
    HotRunScope scope;
    if (!wait_for_helper(scope)) GTEST_SKIP() << kNoWorker;
    bool worker_took_its_chunk = false;
    hot_split(2, 1, [&](int64_t b, int64_t) {
      if (std::this_thread::get_id() == caller) {
        std::this_thread::sleep_for(1ms);  // time for the worker to take chunk 1
      } else {
        worker_took_its_chunk = b == 1;
        std::this_thread::sleep_for(5ms);
      }
    });
    if (!worker_took_its_chunk) GTEST_SKIP() << "the worker did not take its chunk (busy machine)";
  }
  {
    HotRunScope scope;
    EXPECT_EQ(scope.helpers(), 0);
  }
  HotRunScope scope;
  EXPECT_GT(scope.helpers(), 0);
}

// The GEMV with every epilogue, rows split in chunks of 1-5 (odd counts, 1 row,
// 0 rows): the hot split equals the serial result bit for bit, and both are
// within float rounding of the float64 reference.
TEST_F(HotRun, GemvSplitMatchesSerialAndReference) {
  HotRunScope scope;
  if (!wait_for_helper(scope)) GTEST_SKIP() << kNoWorker;
  uint32_t seed = 1;
  for (int64_t rows : {0, 1, 2, 3, 5, 63, 129})
    for (int64_t in : {0, 1, 7, 8, 16, 17, 33, 784})
      for (int variant = 0; variant < 3; ++variant) {
        const Tensor w = test::random_tensor({rows, in}, seed++, DType::Float32);
        const Tensor x = test::random_tensor({in}, seed++, DType::Float32);
        const Tensor bias = test::random_tensor({rows}, seed++, DType::Float32);
        const Tensor res = test::random_tensor({rows}, seed++, DType::Float32);
        cpu::GemvEpilogue ep;
        if (variant >= 1) ep.bias = bias.data<float>(), ep.act = ops::Act::Relu;
        if (variant == 2)
          ep.residual = res.data<float>(), ep.act = ops::Act::LeakyRelu, ep.alpha = 0.1f;
        const auto wv = test::values(w), xv = test::values(x), bv = test::values(bias),
                   rv = test::values(res);
        std::vector<float> serial(static_cast<size_t>(rows), -7.0f);
        {
          std::thread([&] {  // no scope on this thread: one block, on it alone
            cpu::gemv_rows(w.data<float>(), x.data<float>(), serial.data(), rows, in, ep, 1);
          })
              .join();
        }
        for (int64_t chunk : {1, 2, 3, 5}) {
          SCOPED_TRACE(testing::Message()
                       << rows << "x" << in << " variant " << variant << " chunk " << chunk);
          std::vector<float> split(static_cast<size_t>(rows), -7.0f);
          cpu::gemv_rows(w.data<float>(), x.data<float>(), split.data(), rows, in, ep, chunk);
          for (int64_t r = 0; r < rows; ++r) {
            ASSERT_EQ(split[r], serial[r]) << "row " << r;
            double want = 0;
            for (int64_t k = 0; k < in; ++k) want += wv[r * in + k] * xv[k];
            if (ep.bias) want += bv[r];
            if (ep.residual) want += rv[r];
            if (ep.act == ops::Act::Relu) want = std::max(want, 0.0);
            if (ep.act == ops::Act::LeakyRelu && want < 0) want *= 0.1;
            ASSERT_NEAR(split[r], want, 1e-5 * (1 + std::abs(want)) * std::max<int64_t>(in, 1) / 8)
                << "row " << r;
          }
        }
      }
}

// Batch-1 float32 layers run the GEMV kernel: split from 256 KB of weights up
// to the serial-op limit, whole below; larger and batched ones keep the BLAS kernels.
TEST_F(HotRun, GemvKernelClaimsOnlyBatchOneLayersInItsWindow) {
  auto impl = [](const Shape& x, int64_t out, int64_t in) {
    return test::kernel_impl("linear", {Tensor::zeros(x), Tensor::zeros({out, in})});
  };
  EXPECT_TRUE(splits_when_hot(impl({1, 784}, 512, 784)));
  EXPECT_TRUE(splits_when_hot(impl({1, 3136}, 128, 3136)));
  EXPECT_EQ(impl({1, 512}, 10, 512), "gemv");  // 20 KB: one core is done first
  EXPECT_EQ(impl({512}, 10, 512), "gemv");
  EXPECT_EQ(impl({1, 1, 512}, 10, 512), "gemv");
  EXPECT_NE(impl({2, 784}, 512, 784).rfind("gemv", 0), 0u);     // not a GEMV
  EXPECT_NE(impl({0, 0}, 5, 0).rfind("gemv", 0), 0u);           // no row at all
  EXPECT_NE(impl({1, 1024}, 1024, 1024).rfind("gemv", 0), 0u);  // 4 MB: threaded BLAS
  EXPECT_FALSE(splits_when_hot("onednn"));
}

// linear and fused_linear through the kernel (eager, no hot run) against the
// float64 reference: odd sizes, 1-D and 3-D x, every epilogue it takes.
TEST_F(HotRun, GemvKernelMatchesReference) {
  uint32_t seed = 100;
  for (const auto& [x_shape, out] : std::vector<std::pair<Shape, int64_t>>{
           {{1, 1}, 1}, {{1, 7}, 3}, {{17}, 10}, {{1, 1, 33}, 129}, {{1, 0}, 4}, {{1, 300}, 301}}) {
    const int64_t in = x_shape.back();
    const Tensor x = test::random_tensor(x_shape, seed++, DType::Float32);
    const Tensor w = test::random_tensor({out, in}, seed++, DType::Float32);
    const Tensor b = test::random_tensor({out}, seed++, DType::Float32);
    Shape y_shape = x_shape;
    y_shape.back() = out;
    const Tensor r = test::random_tensor(y_shape, seed++, DType::Float32);
    SCOPED_TRACE(shape_str(x_shape) + " -> " + std::to_string(out));
    ASSERT_EQ(test::kernel_impl("linear", {x, w, b}).rfind("gemv", 0), 0u);
    EXPECT_LE(
        test::rel_diff(linear(x, w, b), test::values(test::run_reference("linear", {x, w, b}))),
        1e-5);
    EXPECT_LE(test::rel_diff(linear(x, w), test::values(test::run_reference("linear", {x, w}))),
              1e-5);
    for (const char* act : {"none", "relu", "leaky_relu"}) {
      const AttrMap attrs{{"base", std::string("linear")},
                          {"activation", std::string(act)},
                          {"alpha", 0.1},
                          {"has_bias", true},
                          {"has_residual", true}};
      const std::vector<Tensor> in_t{x, w, b, r};
      ASSERT_EQ(test::kernel_impl("fused_linear", in_t, attrs).rfind("gemv", 0), 0u);
      EXPECT_LE(test::rel_diff(apply1("fused_linear", in_t, attrs),
                               test::values(test::run_reference("fused_linear", in_t, attrs))),
                1e-5)
          << act;
    }
  }
}

// x [1, in] -> relu(linear(W1, b1)) -> relu(linear(W2)) -> linear(W3): W1 and W2
// are hot GEMVs (over 256 KB each), W3 is too small to split.
struct Mlp {
  Executable exe;
  Tensor x, want;  // want: eager float64 result
};

Mlp make_mlp(int64_t in, int64_t hidden, uint32_t seed) {
  const Tensor w1 = test::random_tensor({hidden, in}, seed, DType::Float32);
  const Tensor b1 = test::random_tensor({hidden}, seed + 1, DType::Float32);
  const Tensor w2 = test::random_tensor({hidden, hidden}, seed + 2, DType::Float32);
  const Tensor w3 = test::random_tensor({7, hidden}, seed + 3, DType::Float32);
  auto forward = [&](const Tensor& x, auto weight) {
    const Tensor h = relu(linear(x, weight(w1), weight(b1)));
    return linear(relu(linear(h, weight(w2))), weight(w3));
  };
  Graph g;
  g.output(forward(g.placeholder("x", {1, in}), [&](const Tensor& t) { return g.constant(t); }),
           "y");
  Mlp m{compile(g, "cpu"), test::random_tensor({1, in}, seed + 4, DType::Float32), Tensor()};
  m.want = forward(m.x.to(DType::Float64), [](const Tensor& t) { return t.to(DType::Float64); });
  return m;
}

TEST_F(HotRun, CompiledRunMatchesReferenceAndWorkersSleepAfterward) {
  Mlp m = make_mlp(301, 333, 11);
  EXPECT_NE(m.exe.explain().find(std::string("gemv") + kHotSplitSuffix), std::string::npos)
      << m.exe.explain();
  const auto want = test::values(m.want);
  const int64_t loans = worker_loans();
  for (int i = 0; i < 50; ++i) {
    const Tensor y = m.exe.run(std::vector<Tensor>{m.x})[0];
    ASSERT_LE(test::rel_diff(y, want), 1e-5);
  }
  // At most one loan per run: fewer when workers lingered from run to run, or
  // load feedback kept runs alone.
  EXPECT_LE(worker_loans() - loans, 50);
  EXPECT_EQ(worker_loans() > loans, hot_runs_enabled());
  EXPECT_TRUE(workers_asleep_within(1s)) << "a worker still lent a second after the runs";
  // Idle after the runs: a worker left spinning would burn the whole 300 ms;
  // the bound leaves room for other threads' wind-down on a loaded machine (an
  // OpenMP team's spin-wait, page faults): 48 ms was seen under CI load.
  std::this_thread::sleep_for(50ms);
  auto cpu_seconds = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  const double before = cpu_seconds();
  std::this_thread::sleep_for(300ms);
  EXPECT_LT(cpu_seconds() - before, 0.15);
}

// Runs back to back: the worker lingers between them and most runs take it
// without a new loan (a wake-up); a run long after the last one does not leave it
// lingering. A parallel_for gets a lingering worker back at once, and with no run
// it sleeps once the linger is over. (On a busy machine load feedback sends the
// worker to sleep now and then: a new loan for the run after.)
TEST_F(HotRun, WorkersLingerBetweenBackToBackRunsOnly) {
  if (!hot_runs_enabled()) GTEST_SKIP() << kNoWorker;
  set_hot_run_linger(std::chrono::microseconds(300ms));  // room for a loaded machine
  Mlp m = make_mlp(301, 333, 12);
  auto run = [&] { return m.exe.run(std::vector<Tensor>{m.x})[0]; };
  const Tensor want = run();
  ASSERT_TRUE(workers_asleep_within(1s)) << "a worker lingers past its deadline";
  std::this_thread::sleep_for(350ms);
  run();  // long after the last run: no linger
  EXPECT_EQ(lent_workers(), 0) << "a run long after the last one left its worker lingering";
  const int64_t loans = worker_loans();
  for (int i = 0; i < 20; ++i) {
    const Tensor y = run();
    for (int64_t k = 0; k < y.numel(); ++k) ASSERT_EQ(y.data<float>()[k], want.data<float>()[k]);
  }
  // Without lingering every run lends anew; load feedback costs at most one loan
  // per two runs.
  EXPECT_LE(worker_loans() - loans, 10) << "back-to-back runs did not find the worker lingering";
  for (int i = 0; i < 10 && lent_workers() == 0; ++i) run();
  if (lent_workers() == 0) GTEST_SKIP() << "load feedback keeps the worker asleep (busy machine)";
  std::mutex mu;
  std::set<std::thread::id> threads;
  parallel_for(4, 1, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(50ms);
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(threads.size(), 2u) << "the lingering worker did not serve the parallel_for";
  EXPECT_EQ(lent_workers(), 0);
  run();
  EXPECT_TRUE(workers_asleep_within(2s)) << "a worker lingers past its deadline";
}

// A stretch with one split step is not hot: the worker would arrive after it.
TEST_F(HotRun, StretchWithOneSplitStepLendsNoWorker) {
  const Tensor w = test::random_tensor({333, 301}, 5, DType::Float32);
  Graph g;
  g.output(relu(linear(g.placeholder("x", {1, 301}), g.constant(w))), "y");
  const Executable exe = compile(g, "cpu");
  ASSERT_NE(exe.explain().find(std::string("gemv") + kHotSplitSuffix), std::string::npos);
  const Tensor x = test::random_tensor({1, 301}, 6, DType::Float32);
  const int64_t loans = worker_loans();
  const Tensor y = exe.run(std::vector<Tensor>{x})[0];
  EXPECT_EQ(worker_loans(), loans);
  const auto want = test::values(relu(linear(x.to(DType::Float64), w.to(DType::Float64))));
  EXPECT_LE(test::rel_diff(y, want), 1e-5);
}

// Two executables from two threads, each run many times: every result equals its
// single-threaded result (the split is bit-identical to the serial GEMV), and
// both threads finish (a deadlock fails the test after a minute, not the suite).
TEST_F(HotRun, ConcurrentRunsOfTwoExecutablesStayCorrect) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    int finished = 0;
    std::atomic<int> mismatches{0};
    std::vector<Mlp> mlps;
    std::vector<Tensor> expected;
  };
  auto s = std::make_shared<Shared>();
  s->mlps.push_back(make_mlp(301, 333, 21));
  s->mlps.push_back(make_mlp(517, 300, 31));
  for (Mlp& m : s->mlps) {
    s->expected.push_back(m.exe.run(std::vector<Tensor>{m.x})[0]);
    EXPECT_LE(test::rel_diff(s->expected.back(), test::values(m.want)), 1e-5);
  }
  for (int t = 0; t < 2; ++t)
    std::thread([s, t] {
      const Mlp& m = s->mlps[t];
      const Tensor& want = s->expected[t];
      for (int i = 0; i < 2000; ++i) {
        const Tensor y = m.exe.run(std::vector<Tensor>{m.x})[0];
        for (int64_t k = 0; k < y.numel(); ++k)
          if (y.data<float>()[k] != want.data<float>()[k]) ++s->mismatches;
      }
      std::lock_guard<std::mutex> lock(s->mu);
      ++s->finished;
      s->cv.notify_all();
    }).detach();
  std::unique_lock<std::mutex> lock(s->mu);
  const bool done = s->cv.wait_for(lock, 60s, [&] { return s->finished == 2; });
  ASSERT_TRUE(done) << "concurrent runs did not finish within 60 s: deadlock";
  EXPECT_EQ(s->mismatches.load(), 0);
  EXPECT_TRUE(workers_asleep_within(1s));
}

}  // namespace
}  // namespace ds
