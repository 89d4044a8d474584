// Issue 2's linear-algebra figures, our side: float32 matmul GFLOP/s and conv2d
// forward, backward-data and backward-weight times, printed as JSON for bench/run_linalg.py (which times
// numpy and PyTorch on the same cases and prints the ratios).
//   DS_NUM_THREADS=2 ds_bench_linalg [--quick | --list | --serve [budget_s]]
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ds/ops.h"
#include "ds/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;

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

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// The machine's float32 FMA peak on `threads` threads: independent FMA chains,
// enough of them to cover the FMA latency, 16 FLOPs per 256-bit FMA.
double peak_gflops(int threads) {
  constexpr int kChains = 10;
  constexpr int64_t kIters = 20'000'000;
  std::atomic<double> sink{0};
  auto work = [&] {
    __m256 acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
    const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < kIters; ++it)
      for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
    float out[8];
    __m256 total = acc[0];
    for (int i = 1; i < kChains; ++i) total = _mm256_add_ps(total, acc[i]);
    _mm256_storeu_ps(out, total);
    sink.store(sink.load() + out[0]);
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return 16.0 * kChains * static_cast<double>(kIters) * threads / s / 1e9;
}

ds::Tensor random(const ds::Shape& shape, uint64_t seed) {
  return ds::random_uniform(shape, seed, -1.0, 1.0, ds::DType::Float32);
}

// One benchmark case: its JSON description and a runner that times it.
struct Case {
  std::string json;  // {"kind": ..., "name": ..., shape fields}
  std::function<double(double budget)> time;
};

