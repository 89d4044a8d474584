// Device (GPU) times in the profiler: the merge of a device timer's spans into
// ops, tables and traces (CPU-side, with a fake timer), CUPTI's claim and its
// fallback behind a fake function table, and real CUDA ops (Cuda*: skipped
// without a GPU).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>

#include "ds/compile.h"
#include "ds/cuda.h"
#include "ds/ops.h"
#include "ds/profile.h"
#include "profiler_test_util.h"
#include "tools/cuda_timing.h"

namespace ds {
namespace {

using namespace profiler_test;

// Hands out ids from 100 (so a mix-up with event indices shows) and returns
// the spans the test queued, whose `op` are those ids.
struct FakeTimer : DeviceTimer {
  std::string kind() const override { return "fake"; }
  void start(const ProfileClock&) override { ++starts; }
  int64_t begin_op(int device) override {
    devices.push_back(device);
    return next_id++;
  }
  void end_op(int64_t id) override { ended.push_back(id); }
  std::vector<DeviceActivity> collect() override {
    ++collects;
    if (fail) throw std::runtime_error("device lost");
    return std::exchange(queued, {});
  }
  std::string warning() const override { return note; }

  void queue(std::string name, int64_t stream, int64_t start_us, int64_t end_us, int64_t op) {
    queued.push_back({std::move(name), 0, stream, start_us * 1000, end_us * 1000, op});
  }
  int64_t next_id = 100;
  std::vector<int> devices;
  std::vector<int64_t> ended;
  std::vector<DeviceActivity> queued;
  int starts = 0, collects = 0;
  bool fail = false;
  std::string note;
};

json trace_of(const Profiler& prof) {
  const json trace = json::parse(prof.chrome_trace());  // throws on invalid JSON
  check_trace_invariants(trace);
  return trace;
}

// step [0, 100us]: a GPU op at 10-20us whose two kernels run at 30-50 and
// 50-60us on stream 7, a CPU op at 30-40us, the GPU op again at 50-60us with a
// kernel at 70-90us; a copy at 0-5us launched outside any op.
struct GpuScenario {
  FakeClock clock;
  std::shared_ptr<FakeTimer> timer = std::make_shared<FakeTimer>();
  TestOp op;
  std::unique_ptr<Profiler> prof;

