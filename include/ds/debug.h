// ds::debug — the training debugger: statistics of parameters, gradients and
// activations every N steps, update-to-weight ratios, and NaN/Inf detection
// that names the first op (and its layer) that produced a non-finite value.
//
//   ds::optim::TrainStep step(model, adam, loss);
//   ds::debug::Debugger dbg(model, step, loss, &writer, {.every = 100});
//   for (...) auto r = dbg.step(x, y);   // throws NonFiniteError on NaN/Inf
//
// Normal steps run the TrainStep's executable unchanged (plus a finiteness scan
// of the loss and the new parameters). Every N steps a second executable —
// forward + loss + gradients, exposing activations and gradients, no update —
// runs on the same inputs before the update, so the normal step pays nothing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ds/error.h"
#include "ds/optim.h"

namespace ds::tensorboard {
class SummaryWriter;
}

namespace ds::debug {

// Summary statistics over the finite elements (std is the population std);
// nonfinite counts NaN and +-Inf elements.
struct TensorStats {
  int64_t numel = 0;
  int64_t nonfinite = 0;
  double mean = 0, std = 0, min = 0, max = 0, norm = 0;  // norm: L2
};
TensorStats tensor_stats(const Tensor& t);
bool all_finite(const Tensor& t);

// Where the first non-finite value came from.
struct NonFiniteReport {
  int64_t step = 0;
  int node = -1;             // node id in the traced (uncompiled) step graph
  std::string op;            // "log"
  std::string node_label;    // "%57 log"
  std::string layer;         // module path of the nearest layer ("3", "fc2"); empty: none
  std::string phase;         // "forward", "loss" or "backward"
  std::string message;       // "step 123: first non-finite value produced by ..."
};

class NonFiniteError : public ValueError {
 public:
  explicit NonFiniteError(NonFiniteReport r) : ValueError(r.message), report_(std::move(r)) {}
  const NonFiniteReport& report() const { return report_; }

 private:
  NonFiniteReport report_;
};

// Re-runs forward + loss + backward of one step node by node (in topological
// order, eagerly, with the module's current parameters and buffers) and reports
// the first node whose output has a NaN/Inf while all its inputs are finite.
// nullopt when every value is finite.
std::optional<NonFiniteReport> find_first_nonfinite(nn::Module& model, const optim::LossFn& loss,
                                                    const Tensor& input, const Tensor& target,
                                                    int64_t step);

struct DebugOptions {
  int64_t every = 100;          // statistics every N steps (at step 1, 1+N, ...); 0: never
  bool histograms = true;       // also write histograms (params/<p>, grads/<p>, activations/<l>)
  bool check_finite = true;     // scan loss and new parameters each step
  std::string target = "cpu";   // where the statistics executable runs
};

// One debug-step's figures, by tag ("params/0.weight/mean", "update_ratio/0.weight").
using StatsMap = std::map<std::string, double>;

class Debugger {
 public:
  // `step` must train `model` with `loss`; `writer` may be null (stats are
  // still returned by last_stats()).
  Debugger(nn::Module& model, optim::TrainStep& step, optim::LossFn loss,
           tensorboard::SummaryWriter* writer, DebugOptions options = {});
  ~Debugger();

  // One training step (numbered from 1). Throws NonFiniteError when the loss or
  // a new parameter is non-finite, naming the op that produced it.
  optim::StepResult step(const Tensor& input, const Tensor& target);

  int64_t steps() const { return steps_; }
  const StatsMap& last_stats() const { return last_stats_; }  // of the latest debug step
  // Activation names in probe order ("0:Conv2d", ...; the model output last).
  std::vector<std::string> activation_names() const;

  struct Probe;

 private:
  Probe& probe(const Tensor& input, const Tensor& target);
  void record(const std::string& kind, const std::string& name, const Tensor& t);

  nn::Module& model_;
  optim::TrainStep& train_;
  optim::LossFn loss_;
  tensorboard::SummaryWriter* writer_;
  DebugOptions options_;
  int64_t steps_ = 0;
  StatsMap last_stats_;
  std::vector<std::pair<std::vector<TensorType>, std::shared_ptr<Probe>>> probes_;
};

}  // namespace ds::debug
