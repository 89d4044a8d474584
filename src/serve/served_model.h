// One model of the repository as the server holds it: its config, signature,
// batcher and counters.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>

#include "ds/compile.h"
#include "ds/sched.h"
#include "ds/serve.h"
#include "serve/infer_json.h"

namespace ds::serve {

// Request outcomes and a window of recent latencies for the quantiles.
class ModelMetrics {
 public:
  void record(const std::string& outcome, double latency_us);  // "success" or a failure reason
  int64_t count(const std::string& outcome) const;
  std::map<std::string, int64_t> counts() const;
  struct Latency {
    double p50 = 0, p90 = 0, p99 = 0, sum = 0;
    int64_t count = 0;
  };
  Latency latency() const;  // over the last kWindow successes; sum/count over all

 private:
  static constexpr size_t kWindow = 4096;
  mutable std::mutex m_;
  std::map<std::string, int64_t> counts_;
  std::deque<double> recent_;
  double sum_ = 0;
  int64_t n_ = 0;
};

struct ServedModel {
  ModelConfig config;
  std::vector<InputSpec> inputs;
  std::vector<std::string> output_names;
  std::vector<TensorType> output_types;
  sched::BatchFn run_batch;  // the compiled model
  std::unique_ptr<sched::DynamicBatcher> batcher;
  ModelMetrics metrics;
};

// Loads DIR/<name>: config, model (ds::load), compile for the config's target.
std::unique_ptr<ServedModel> load_served_model(const std::string& model_dir);

// The Prometheus text exposition of every model and the scheduler.
std::string prometheus_text(const std::map<std::string, std::unique_ptr<ServedModel>>& models,
                            const sched::SchedulerStats& scheduler);

}  // namespace ds::serve
