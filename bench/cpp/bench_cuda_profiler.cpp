// The profiler's cost per CUDA op, off vs on side by side in one process: a
// compiled chain of small adds on cuda:0 (launch-bound, so the per-op hooks
// show), run with the profiler off, on with CUDA events, and on with CUPTI;
// the blocks alternate and each keeps its median. Also the cost of stop()
// (where device times are resolved) and the profile of one run.
//
//   c++ -std=c++20 -O2 bench/cpp/bench_cuda_profiler.cpp -Iinclude -Isrc
//       -L<build> -ldeepseek -Wl,-rpath,<build> -o ds_bench_cuda_profiler
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ds/compile.h"
#include "cuda_bench.h"
#include "ds/cuda.h"
#include "ds/ops.h"
#include "ds/profile.h"
#include "tools/cuda_timing.h"

using namespace ds;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double ns_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

}  // namespace

int main() {
  if (!ds_bench::has_device()) return 0;
  constexpr int kOps = 64, kIters = 50, kRounds = 15;
  Graph g;
  Tensor x = g.placeholder("x", {4096});
  Tensor y = x;
  for (int i = 0; i < kOps; ++i) y = add(y, x);
  g.output(y, "y");
  // unfused: one kernel per add. Replayed as a CUDA graph when not profiled: that
  // is the "graph" line; the profiled lines and "off" run step by step.
  Executable graph_exe = compile(g, "cuda", {.opt_level = 0});
  setenv("DS_CUDA_GRAPHS", "0", 1);
  Executable exe = compile(g, "cuda", {.opt_level = 0});
  const std::vector<Tensor> feeds = {random_uniform({4096}, 1)};
  for (int i = 0; i < 5; ++i) exe.run(feeds), graph_exe.run(feeds);

  std::string why;
  auto api = load_cupti(why);
  struct Mode {
    const char* name;
    std::function<std::shared_ptr<DeviceTimer>()> timer;  // empty: profiler off
    Executable* exe;
  };
  std::vector<Mode> modes = {{"off", {}, &exe},
                             {"cuda-events", [] { return make_cuda_event_timer(); }, &exe}};
  if (api) modes.push_back({"cupti", [api] { return make_cuda_timer(api, ""); }, &exe});
  else std::printf("CUPTI: %s\n", why.c_str());
  modes.push_back({"graph, off", {}, &graph_exe});

  std::vector<std::vector<double>> run_ns(modes.size()), stop_ns(modes.size());
  std::vector<std::string> kinds(modes.size());
  for (int r = 0; r < kRounds; ++r) {
    for (size_t m = 0; m < modes.size(); ++m) {
      std::optional<Profiler> prof;
      if (modes[m].timer) {
        ProfilerOptions opt;
        opt.device_timer = modes[m].timer();
        prof.emplace(opt);
      }
      const auto t0 = Clock::now();
      for (int i = 0; i < kIters; ++i) modes[m].exe->run(feeds);
      run_ns[m].push_back(ns_since(t0) / kIters);
      if (prof) {
        const auto t1 = Clock::now();
        prof->stop();
        stop_ns[m].push_back(ns_since(t1));
        kinds[m] = prof->device_timer_kind() + (prof->device_timer_warning().empty()
                                                    ? ""
                                                    : " (" + prof->device_timer_warning() + ")");
      }
    }
  }
  std::printf("%d adds of [4096] float32 per run on %s, %d runs per block, median of %d blocks\n",
              kOps, cuda::device_info(0).str().c_str(), kIters, kRounds);
  const double off = median(run_ns[0]);
  for (size_t m = 0; m < modes.size(); ++m) {
    const double on = median(run_ns[m]);
    std::printf("%-12s run %10.1f us  ratio %.3f", modes[m].name, on / 1e3, on / off);
    if (modes[m].exe == &exe) std::printf("  overhead %7.1f ns/op", (on - off) / kOps);
    if (modes[m].timer)
      std::printf("  stop() %8.1f us for %d ops  [%s]", median(stop_ns[m]) / 1e3, kOps * kIters,
                  kinds[m].c_str());
    std::printf("\n");
  }

  // What one profiled run shows.
  ProfilerOptions opt;
  if (api) opt.device_timer = make_cuda_timer(api, "");
  Profiler prof(opt);
  exe.run(feeds);
  prof.stop();
  std::printf("\n%s", prof.key_averages().table("cuda_total", 6).c_str());
  std::printf("device spans: %zu\n", prof.device_activities().size());
}