  GpuScenario() {
    ProfilerOptions opt;
    opt.clock = clock.fn();
    opt.device_timer = timer;
    opt.profile_memory = false;
    prof = std::make_unique<Profiler>(opt);
    {
      RecordFunction step("step");
      auto at = [&](int64_t us) { clock.now = us * 1000; };
      at(10);
      { OpEventScope gpu(op.ctx, op.kernel, op.types, 0); at(20); }
      at(30);
      { OpEventScope cpu(op.ctx, op.kernel, op.types); at(40); }
      at(50);
      { OpEventScope gpu(op.ctx, op.kernel, op.types, 0); at(60); }
      at(100);
    }
    timer->queue("gemm_kernel", 7, 30, 50, 100);
    timer->queue("bias_kernel", 7, 50, 60, 100);
    timer->queue("", 7, 70, 90, 101);
    timer->queue("Memcpy HtoD", 3, 0, 5, -1);
    prof->stop();
  }
};

TEST(ProfilerDevice, SpansMergeIntoTheirOpsAndTheTable) {
  GpuScenario s;
  EXPECT_EQ(s.timer->devices, (std::vector<int>{0, 0}));  // only the GPU ops
  EXPECT_EQ(s.timer->ended, (std::vector<int64_t>{100, 101}));
  EXPECT_EQ(s.timer->starts, 1);
  EXPECT_EQ(s.timer->collects, 1);
  const auto& ev = s.prof->events();
  std::vector<int64_t> device_ns;
  for (const auto& e : ev)
    if (e.kind == EventKind::Op) device_ns.push_back(e.device >= 0 ? e.device_ns : -1);
  EXPECT_EQ(device_ns, (std::vector<int64_t>{30000, -1, 20000}));
  // Sorted by stream; a span with no name takes its op's; the copy has no op.
  const auto& acts = s.prof->device_activities();
  ASSERT_EQ(acts.size(), 4u);
  EXPECT_EQ(acts[0].name, "Memcpy HtoD");
  EXPECT_EQ(acts[0].op, -1);
  EXPECT_EQ(acts[3].name, "profiler_test_op");
  EXPECT_EQ(ev[acts[1].op].start_ns, 10000);
  EXPECT_EQ(ev[acts[3].op].start_ns, 50000);

  // Host: op 30us self in 3 calls, step 70us. Device: op 50us self; the step's
  // total holds its ops' 50us. GFLOP/s and GB/s of the op are per device time
  // (6e6 FLOPs / 50us), of the step (no FLOPs) none.
  const std::string expected =
      "---------------------------------------------------------------------------------------------------------------------------------------------------------------\n"
      "Name              Self time  Self %  Total time  Total %  Calls        Avg  Self CUDA  Self CUDA %  CUDA total  CUDA avg  GFLOP/s     GB/s      Bytes  Self mem\n"
      "---------------------------------------------------------------------------------------------------------------------------------------------------------------\n"
      "step               70.000us  70.00%   100.000us  100.00%      1  100.000us        0ns        0.00%    50.000us  50.000us        -        -          -       0 B\n"
      "profiler_test_op   30.000us  30.00%    30.000us   30.00%      3   10.000us   50.000us      100.00%    50.000us  16.666us  120.000  240.000  11.44 MiB       0 B\n"
      "---------------------------------------------------------------------------------------------------------------------------------------------------------------\n"
      "Self time total: 100.000us\n"
      "Self CUDA time total: 50.000us\n"
      "Device times: fake\n";
  EXPECT_EQ(s.prof->key_averages().table("self_time", 10), expected);
  const auto rows = s.prof->key_averages().rows();
  EXPECT_EQ(rows[0].device_total_ns, 50000);
  EXPECT_EQ(rows[0].self_device_ns, 0);
  EXPECT_EQ(rows[1].self_device_ns, 50000);
  // The CUDA sort keys order by device time.
  const std::string by_cuda = s.prof->key_averages().table("self_cuda", 1);
  EXPECT_NE(by_cuda.find("profiler_test_op"), std::string::npos);
  EXPECT_EQ(by_cuda.find("\nstep "), std::string::npos);
}

TEST(ProfilerDevice, TraceHasAStreamTrackPerStreamLinkedToOps) {
  GpuScenario s;
  const json trace = trace_of(*s.prof);
  const int64_t cpu_pid = trace["traceEvents"][0]["pid"].get<int64_t>();
  std::map<int64_t, std::string> process_names;
  std::map<int64_t, std::string> stream_names;  // tid -> name, GPU process
  std::vector<json> kernels, flow_starts, flow_ends;
  for (const auto& e : trace["traceEvents"]) {
    const int64_t pid = e["pid"].get<int64_t>();
    if (e["ph"] == "M" && e["name"] == "process_name") process_names[pid] = e["args"]["name"];
    if (e["ph"] == "M" && e["name"] == "thread_name" && pid != cpu_pid)
      stream_names[e["tid"].get<int64_t>()] = e["args"]["name"];
    if (e["ph"] == "X" && e["cat"] == "kernel") kernels.push_back(e);
    if (e["ph"] == "s") flow_starts.push_back(e);
    if (e["ph"] == "f") flow_ends.push_back(e);
  }
  ASSERT_EQ(process_names.size(), 2u);  // this process and GPU 0
  int64_t gpu_pid = 0;
  for (const auto& [pid, name] : process_names)
    if (pid != cpu_pid) {
      gpu_pid = pid;
      EXPECT_EQ(name, "GPU 0 (cuda:0)");
    }
  EXPECT_EQ(stream_names, (std::map<int64_t, std::string>{{3, "stream 3"}, {7, "stream 7"}}));
  ASSERT_EQ(kernels.size(), 4u);
  for (const auto& k : kernels) {
    EXPECT_EQ(k["pid"].get<int64_t>(), gpu_pid);
    EXPECT_EQ(k["args"].contains("op"), k["name"] != "Memcpy HtoD") << k.dump();
  }
  EXPECT_EQ(kernels[1]["name"], "gemm_kernel");
  EXPECT_EQ(kernels[1]["args"]["op"], "profiler_test_op");
  EXPECT_EQ(to_ns(kernels[1]["ts"]), 30000);
  EXPECT_EQ(to_ns(kernels[1]["dur"]), 20000);
  // One flow per linked span: from its op's start on the CPU thread to the span.
  ASSERT_EQ(flow_starts.size(), 3u);
  ASSERT_EQ(flow_ends.size(), 3u);
  EXPECT_EQ(flow_starts[0]["pid"].get<int64_t>(), cpu_pid);
  EXPECT_EQ(to_ns(flow_starts[0]["ts"]), 10000);
  EXPECT_EQ(to_ns(flow_starts[2]["ts"]), 50000);
  EXPECT_EQ(flow_ends[0]["pid"].get<int64_t>(), gpu_pid);
  EXPECT_EQ(flow_ends[0]["tid"], 7);
  EXPECT_EQ(to_ns(flow_ends[2]["ts"]), 70000);
  // The GPU op's own event carries its device time.
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "X" && e["cat"] == "op" && e["args"].contains("device")) {
      EXPECT_GT(e["args"]["device_ns"].get<int64_t>(), 0);
    }
  }
}

