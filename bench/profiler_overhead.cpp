// Profiler overhead, off vs on side by side in one process:
//   1. bare events: a tight loop of RecordFunction ranges, in long recordings
//      (the event buffer is faulted in as it grows) and in short ones (reused);
//   2. eager ops: a tight loop of small `add`s (one op event each);
//   3. the Fashion-MNIST CNN training step of `ds train` (batch 64, synthetic
//      images of the real shape; the data do not change the work).
// Off and on blocks alternate so drift hits both; the median block is reported.
// Then prints the profile table of five training steps (and writes their Chrome
// trace to argv[1] when given).
//
// Build (after building the library in build-<you>):
//   c++ -std=c++20 -O2 -march=x86-64-v3 -Iinclude bench/profiler_overhead.cpp
//       -Lbuild-prof -ldeepseek -Wl,-rpath,$PWD/build-prof -o /tmp/profiler_overhead
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <vector>

#include "ds/nn.h"
#include "ds/ops.h"
#include "ds/optim.h"
#include "ds/profile.h"

using namespace ds;
using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs `block` `rounds` times with the profiler off and on, alternating; returns
// the median ns per iteration for each and the events recorded per iteration.
struct Result {
  double off_ns, on_ns, events_per_iter;
};
Result side_by_side(int rounds, int iters, const std::function<void()>& body) {
  std::vector<double> off, on;
  double events = 0;
  for (int r = 0; r < rounds; ++r) {
    for (int profiled = 0; profiled < 2; ++profiled) {
      std::optional<Profiler> prof;
      ProfilerOptions options;
      options.max_events = 50'000'000;
      if (profiled) prof.emplace(options);
      const auto t0 = Clock::now();
      for (int i = 0; i < iters; ++i) body();
      const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / iters;
      if (prof) {
        prof->stop();
        events = double(prof->events().size()) / iters;
      }
      (profiled ? on : off).push_back(ns);
    }
  }
  return {median(off), median(on), events};
}

void report(const char* what, const Result& r) {
  const double per_event = r.events_per_iter > 0 ? (r.on_ns - r.off_ns) / r.events_per_iter : 0;
  std::printf("%-34s off %12.1f ns  on %12.1f ns  ratio %.3f  events/iter %.1f  overhead %.1f ns/event\n",
              what, r.off_ns, r.on_ns, r.on_ns / r.off_ns, r.events_per_iter, per_event);
}

int main(int argc, char** argv) {
  report("RecordFunction, 200k-event runs",
         side_by_side(9, 200'000, [] { RecordFunction r("range"); }));
  report("RecordFunction, 1k-event runs",
         side_by_side(301, 1'000, [] { RecordFunction r("range"); }));

  const Tensor a = Tensor::full({16}, 1.0), b = Tensor::full({16}, 2.0);
  report("eager add [16]", side_by_side(9, 100'000, [&] { (void)add(a, b); }));

  nn::manual_seed(0);
  auto model = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(1, 32, Pair{3}, Pair{1}, Pair{1}), nn::ReLU(),
      nn::MaxPool2d({2}),
      std::make_shared<nn::Conv2d>(32, 64, Pair{3}, Pair{1}, Pair{1}), nn::ReLU(),
      nn::MaxPool2d({2}), nn::Flatten(),
      std::make_shared<nn::Linear>(3136, 128), nn::ReLU(),
      std::make_shared<nn::Linear>(128, 10)});
  optim::Adam adam({.lr = 1e-3});
  optim::TrainStep step(*model, adam, [](const Tensor& logits, const Tensor& labels) {
    return nn::cross_entropy(logits, labels);
  });
  const Tensor images = random_uniform({64, 1, 28, 28}, 1);
  Tensor labels = Tensor::empty({64}, DType::Int64);
  for (int64_t i = 0; i < 64; ++i) labels.data<int64_t>()[i] = i % 10;
  for (int i = 0; i < 3; ++i) step.step(images, labels);  // compile and warm up
  report("Fashion-MNIST CNN train step (b64)",
         side_by_side(9, 20, [&] { (void)step.step(images, labels); }));

  // What the profile of that step looks like (and its trace, when a path is given).
  Profiler prof;
  for (int i = 0; i < 5; ++i) {
    RecordFunction r("train_step");
    (void)step.step(images, labels);
  }
  prof.stop();
  std::printf("\n%s", prof.key_averages().table("self_time", 12).c_str());
  if (argc > 1) prof.export_chrome_trace(argv[1]);
}