std::vector<Case> make_cases() {
  std::vector<Case> cases;
  for (int64_t n : {256, 1024, 2048})
    cases.push_back({"{\"kind\": \"matmul\", \"name\": \"matmul " + std::to_string(n) +
                         "\", \"n\": " + std::to_string(n) + "}",
                     [n](double budget) {
                       const ds::Tensor a = random({n, n}, 1), b = random({n, n}, 2);
                       return median_seconds([&] { ds::matmul(a, b); }, budget);
                     }});
  struct Conv {
    const char* label;
    int64_t n, c, h, w, o, k, pad;
  };
  const std::vector<Conv> convs = {
      {"conv3x3 64->64 56x56", 1, 64, 56, 56, 64, 3, 1},
      {"conv3x3 64->64 56x56", 32, 64, 56, 56, 64, 3, 1},
      {"conv1x1 256->64 56x56", 1, 256, 56, 56, 64, 1, 0},
      {"conv1x1 256->64 56x56", 32, 256, 56, 56, 64, 1, 0},
      // The Fashion-MNIST CNN's two layers at its training batch (128).
      {"fmnist conv1 1->32 28x28", 128, 1, 28, 28, 32, 3, 1},
      {"fmnist conv2 32->64 14x14", 128, 32, 14, 14, 64, 3, 1},
  };
  for (const Conv& c : convs) {
    const std::string shape = "\"n\": " + std::to_string(c.n) + ", \"c\": " + std::to_string(c.c) +
                              ", \"h\": " + std::to_string(c.h) + ", \"w\": " + std::to_string(c.w) +
                              ", \"o\": " + std::to_string(c.o) + ", \"k\": " + std::to_string(c.k) +
                              ", \"pad\": " + std::to_string(c.pad);
    const std::string name = std::string(c.label) + " b" + std::to_string(c.n);
    for (const auto& [kind, label] : {std::pair{"conv_fwd", "fwd"}, std::pair{"conv_bwd_data", "bwd data"},
                                      std::pair{"conv_bwd_weight", "bwd weight"}}) {
      const std::string k = kind;
      cases.push_back(
          {"{\"kind\": \"" + k + "\", \"name\": \"" + name + " " + label + "\", " + shape + "}",
           [c, k](double budget) {
             const ds::Tensor x = random({c.n, c.c, c.h, c.w}, 3), w = random({c.o, c.c, c.k, c.k}, 4);
             if (k == "conv_fwd")
               return median_seconds([&] { ds::conv2d(x, w, {}, {1}, {c.pad}); }, budget);
             const ds::Tensor gy = random(ds::conv2d(x, w, {}, {1}, {c.pad}).shape(), 5);
             ds::AttrMap attrs{{"stride", ds::Pair{1}}, {"padding", ds::Pair{c.pad}}};
             if (k == "conv_bwd_data") {
               attrs["input_size"] = ds::Pair{c.h, c.w};
               return median_seconds([&] { ds::apply1("conv2d_backward_input", {gy, w}, attrs); },
                                     budget);
             }
             attrs["kernel_size"] = ds::Pair{c.k, c.k};
             return median_seconds([&] { ds::apply1("conv2d_backward_weight", {x, gy}, attrs); },
                                   budget);
           }});
    }
  }
  // The Fashion-MNIST CNN's 2x2 max pools and first linear layer at batch 128.
  for (const auto& [c, h] : {std::pair<int64_t, int64_t>{32, 28}, std::pair<int64_t, int64_t>{64, 14}}) {
    const std::string shape = "\"n\": 128, \"c\": " + std::to_string(c) + ", \"h\": " +
                              std::to_string(h) + ", \"w\": " + std::to_string(h) + ", \"k\": 2";
    const std::string name = "fmnist maxpool2 " + std::to_string(c) + "x" + std::to_string(h) + "x" +
                             std::to_string(h) + " b128";
    for (const auto& [kind, label] :
         {std::pair{"maxpool_fwd", "fwd"}, std::pair{"maxpool_bwd", "bwd"}}) {
      const std::string k = kind;
      cases.push_back({"{\"kind\": \"" + k + "\", \"name\": \"" + name + " " + label + "\", " + shape + "}",
                       [c, h, k](double budget) {
                         const ds::Tensor x = random({128, c, h, h}, 6);
                         if (k == "maxpool_fwd")
                           return median_seconds([&] { ds::max_pool2d(x, {2}); }, budget);
                         const ds::Tensor gy = random({128, c, h / 2, h / 2}, 7);
                         const ds::AttrMap attrs{{"kernel_size", ds::Pair{2}}};
                         return median_seconds(
                             [&] { ds::apply1("max_pool2d_backward", {x, gy}, attrs); }, budget);
                       }});
    }
  }
  cases.push_back({"{\"kind\": \"linear\", \"name\": \"fmnist linear 3136->128 b128 fwd\", "
                   "\"n\": 128, \"in\": 3136, \"out\": 128}",
                   [](double budget) {
                     const ds::Tensor x = random({128, 3136}, 8), w = random({128, 3136}, 9),
                                      b = random({128}, 10);
                     return median_seconds([&] { ds::linear(x, w, b); }, budget);
                   }});
  return cases;
}

}  // namespace

// Modes: (none) or --quick: time every case and print JSON; --list: print the
// cases (and the FMA peak) without timing them; --serve [budget_s]: read case
// indices from stdin, one per line, and print each one's median seconds (the
// driver interleaves us and the peer).
int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const double budget = mode == "--quick" ? 0.2 : mode == "--serve" && argc > 2 ? std::atof(argv[2]) : 1.0;
  const std::vector<Case> cases = make_cases();
  if (mode == "--serve") {
    std::string line;
    while (std::getline(std::cin, line)) {
      const size_t i = std::stoul(line);
      std::cout << (i < cases.size() ? num(cases[i].time(budget)) : "nan") << std::endl;
    }
    return 0;
  }
  std::printf("{\"threads\": %d, \"peak_gflops\": %s, \"cases\": [\n", ds::num_threads(),
              num(peak_gflops(ds::num_threads())).c_str());
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string json = cases[i].json;
    if (mode != "--list") json.insert(json.size() - 1, ", \"seconds\": " + num(cases[i].time(budget)));
    std::printf("%s  %s", i ? ",\n" : "", json.c_str());
    std::fflush(stdout);
  }
  std::printf("\n]}\n");
  return 0;
}
