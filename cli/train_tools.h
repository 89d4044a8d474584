// The developer tools of `ds train`: TensorBoard scalars, the model graph and
// resource-monitor samples (--tensorboard), debugger statistics and NaN/Inf
// detection (--debug-every), and a profile of a few steady-state steps (--profile).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "ds/debug.h"
#include "ds/monitor.h"
#include "ds/profile.h"
#include "ds/tensorboard.h"

namespace ds::cli {

struct TrainToolsOptions {
  std::string tensorboard;    // log directory; empty: no TensorBoard
  int64_t log_every = 10;     // training scalars every N steps
  int64_t debug_every = 100;  // debugger statistics every N steps (with --tensorboard); 0: never
  bool profile = false;
  int64_t profile_steps = 5;  // steps profiled after the warm-up
};

inline constexpr char kTrainToolsUsage[] =
    "  --tensorboard DIR TensorBoard run: loss, accuracy, lr, images/s, the model graph,\n"
    "                    debugger statistics and resource-monitor samples\n"
    "  --log-every N     training scalars every N steps (default 10)\n"
    "  --debug-every N   parameter/gradient/activation statistics and update ratios every\n"
    "                    N steps (default 100; 0: off). NaN/Inf are checked every step\n"
    "  --profile         profile steps after a 2-step warm-up; prints the op table by self\n"
    "                    time, writes a Chrome trace to DIR/ds_profile.json (./ without DIR)\n"
    "  --profile-steps N steps profiled (default 5)\n";

// Parses the flag at argv[i] if it is one of ours (advancing i past its value).
bool parse_train_tools_flag(TrainToolsOptions& o, int argc, char** argv, int& i);

class TrainTools {
 public:
  TrainTools(TrainToolsOptions options, nn::Module& model, optim::TrainStep& step,
             optim::LossFn loss, const Shape& input_shape);
  ~TrainTools();

  // One training step through the debugger (throws debug::NonFiniteError on a
  // NaN/Inf), profiled when in the profiling window.
  optim::StepResult step(const Tensor& input, const Tensor& target);
  // After step `step` (from 1): scalars every log_every steps.
  void log(int64_t step, double loss, double accuracy_pct, double lr, int64_t batch_images);
  void log_test_accuracy(int64_t step, double accuracy_pct);
  // Ends profiling (table and trace) and writes the remaining monitor samples.
  void finish();

 private:
  static constexpr int64_t kProfileWarmup = 2;  // the first step traces and compiles
  void finish_profile();

  TrainToolsOptions o_;
  std::unique_ptr<tensorboard::SummaryWriter> writer_;
  std::unique_ptr<ResourceMonitor> monitor_;
  int64_t monitor_next_ = 0;
  debug::Debugger debugger_;
  std::unique_ptr<Profiler> profiler_;
  bool profiled_ = false;
  int64_t images_since_log_ = 0;
  std::chrono::steady_clock::time_point last_log_ = std::chrono::steady_clock::now();
};

}  // namespace ds::cli
