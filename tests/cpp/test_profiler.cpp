// The profiler: schedule state machine, self/total time arithmetic (golden table
// from a fake clock), caps, threads, and Chrome trace invariants on a real run.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "ds/compile.h"
#include "ds/ops.h"
#include "ds/profile.h"
#include "profiler_test_util.h"

namespace ds {
namespace {

using namespace profiler_test;

std::vector<std::string> names(const std::vector<ProfileEvent>& ev) {
  std::vector<std::string> n;
  for (const auto& e : ev) n.push_back(e.name);
  return n;
}

TEST(ProfilerSchedule, StateMachineFollowsWaitWarmupActiveRepeat) {
  using A = ProfilerAction;
  const ProfileSchedule s{1, 1, 2, 2};
  const std::vector<A> expected = {A::None,   A::Warmup, A::Record, A::RecordAndSave, A::None,
                                   A::Warmup, A::Record, A::RecordAndSave, A::None,   A::None};
  for (int step = 0; step < static_cast<int>(expected.size()); ++step)
    EXPECT_EQ(schedule_action(s, step), expected[step]) << "step " << step;
  // repeat = 0 cycles forever; active = 1 saves every step.
  EXPECT_EQ(schedule_action({0, 0, 1, 0}, 1000), A::RecordAndSave);
  EXPECT_EQ(schedule_action({2, 0, 1, 0}, 1000), A::None);  // 1000 % 3 == 1
  EXPECT_EQ(schedule_action({2, 0, 1, 0}, 1001), A::RecordAndSave);
  EXPECT_THROW(schedule_action({0, 0, 0, 0}, 0), ValueError);
  EXPECT_THROW(schedule_action({-1, 0, 1, 0}, 0), ValueError);
  EXPECT_STREQ(action_name(A::RecordAndSave), "record_and_save");
}

TEST(ProfilerSchedule, SavesOnlyActiveStepsOfEachCycle) {
  std::vector<std::vector<std::string>> saved;
  ProfilerOptions opt;
  opt.schedule = ProfileSchedule{1, 1, 2, 2};
  opt.on_trace_ready = [&](Profiler& p) { saved.push_back(names(p.events())); };
  Profiler prof(opt);
  for (int i = 0; i < 10; ++i) {
    { RecordFunction r("step" + std::to_string(i)); }
    prof.step();
  }
  EXPECT_FALSE(prof.recording());
  const std::vector<std::vector<std::string>> expected = {{"step2", "step3"}, {"step6", "step7"}};
  EXPECT_EQ(saved, expected);
  EXPECT_EQ(names(prof.events()), expected.back());
}

TEST(ProfilerSchedule, StopInsideActivePeriodKeepsThePartialPeriod) {
  int calls = 0;
  ProfilerOptions opt;
  opt.schedule = ProfileSchedule{0, 1, 3, 0};
  opt.on_trace_ready = [&](Profiler&) { ++calls; };
  Profiler prof(opt);
  for (int i = 0; i < 3; ++i) {
    { RecordFunction r("step" + std::to_string(i)); }
    prof.step();
  }
  prof.stop();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(names(prof.events()), (std::vector<std::string>{"step1", "step2"}));
}

TEST(ProfilerTable, GoldenFromFakeClock) {
  FakeClock clock;
  ProfilerOptions opt;
  opt.clock = clock.fn();
  TestOp op;
  Tensor kept;
  Profiler prof(opt);
  clock.now = 1000;
  {
    RecordFunction outer("outer");  // 1us .. 101us
    clock.now = 11000;
    {
      OpEventScope ev(op.ctx, op.kernel, op.types);  // 30us
      clock.now = 41000;
    }
    clock.now = 51000;
    {
      RecordFunction again("outer");  // recursive: 40us, not added to outer's total again
      clock.now = 61000;
      {
        OpEventScope ev(op.ctx, op.kernel, op.types);  // 20us, allocates 1 KiB kept alive
        kept = Tensor::empty({256}, DType::Float32);
        clock.now = 81000;
      }
      clock.now = 91000;
    }
    clock.now = 101000;
  }
  prof.stop();
  // outer self = (100 - 30 - 40) + (40 - 20) = 50us; op = 30 + 20 = 50us with
  // 4e6 FLOPs and 8e6 bytes in 50us: 80 GFLOP/s, 160 GB/s.
  const std::string expected =
      "----------------------------------------------------------------------------------------------------------------\n"
      "Name              Self time  Self %  Total time  Total %  Calls       Avg  GFLOP/s     GB/s     Bytes   Self mem\n"
      "----------------------------------------------------------------------------------------------------------------\n"
      "outer              50.000us  50.00%   100.000us  100.00%      2  50.000us        -        -         -        0 B\n"
      "profiler_test_op   50.000us  50.00%    50.000us   50.00%      2  25.000us   80.000  160.000  7.63 MiB  +1.00 KiB\n"
      "----------------------------------------------------------------------------------------------------------------\n"
      "Self time total: 100.000us\n";
  EXPECT_EQ(prof.key_averages().table("self_time", 10), expected);
  const auto rows = prof.key_averages().rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].total_ns, 100000);
  EXPECT_EQ(rows[1].self_mem, 1024);
}