TEST(ProfilerDevice, OverlapsOnAStreamAreTrimmedOtherStreamsKept) {
  FakeClock clock;
  auto timer = std::make_shared<FakeTimer>();
  TestOp op;
  ProfilerOptions opt;
  opt.clock = clock.fn();
  opt.device_timer = timer;
  Profiler prof(opt);
  { OpEventScope a(op.ctx, op.kernel, op.types, 0); clock.now = 1000; }
  { OpEventScope b(op.ctx, op.kernel, op.types, 0); clock.now = 2000; }
  timer->queue("a", 1, 10, 30, 100);
  timer->queue("b", 1, 25, 40, 101);  // rounded event times: starts before `a` ends
  timer->queue("c", 2, 20, 35, 101);  // another stream runs concurrently
  timer->queue("d", 1, 50, 45, 101);  // ends before it starts: empty
  prof.stop();
  const auto& acts = prof.device_activities();
  ASSERT_EQ(acts.size(), 4u);
  EXPECT_EQ(acts[1].name, "b");
  EXPECT_EQ(acts[1].start_ns, 30000);
  EXPECT_EQ(acts[1].end_ns, 40000);
  EXPECT_EQ(acts[2].duration_ns(), 0);
  EXPECT_EQ(acts[3].start_ns, 20000);
  EXPECT_EQ(prof.events()[1].device_ns, 10000 + 0 + 15000);
  trace_of(prof);
}

TEST(ProfilerDevice, TimerIsIdleWhenOffAndUnendedOpsAreLeftOut) {
  auto timer = std::make_shared<FakeTimer>();
  TestOp op;
  {
    OpEventScope before(op.ctx, op.kernel, op.types, 0);  // no profiler yet
  }
  ProfilerOptions opt;
  opt.device_timer = timer;
  Profiler prof(opt);
  std::optional<OpEventScope> open;
  open.emplace(op.ctx, op.kernel, op.types, 0);
  timer->queue("k", 0, 1, 2, 100);
  timer->queue("stray", 0, 3, 4, 555);  // an id the profiler never handed out
  prof.stop();
  open.reset();  // ends after the recording: the timer is not called
  EXPECT_EQ(timer->devices.size(), 1u);
  EXPECT_TRUE(timer->ended.empty());
  EXPECT_TRUE(prof.events().empty());
  ASSERT_EQ(prof.device_activities().size(), 2u);
  for (const auto& a : prof.device_activities()) EXPECT_EQ(a.op, -1);
}

TEST(ProfilerDevice, EachScheduledPeriodIsCollectedAtItsStep) {
  auto timer = std::make_shared<FakeTimer>();
  TestOp op;
  ProfilerOptions opt;
  opt.device_timer = timer;
  opt.schedule = ProfileSchedule{0, 1, 1, 1};  // warmup, active
  std::vector<size_t> ready;
  opt.on_trace_ready = [&](Profiler& p) { ready.push_back(p.device_activities().size()); };
  Profiler prof(opt);
  for (int step = 0; step < 3; ++step) {
    { OpEventScope gpu(op.ctx, op.kernel, op.types, 0); }
    timer->queue("k", 0, step * 10, step * 10 + 5, timer->next_id - 1);
    prof.step();
  }
  prof.stop();
  EXPECT_EQ(timer->collects, 2);  // the warmup's spans are collected and dropped
  EXPECT_EQ(ready, (std::vector<size_t>{1}));
}

TEST(ProfilerDevice, AFailedCollectKeepsTheHostProfileAndWarns) {
  auto timer = std::make_shared<FakeTimer>();
  timer->fail = true;
  TestOp op;
  ProfilerOptions opt;
  opt.device_timer = timer;
  Profiler prof(opt);
  { OpEventScope gpu(op.ctx, op.kernel, op.types, 0); }
  prof.stop();
  EXPECT_EQ(prof.events().size(), 1u);
  EXPECT_TRUE(prof.device_activities().empty());
  EXPECT_EQ(prof.device_timer_warning(), "device times lost: device lost");
  EXPECT_NE(prof.key_averages().table().find("Device times: fake (device times lost: device lost)"),
            std::string::npos);
}

