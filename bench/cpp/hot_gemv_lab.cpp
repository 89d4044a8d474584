// Lab for hot runs (src/core/hot_run.h) and the batch-1 GEMV kernel
// (src/backends/cpu/hot_gemv.h): where the cut-offs in hot_gemv_kernels.cpp come
// from. For each weight shape, median microseconds of: the GEMV on one thread;
// split over a spinning worker (a HotRunScope opened beforehand) for several
// chunk sizes; and a HotRunScope opened around the single GEMV (the worker is
// woken by it and arrives late: the cost a stretch with one split step pays).
// Then how long a sleeping worker takes to arrive once lent.
//
//   g++ -O2 -std=c++20 -march=x86-64-v3 -Isrc -Iinclude bench/cpp/hot_gemv_lab.cpp \
//       -Lbuild -ldeepseek -Wl,-rpath,$PWD/build -o /tmp/hot_gemv_lab && /tmp/hot_gemv_lab
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "backends/cpu/hot_gemv.h"
#include "core/hot_run.h"
#include "core/worker_loan.h"
#include "ds/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;

double micros(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double median_micros(int reps, F f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = Clock::now();
    f();
    t.push_back(micros(a, Clock::now()));
  }
  return median(t);
}

}  // namespace

int main() {
  using namespace ds;
  set_num_threads(2);
  const int reps = 1000;
  std::printf(
      "rows x in    KB  serial | hot, rows per chunk: 4 8 16 32 64 128 | default | cold scope\n");
  for (auto [rows, in] : std::vector<std::pair<int64_t, int64_t>>{{16, 512},
                                                                  {32, 512},
                                                                  {64, 512},
                                                                  {128, 512},
                                                                  {256, 512},
                                                                  {512, 512},
                                                                  {512, 784},
                                                                  {128, 3136}}) {
    std::vector<float> w(static_cast<size_t>(rows * in)), x(static_cast<size_t>(in)),
        y(static_cast<size_t>(rows));
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    for (float& v : w) v = normal(gen);
    for (float& v : x) v = normal(gen);
    const cpu::GemvEpilogue ep;
    auto gemv = [&](int64_t chunk) {
      cpu::gemv_rows(w.data(), x.data(), y.data(), rows, in, ep, chunk);
    };
    std::printf("%4ld x %-5ld %4ld %7.2f |", static_cast<long>(rows), static_cast<long>(in),
                static_cast<long>(rows * in * 4 / 1024), median_micros(reps, [&] { gemv(rows); }));
    {
      reset_hot_run_feedback();  // the lab measures splits the feedback would skip
      HotRunScope scope;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // the worker is spinning
      for (int64_t chunk : {4, 8, 16, 32, 64, 128})
        std::printf(" %5.2f", median_micros(reps, [&] { gemv(chunk); }));
      std::printf(" | %5.2f", median_micros(reps, [&] { gemv(cpu::gemv_chunk_rows(in)); }));
    }
    std::printf(" | %5.2f\n", median_micros(reps / 4, [&] {
                  reset_hot_run_feedback();
                  HotRunScope scope;
                  gemv(cpu::gemv_chunk_rows(in));
                }));
  }
  for (int idle_us : {0, 200}) {
    std::vector<double> t;
    for (int i = 0; i < 300; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(idle_us));
      reset_hot_run_feedback();
      const auto start = Clock::now();
      HotRunScope scope;
      while (scope.helpers() > 0 && lent_workers() == 0) {
      }
      t.push_back(micros(start, Clock::now()));
    }
    std::printf("a lent worker arrives %.1f us after the scope opens (idle %d us before)\n",
                median(t), idle_us);
  }
}