TEST(ProfilerTable, SortRowLimitAndShapeGrouping) {
  FakeClock clock;
  ProfilerOptions opt;
  opt.clock = clock.fn();
  opt.record_shapes = true;
  opt.profile_memory = false;
  TestOp small, big({64, 64});
  Profiler prof(opt);
  for (int i = 0; i < 3; ++i) {
    OpEventScope ev(small.ctx, small.kernel, small.types);
    clock.now += 100;
  }
  {
    OpEventScope ev(big.ctx, big.kernel, big.types);
    clock.now += 1000;
  }
  prof.stop();
  const auto by_shape = prof.key_averages("shape").rows();
  ASSERT_EQ(by_shape.size(), 2u);
  EXPECT_EQ(by_shape[0].shapes, "float32[2, 3]");
  EXPECT_EQ(by_shape[0].calls, 3);
  EXPECT_EQ(by_shape[1].shapes, "float32[64, 64]");
  EXPECT_EQ(prof.key_averages("op").rows().size(), 1u);
  const std::string t = prof.key_averages("shape").table("calls", 1);
  EXPECT_NE(t.find("float32[2, 3]"), std::string::npos);
  EXPECT_EQ(t.find("float32[64, 64]"), std::string::npos);
  EXPECT_NE(t.find("(1 more rows not shown)"), std::string::npos);
  EXPECT_THROW(prof.key_averages("kernel"), ValueError);
  try {
    (void)prof.key_averages().table("cuda_time");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("self_time, total_time"), std::string::npos);
  }
}

// Random nesting: self times add up to the roots' wall time exactly once.
void random_tree(FakeClock& clock, std::mt19937& rng, int depth, int& count) {
  std::uniform_int_distribution<int> gap(0, 50), children(0, 3);
  static const char* labels[] = {"a", "b", "c"};
  RecordFunction r(labels[rng() % 3]);
  ++count;
  clock.now += gap(rng);
  const int n = depth < 4 ? children(rng) : 0;
  for (int i = 0; i < n; ++i) {
    random_tree(clock, rng, depth + 1, count);
    clock.now += gap(rng);
  }
}

TEST(ProfilerTable, SelfTimeIsNeverDoubleCounted) {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    FakeClock clock;
    ProfilerOptions opt;
    opt.clock = clock.fn();
    std::mt19937 rng(seed);
    Profiler prof(opt);
    int count = 0;
    for (int root = 0; root < 3; ++root) random_tree(clock, rng, 0, count);
    prof.stop();
    int64_t roots = 0, self = 0;
    for (const auto& e : prof.events())
      if (e.parent < 0) roots += e.duration_ns();
    const KeyAverages averages = prof.key_averages();
    for (const auto& r : averages.rows()) {
      self += r.self_ns;
      EXPECT_GE(r.self_ns, 0);
      EXPECT_LE(r.self_ns, r.total_ns) << r.name;
      EXPECT_LE(r.total_ns, roots) << r.name;  // recursion is not counted twice
    }
    EXPECT_EQ(static_cast<int>(prof.events().size()), count);
    EXPECT_EQ(self, roots) << "seed " << seed;
  }
}

