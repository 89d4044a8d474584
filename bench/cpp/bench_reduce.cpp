// Issue 2's reduction figures, our side: sum/mean/max/min over 10^7 float32
// values (all axes, last axis, first axis, a middle axis), softmax/log_softmax
// and layer_norm/rms_norm over rows of 1000, as JSON for bench/run_reduce.py
// (which times numpy and PyTorch on the same cases and prints the ratios).
// `read_gbs` is a parallel streaming read of the same bytes: the memory roofline.
//   DS_NUM_THREADS=2 ds_bench_reduce [--quick]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "ds/ops.h"
#include "ds/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;
using ds::Tensor;

// Median seconds of fn over repeats after a warm-up, running for at least `budget` seconds.
double median_seconds(const std::function<void()>& fn, double budget) {
  for (int i = 0; i < 2; ++i) fn();
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 5 ||
         (std::chrono::duration<double>(Clock::now() - start).count() < budget && times.size() < 200)) {
    const auto t0 = Clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Bytes per second of a parallel read of x (xor of its 64-bit words, kept live).
double read_bandwidth(const Tensor& x, double budget) {
  const auto* p = static_cast<const uint64_t*>(x.raw_data());
  const int64_t words = static_cast<int64_t>(x.nbytes() / 8);
  std::atomic<uint64_t> sink{0};
  const double s = median_seconds(
      [&] {
        ds::parallel_for(words, 1 << 16, [&](int64_t b, int64_t e) {
          uint64_t acc[8] = {};
          int64_t i = b;
          for (; i + 8 <= e; i += 8)
            for (int j = 0; j < 8; ++j) acc[j] ^= p[i + j];
          for (; i < e; ++i) acc[0] ^= p[i];
          sink.fetch_xor(acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7]);
        });
      },
      budget);
  return static_cast<double>(x.nbytes()) / s;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const double budget = quick ? 0.2 : 1.0;
  constexpr int64_t kN = 10'000'000;
  const Tensor flat = ds::random_uniform({kN}, 1, -1.0, 1.0);
  const Tensor rows = flat.reshape({10'000, 1'000});
  const Tensor cube = flat.reshape({100, 1'000, 100});
  const Tensor w = ds::random_uniform({1'000}, 2, 0.5, 1.5), b = ds::random_uniform({1'000}, 3);

  struct Case {
    std::string name, op, shape;
    std::vector<int64_t> axes;
    std::function<Tensor()> run;
  };
  const std::vector<Case> cases = {
      {"sum all [1e7]", "sum", "[10000000]", {}, [&] { return ds::sum(flat); }},
      {"mean all [1e7]", "mean", "[10000000]", {}, [&] { return ds::mean(flat); }},
      {"max all [1e7]", "max", "[10000000]", {}, [&] { return ds::max(flat); }},
      {"min all [1e7]", "min", "[10000000]", {}, [&] { return ds::min(flat); }},
      {"sum axis -1 [1e4, 1e3]", "sum", "[10000, 1000]", {-1}, [&] { return ds::sum(rows, {-1}); }},
      {"max axis -1 [1e4, 1e3]", "max", "[10000, 1000]", {-1}, [&] { return ds::max(rows, {-1}); }},
      {"sum axis 0 [1e4, 1e3]", "sum", "[10000, 1000]", {0}, [&] { return ds::sum(rows, {0}); }},
      {"max axis 0 [1e4, 1e3]", "max", "[10000, 1000]", {0}, [&] { return ds::max(rows, {0}); }},
      {"sum axis 1 [100, 1e3, 100]", "sum", "[100, 1000, 100]", {1},
       [&] { return ds::sum(cube, {1}); }},
      {"softmax axis -1 [1e4, 1e3]", "softmax", "[10000, 1000]", {-1},
       [&] { return ds::softmax(rows); }},
      {"log_softmax axis -1 [1e4, 1e3]", "log_softmax", "[10000, 1000]", {-1},
       [&] { return ds::log_softmax(rows); }},
      {"layer_norm [1e4, 1e3] (w, b)", "layer_norm", "[10000, 1000]", {-1},
       [&] { return ds::layer_norm(rows, {1'000}, w, b); }},
      {"rms_norm [1e4, 1e3] (w)", "rms_norm", "[10000, 1000]", {-1},
       [&] { return ds::rms_norm(rows, {1'000}, w); }},
  };
  std::printf("{\"threads\": %d, \"read_gbs\": %.4g, \"cases\": [\n", ds::num_threads(),
              read_bandwidth(flat, budget) / 1e9);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::string axes;
    for (int64_t a : c.axes) axes += (axes.empty() ? "" : ", ") + std::to_string(a);
    const double s = median_seconds([&] { c.run(); }, budget);
    std::printf("  {\"name\": \"%s\", \"op\": \"%s\", \"shape\": %s, \"axes\": [%s], "
                "\"seconds\": %.6g}%s\n",
                c.name.c_str(), c.op.c_str(), c.shape.c_str(), axes.c_str(), s,
                i + 1 < cases.size() ? "," : "");
  }
  std::printf("]}\n");
  return 0;
}