// ---- CUPTI's claim behind a fake function table ---------------------------------

struct FakeCupti {
  int subscribe_result = 0;
  int failing_kind = -1;
  bool subscribed = false;
  std::set<int> enabled;
};
FakeCupti g_cupti;

CuptiApi fake_cupti_api() {
  CuptiApi api;
  api.subscribe = [](void** s, void (*)(void*, int, uint32_t, const void*), void*) {
    if (g_cupti.subscribe_result != 0) return g_cupti.subscribe_result;
    *s = &g_cupti;
    g_cupti.subscribed = true;
    return 0;
  };
  api.unsubscribe = [](void* s) {
    EXPECT_EQ(s, &g_cupti);
    g_cupti.subscribed = false;
    return 0;
  };
  api.register_callbacks = [](void (*)(uint8_t**, size_t*, size_t*),
                              void (*)(void*, uint32_t, uint8_t*, size_t, size_t)) { return 0; };
  api.activity_enable = [](int kind) {
    if (kind == g_cupti.failing_kind) return 1;
    g_cupti.enabled.insert(kind);
    return 0;
  };
  api.activity_disable = [](int kind) {
    g_cupti.enabled.erase(kind);
    return 0;
  };
  api.get_result_string = [](int r, const char** s) {
    *s = r == 39 ? "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED" : "CUPTI_ERROR_INVALID_PARAMETER";
    return 0;
  };
  return api;
}

void require_cuda_build() {
  if (!cuda::built_with_cuda()) GTEST_SKIP() << "this build has no CUDA backend";
}

TEST(ProfilerCupti, AnotherSubscriberMeansEventsWithAWarning) {
  require_cuda_build();
  if (IsSkipped()) return;
  g_cupti = {};
  g_cupti.subscribe_result = 39;
  void* sub = nullptr;
  const std::string w = claim_cupti(fake_cupti_api(), &sub);
  EXPECT_NE(w.find("cuptiSubscribe failed with CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"),
            std::string::npos) << w;
  EXPECT_NE(w.find("another profiling tool"), std::string::npos) << w;
  EXPECT_NE(w.find("CUDA events"), std::string::npos) << w;
  EXPECT_TRUE(g_cupti.enabled.empty());
}

TEST(ProfilerCupti, AFailedEnableUndoesTheClaim) {
  require_cuda_build();
  if (IsSkipped()) return;
  g_cupti = {};
  g_cupti.failing_kind = 10;  // CONCURRENT_KERNEL, after three others
  void* sub = nullptr;
  const std::string w = claim_cupti(fake_cupti_api(), &sub);
  EXPECT_NE(w.find("cuptiActivityEnable failed"), std::string::npos) << w;
  EXPECT_TRUE(g_cupti.enabled.empty());
  EXPECT_FALSE(g_cupti.subscribed);
}

TEST(ProfilerCupti, ClaimEnablesKernelsCopiesAndCorrelationReleaseUndoesIt) {
  require_cuda_build();
  if (IsSkipped()) return;
  g_cupti = {};
  const CuptiApi api = fake_cupti_api();
  void* sub = nullptr;
  EXPECT_EQ(claim_cupti(api, &sub), "");
  EXPECT_TRUE(g_cupti.subscribed);
  // memcpy, memset, driver and runtime API (their records carry the correlation), kernel, correlation
  EXPECT_EQ(g_cupti.enabled, (std::set<int>{1, 2, 4, 5, 10, 39}));
  release_cupti(api, sub);
  EXPECT_TRUE(g_cupti.enabled.empty());
  EXPECT_FALSE(g_cupti.subscribed);
}

// ---- real CUDA ops ----------------------------------------------------------------

void require_gpu() {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
}