TEST(Profiler, OnlyOneRecordsAtATimeAndEventsComeAfterStop) {
  Profiler prof;
  EXPECT_THROW(Profiler second, ValueError);
  EXPECT_THROW(prof.events(), ValueError);
  prof.stop();
  EXPECT_NO_THROW(prof.events());
  Profiler next;  // a stopped profiler no longer holds the recorder
  { RecordFunction r("next"); }
  next.stop();
  EXPECT_EQ(names(next.events()), std::vector<std::string>{"next"});
  EXPECT_TRUE(prof.events().empty());
}

TEST(Profiler, RangesOutsideAProfilerRecordNothing) {
  { RecordFunction r("before"); }
  Profiler prof;
  { RecordFunction r("during"); }
  prof.stop();
  { RecordFunction r("after"); }
  EXPECT_EQ(names(prof.events()), std::vector<std::string>{"during"});
}

TEST(Profiler, UnfinishedEventsAreLeftOutAndTheirChildrenMoveUp) {
  std::optional<RecordFunction> open;
  Profiler prof;
  open.emplace("open");
  { RecordFunction r("closed"); }
  prof.stop();
  open.reset();  // ends after the recording: ignored
  ASSERT_EQ(names(prof.events()), std::vector<std::string>{"closed"});
  EXPECT_EQ(prof.events()[0].parent, -1);
}

TEST(Profiler, CapDropsEventsAndMarksTheTraceTruncated) {
  ProfilerOptions opt;
  opt.max_events = 5;
  Profiler prof(opt);
  for (int i = 0; i < 20; ++i) RecordFunction r("r");
  prof.stop();
  EXPECT_EQ(prof.events().size(), 5u);
  EXPECT_EQ(prof.dropped_events(), 15);
  const json trace = json::parse(prof.chrome_trace());
  EXPECT_TRUE(trace["otherData"]["truncated"].get<bool>());
  EXPECT_EQ(trace["otherData"]["dropped_events"].get<int64_t>(), 15);
  int markers = 0;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "i" && e["name"].get<std::string>().rfind("TRUNCATED", 0) == 0) ++markers;
  EXPECT_EQ(markers, 1);
  EXPECT_NE(prof.key_averages().table().find("15 events were dropped"), std::string::npos);
}

TEST(Profiler, EachThreadGetsItsOwnTrackAndNesting) {
  Profiler prof;
  auto work = [](const std::string& tag) {
    pthread_setname_np(pthread_self(), ("ds-" + tag).c_str());
    RecordFunction outer(tag);
    for (int i = 0; i < 3; ++i) RecordFunction inner(tag + "/inner");
  };
  std::thread t1(work, "t1"), t2(work, "t2");
  t1.join();
  t2.join();
  prof.stop();
  const auto& ev = prof.events();
  ASSERT_EQ(ev.size(), 8u);  // the threads have exited: their events are kept
  std::map<std::string, int> thread_of;
  for (const auto& e : ev) {
    if (e.parent >= 0) {
      EXPECT_EQ(ev[e.parent].thread, e.thread);
      EXPECT_EQ(ev[e.parent].name + "/inner", e.name);
    }
    thread_of[e.name] = e.thread;
  }
  EXPECT_NE(thread_of["t1"], thread_of["t2"]);
  // The trace names each track after its OS thread.
  std::map<int, std::string> track_names;
  const json trace = json::parse(prof.chrome_trace());
  for (const auto& e : trace["traceEvents"])
    if (e["name"] == "thread_name") track_names[e["tid"].get<int>()] = e["args"]["name"];
  EXPECT_EQ(track_names[thread_of["t1"]], "ds-t1 (CPU thread " + std::to_string(thread_of["t1"]) + ")");
  EXPECT_EQ(track_names[thread_of["t2"]], "ds-t2 (CPU thread " + std::to_string(thread_of["t2"]) + ")");
}

