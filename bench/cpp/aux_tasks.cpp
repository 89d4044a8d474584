// Idle-time auxiliary tasks: do they raise utilization without hurting urgent
// work? One scheduler worker serves Poisson arrivals of urgent tasks (a fixed
// CPU cost each) at half its capacity, once alone and once with a backlog of
// auxiliary tasks that work in small chunks and yield when urgent work waits.
// Utilization counts the auxiliary work done (chunks x chunk cost), not the
// wall time auxiliary slices took: they run at idle OS priority beside the
// worker, so their wall time includes time the CPU gave to others.
// Prints case | without | with | ratio and writes JSON.
//   g++ -O2 -std=c++20 -Iinclude bench/cpp/aux_tasks.cpp -Lbuild -ldeepseek -o aux_tasks
//   ./aux_tasks [seconds] [out.json]
#include <algorithm>
#include <atomic>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>
#include <thread>

#include "ds/sched.h"

using namespace ds::sched;

namespace {

void spin(Micros d) {
  const auto end = Clock::now() + d;
  while (Clock::now() < end) {
  }
}

struct Result {
  double p50_us = 0, p99_us = 0, utilization = 0, aux_chunks_per_s = 0;
};

constexpr auto kCost = Micros(400);  // per urgent task
constexpr auto kChunk = Micros(50);  // auxiliary work between yield checks

// The wall time one urgent task really takes here: on a shared machine the
// spin overshoots by the time slices other processes get.
double measured_cost_us() {
  const auto t0 = Clock::now();
  for (int i = 0; i < 200; ++i) spin(kCost);
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 200;
}

Result run(double seconds, bool with_aux, double cost_us) {
  const double rate = 0.5 * 1e6 / cost_us;
  SchedulerOptions so;
  so.priority_levels = 1;
  so.aging_step = Micros(0);
  so.auxiliary_capacity = 1 << 20;
  Scheduler s(so);
  std::atomic<int64_t> chunks{0};
  std::atomic<bool> feeding{with_aux};
  // Each auxiliary task is 20 chunks; finished ones are replaced while feeding.
  std::function<void()> feed = [&] {
    s.submit_auxiliary(
        [&, done = std::make_shared<int>(0)](const YieldToken& y) {
          while (*done < 20) {
            if (y.should_yield()) return false;
            spin(kChunk);
            ++*done;
            ++chunks;
          }
          return true;
        },
        [&](const TaskHandle&) {
          if (feeding) feed();
        });
  };
  if (with_aux)
    for (int i = 0; i < 4; ++i) feed();
  std::mt19937_64 rng(1);
  std::exponential_distribution<double> gap(rate / 1e6);
  std::vector<double> arrivals;
  for (double t = gap(rng); t < seconds * 1e6; t += gap(rng)) arrivals.push_back(t);
  std::vector<double> latency(arrivals.size(), -1);
  std::vector<TaskHandle> hs;
  hs.reserve(arrivals.size());
  const auto start = Clock::now();
  for (size_t i = 0; i < arrivals.size(); ++i) {
    const auto intended = start + Micros(static_cast<int64_t>(arrivals[i]));
    std::this_thread::sleep_until(intended);
    hs.push_back(s.submit(
        [] {
          spin(kCost);
          return Outputs{};
        },
        {.on_done = [&latency, i, intended](const TaskHandle&) {
          latency[i] = std::chrono::duration<double, std::micro>(Clock::now() - intended).count();
        }}));
  }
  for (auto& h : hs) h.wait();
  feeding = false;
  const SchedulerStats st = s.stats();
  s.shutdown();
  std::sort(latency.begin(), latency.end());
  Result r;
  r.p50_us = latency[latency.size() / 2];
  r.p99_us = latency[static_cast<size_t>(0.99 * (latency.size() - 1))];
  r.utilization =
      (st.busy_seconds + chunks * std::chrono::duration<double>(kChunk).count()) / st.uptime_seconds;
  r.aux_chunks_per_s = chunks / st.uptime_seconds;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::stod(argv[1]) : 10;
  const double cost = measured_cost_us();
  std::cout << "urgent task: " << cost << " us measured; offered at half the worker's capacity\n";
  const Result a = run(seconds, false, cost), b = run(seconds, true, cost);
  std::cout << std::fixed << std::setprecision(2) << "case | without aux | with aux | ratio\n"
            << "urgent p50 us | " << a.p50_us << " | " << b.p50_us << " | " << b.p50_us / a.p50_us << "\n"
            << "urgent p99 us | " << a.p99_us << " | " << b.p99_us << " | " << b.p99_us / a.p99_us << "\n"
            << "utilization | " << a.utilization << " | " << b.utilization << " | "
            << b.utilization / a.utilization << "\n"
            << "aux chunks/s | " << a.aux_chunks_per_s << " | " << b.aux_chunks_per_s << " | -\n";
  if (argc > 2) {
    std::ofstream f(argv[2]);
    f << "{\"seconds\": " << seconds << ", \"cost_us\": " << cost << ", \"without\": {\"p50_us\": " << a.p50_us << ", \"p99_us\": " << a.p99_us
      << ", \"utilization\": " << a.utilization << "}, \"with\": {\"p50_us\": " << b.p50_us
      << ", \"p99_us\": " << b.p99_us << ", \"utilization\": " << b.utilization
      << ", \"aux_chunks_per_s\": " << b.aux_chunks_per_s << "}}\n";
  }
  return 0;
}