// Profiles three runs of (a @ b) + c on cuda:0 and checks the device side.
void profile_matmul_add(const std::shared_ptr<DeviceTimer>& timer, const std::string& kind) {
  Graph g;
  Tensor a = g.placeholder("a", {256, 512}), b = g.placeholder("b", {512, 384});
  Tensor c = g.placeholder("c", {256, 384});
  g.output(add(matmul(a, b), c), "y");
  Executable exe = compile(g, "cuda", {.opt_level = 0});
  const std::vector<Tensor> feeds = {random_uniform({256, 512}, 1), random_uniform({512, 384}, 2),
                                     random_uniform({256, 384}, 3)};
  exe.run(feeds);  // warm: kernels compiled, memory cached
  ProfilerOptions opt;
  opt.device_timer = timer;
  Profiler prof(opt);
  for (int i = 0; i < 3; ++i) exe.run(feeds);
  prof.stop();
  EXPECT_EQ(prof.device_timer_kind(), kind) << prof.device_timer_warning();
  std::set<std::string> timed;
  for (const auto& e : prof.events()) {
    if (e.kind != EventKind::Op || e.device < 0) continue;
    EXPECT_EQ(e.device, 0);
    EXPECT_GT(e.device_ns, 0) << e.name << " " << e.impl;
    timed.insert(e.name);
  }
  EXPECT_TRUE(timed.count("matmul") && timed.count("add")) << ::testing::PrintToString(timed);
  std::set<std::string> span_names;
  for (const auto& s : prof.device_activities()) {
    EXPECT_GE(s.duration_ns(), 0);
    span_names.insert(s.name);
    if (s.op >= 0) {
      EXPECT_EQ(prof.events()[s.op].device, 0);
    }
  }
  // CUPTI names real kernels; events name the op.
  if (kind == "cupti") {
    EXPECT_GT(span_names.size(), 2u) << ::testing::PrintToString(span_names);
  }
  const KeyAverages averages = prof.key_averages();
  for (const auto& r : averages.rows()) {
    if (r.name == "matmul") {
      EXPECT_GT(r.device_total_ns, 0);
    }
  }
  const json trace = trace_of(prof);
  bool stream_track = false;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "thread_name" &&
        e["args"]["name"].get<std::string>().rfind("stream ", 0) == 0)
      stream_track = true;
  EXPECT_TRUE(stream_track);
  std::printf("%s", prof.key_averages().table("self_cuda", 8).c_str());
}

TEST(CudaProfiler, EventsTimeMatmulAndAddOnTheirStream) {
  require_gpu();
  if (IsSkipped()) return;
  profile_matmul_add(make_cuda_event_timer(), "cuda-events");
}

TEST(CudaProfiler, CuptiTimesKernelsOfMatmulAndAdd) {
  require_gpu();
  if (IsSkipped()) return;
  std::string why;
  auto api = load_cupti(why);
  if (!api) GTEST_SKIP() << why;
  // Under a tool that holds CUPTI (compute-sanitizer, Nsight) this is the
  // fallback's case, tested below.
  void* probe = nullptr;
  const std::string refused = claim_cupti(*api, &probe);
  if (!refused.empty()) GTEST_SKIP() << refused;
  release_cupti(*api, probe);
  profile_matmul_add(make_cuda_timer(api, ""), "cupti");
}

TEST(CudaProfiler, EagerOpsOnCudaTensorsGetDeviceTimes) {
  require_gpu();
  if (IsSkipped()) return;
  const Tensor a = random_uniform({128, 256}, 1).to(Device::cuda());
  const Tensor b = random_uniform({256, 64}, 2).to(Device::cuda());
  const Tensor c = random_uniform({128, 64}, 3).to(Device::cuda());
  (void)add(matmul(a, b), c);  // warm-up
  ProfilerOptions opt;
  opt.device_timer = make_cuda_event_timer();
  Profiler prof(opt);
  const Tensor y = add(matmul(a, b), c);
  prof.stop();
  std::set<std::string> timed;
  for (const auto& e : prof.events())
    if (e.kind == EventKind::Op && e.device == 0 && e.device_ns > 0) timed.insert(e.name);
  EXPECT_TRUE(timed.count("matmul") && timed.count("add")) << ::testing::PrintToString(timed);
  EXPECT_EQ(y.device(), Device::cuda());
}

TEST(CudaProfiler, CuptiHeldByAnotherToolFallsBackToEvents) {
  require_gpu();
  if (IsSkipped()) return;
  std::string why;
  auto api = load_cupti(why);
  if (!api) GTEST_SKIP() << why;
  void* other = nullptr;
  if (api->subscribe(&other, [](void*, int, uint32_t, const void*) {}, nullptr) != 0)
    GTEST_SKIP() << "CUPTI is held by another tool already";
  auto timer = make_cuda_timer(api, "");
  profile_matmul_add(timer, "cuda-events");
  EXPECT_NE(timer->warning().find("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"),
            std::string::npos) << timer->warning();
  api->unsubscribe(other);
}

}  // namespace
}  // namespace ds