TEST(Profiler, RecordingsStartAndStopWhileThreadsRecord) {
  std::atomic<bool> done{false};
  auto work = [&](int t) {
    const std::string outer = "outer" + std::to_string(t), inner = "inner" + std::to_string(t);
    while (!done.load()) {
      RecordFunction a(outer);
      RecordFunction b(inner);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(work, t);
  ProfilerOptions opt;
  opt.max_events = 5000;  // the cap is hit concurrently too
  // Rounds go on until the workers were caught recording (they may start late on
  // a loaded machine), within a time bound.
  int64_t worker_events = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int round = 0; round < 20 || (worker_events < 1000 && std::chrono::steady_clock::now() < give_up);
       ++round) {
    Profiler prof(opt);
    for (int i = 0; i < 200; ++i) RecordFunction main_range("outer-main");
    prof.stop();
    const auto& ev = prof.events();
    for (const auto& e : ev) {
      if (e.name != "outer-main") ++worker_events;
      EXPECT_GE(e.duration_ns(), 0);
      if (e.parent < 0) continue;
      // A child is the inner range of the same thread, inside its parent.
      const ProfileEvent& p = ev[e.parent];
      EXPECT_EQ(p.thread, e.thread);
      EXPECT_EQ("inner" + p.name.substr(5), e.name);  // "outerN" -> "innerN"
      EXPECT_LE(p.start_ns, e.start_ns);
      EXPECT_GE(p.end_ns, e.end_ns);
    }
  }
  done = true;
  for (auto& t : threads) t.join();
  EXPECT_GE(worker_events, 1000);
}

// ---- Chrome trace invariants on a real graph run --------------------------------

TEST(ProfilerTrace, RealGraphRunIsValidNestedAndEscaped) {
  Graph g;
  Tensor x = g.placeholder("x", {4, 8});
  Tensor w = g.constant(Tensor::full({8, 16}, 0.5));
  Tensor y = g.relu(g.matmul(x, w));
  g.output(add(y, y), "out");
  Executable exe = compile(g, "cpu");
  const std::string tricky = "step \"one\" \\ two\n\ttab \x01 \xe2\x9c\x93";
  ProfilerOptions opt;
  opt.record_shapes = true;
  Profiler prof(opt);
  for (int i = 0; i < 2; ++i) {
    RecordFunction step(tricky);
    exe.run(std::vector<Tensor>{Tensor::full({4, 8}, 1.0)});
  }
  prof.stop();
  const auto path = std::filesystem::temp_directory_path() / "ds_profiler_trace_test.json";
  prof.export_chrome_trace(path.string());
  std::ifstream f(path);
  const json trace = json::parse(f);  // throws on invalid JSON
  std::filesystem::remove(path);
  check_trace_invariants(trace);

  // The kernels that run follow the compiler's passes (fusion may merge ops), so
  // the expectations come from the executable itself.
  std::multiset<std::string> kernel_ops;
  for (const Node& n : exe.graph().nodes())
    if (!n.op->has(kSource)) kernel_ops.insert(n.op->name);
  std::map<std::string, int> count;
  int op_events = 0;
  bool memory_counter = false;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "X") ++count[e["name"].get<std::string>()];
    if (e["ph"] == "C" && e["name"] == "memory") memory_counter = true;
    if (e["ph"] != "X" || e["cat"] != "op") continue;
    ++op_events;
    EXPECT_TRUE(kernel_ops.count(e["name"].get<std::string>())) << e.dump();
    EXPECT_FALSE(e["args"]["impl"].get<std::string>().empty());
    EXPECT_FALSE(e["args"]["input_shapes"].get<std::string>().empty());
    if (e["name"] == "matmul") {
      EXPECT_EQ(e["args"]["flops"].get<double>(), 2.0 * 4 * 8 * 16);
      EXPECT_EQ(e["args"]["input_shapes"], "float32[4, 8], float32[8, 16]");
    }
  }
  EXPECT_EQ(count[tricky], 2);  // the escaped name round-trips exactly
  EXPECT_EQ(count["Executable.run"], 2);
  EXPECT_EQ(op_events, 2 * exe.stats().kernels);
  EXPECT_TRUE(memory_counter);
  EXPECT_FALSE(trace["otherData"]["truncated"].get<bool>());

  // Op events nest in the run, the run in the user range.
  const auto& ev = prof.events();
  for (const auto& e : ev) {
    if (e.kind != EventKind::Op) continue;
    ASSERT_GE(e.parent, 0);
    EXPECT_EQ(ev[e.parent].name, "Executable.run");
    EXPECT_EQ(ev[ev[e.parent].parent].name, tricky);
    EXPECT_FALSE(e.node.empty());
  }
}

}  // namespace
}  // namespace ds
