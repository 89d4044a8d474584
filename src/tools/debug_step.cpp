// Debugger: runs the TrainStep each step and, every N steps, a second compiled
// "probe" executable (forward + loss + gradients, no update) that exposes the
// activations and gradients; writes their statistics to TensorBoard.
#include <cmath>

#include "ds/debug.h"
#include "ds/tensorboard.h"
#include "tools/debug_trace.h"

namespace ds::debug {

struct Debugger::Probe {
  std::shared_ptr<Executable> exe;
  std::vector<std::string> activations;  // names, probe order
  std::vector<std::string> grads;        // parameter names
};

Debugger::Debugger(nn::Module& model, optim::TrainStep& step, optim::LossFn loss,
                   tensorboard::SummaryWriter* writer, DebugOptions options)
    : model_(model), train_(step), loss_(std::move(loss)), writer_(writer), options_(options) {
  DS_CHECK(loss_, ValueError, "Debugger: the loss function is empty");
  DS_CHECK(options_.every >= 0, ValueError, "Debugger: every must be >= 0, got ", options_.every);
}

Debugger::~Debugger() = default;

Debugger::Probe& Debugger::probe(const Tensor& input, const Tensor& target) {
  const std::vector<TensorType> sig = {{input.dtype(), input.shape()}, {target.dtype(), target.shape()}};
  for (auto& [s, p] : probes_)
    if (s == sig) return *p;
  detail::TracedStep t = detail::trace_step(model_, loss_, sig[0], sig[1]);
  auto p = std::make_shared<Probe>();
  t.graph.output(t.loss, "loss");
  for (auto& [name, v] : t.activations) {
    t.graph.output(v, "act:" + name);
    p->activations.push_back(name);
  }
  for (auto& [name, g] : t.grads) {
    t.graph.output(g, "grad:" + name);
    p->grads.push_back(name);
  }
  p->exe = std::make_shared<Executable>(compile(t.graph, options_.target));
  probes_.emplace_back(sig, p);
  return *p;
}

std::vector<std::string> Debugger::activation_names() const {
  return probes_.empty() ? std::vector<std::string>{} : probes_.back().second->activations;
}

void Debugger::record(const std::string& kind, const std::string& name, const Tensor& t) {
  const TensorStats s = tensor_stats(t);
  const std::string base = kind + "/" + name + "/";
  const std::pair<const char*, double> figures[] = {
      {"mean", s.mean}, {"std", s.std}, {"min", s.min}, {"max", s.max}, {"norm", s.norm}};
  for (auto& [f, v] : figures) {
    last_stats_[base + f] = v;
    if (writer_ && std::isfinite(v)) writer_->add_scalar(base + f, v, steps_);
  }
  if (s.nonfinite > 0) {
    last_stats_[base + "nonfinite"] = double(s.nonfinite);
    if (writer_) writer_->add_scalar(base + "nonfinite", double(s.nonfinite), steps_);
  }
  if (writer_ && options_.histograms && s.numel > 0 && s.nonfinite == 0)
    writer_->add_histogram(kind + "/" + name, t, steps_);
}

optim::StepResult Debugger::step(const Tensor& input, const Tensor& target) {
  ++steps_;
  const bool debug_step = options_.every > 0 && (steps_ - 1) % options_.every == 0;
  // Handles to the values before the update (the step swaps new tensors into
  // the slots, so these stay as they were): for the update ratios and for
  // re-running a step that went non-finite.
  const auto param_slots = model_.parameter_slots();
  const auto buffer_slots = model_.buffer_slots();
  std::vector<Tensor> params_before, buffers_before;
  for (auto& [_, slot] : param_slots) params_before.push_back(*slot);
  for (auto& [_, slot] : buffer_slots) buffers_before.push_back(*slot);

  if (debug_step) {
    last_stats_.clear();
    Probe& p = probe(input, target);
    std::map<std::string, Tensor> feeds = {{"input", input}, {"target", target}};
    for (auto& [n, slot] : param_slots) feeds["param:" + n] = *slot;
    for (auto& [n, slot] : buffer_slots) feeds["buffer:" + n] = *slot;
    const std::map<std::string, Tensor> outs = p.exe->run(feeds);
    for (auto& [n, slot] : param_slots) record("params", n, *slot);
    for (const auto& n : p.grads) record("grads", n, outs.at("grad:" + n));
    for (const auto& n : p.activations) record("activations", n, outs.at("act:" + n));
  }

  optim::StepResult r = train_.step(input, target);

  bool finite = true;
  if (options_.check_finite) {
    finite = all_finite(r.loss);
    for (auto& [_, slot] : param_slots) finite = finite && all_finite(*slot);
  }
  if (!finite) {
    // Leave the model as it was before the failing update, then find the op.
    for (size_t i = 0; i < param_slots.size(); ++i) *param_slots[i].second = params_before[i];
    for (size_t i = 0; i < buffer_slots.size(); ++i) *buffer_slots[i].second = buffers_before[i];
    if (auto report = find_first_nonfinite(model_, loss_, input, target, steps_))
      throw NonFiniteError(*report);
    throw NonFiniteError({.step = steps_,
                          .message = "step " + std::to_string(steps_) +
                                     ": the compiled step produced a non-finite loss or parameter, "
                                     "but re-running it op by op gave finite values"});
  }

  if (debug_step) {
    for (size_t i = 0; i < param_slots.size(); ++i) {
      const Tensor before = params_before[i].to(DType::Float64).contiguous();
      const Tensor after = param_slots[i].second->to(DType::Float64).contiguous();
      const double* b = before.data<double>();
      const double* a = after.data<double>();
      double delta = 0, weight = 0;
      for (int64_t k = 0, n = before.numel(); k < n; ++k) {
        delta += (a[k] - b[k]) * (a[k] - b[k]);
        weight += b[k] * b[k];
      }
      // A zero weight (a bias initialized to 0) has no meaningful ratio.
      if (weight == 0) continue;
      const std::string tag = "update_ratio/" + param_slots[i].first;
      last_stats_[tag] = std::sqrt(delta / weight);
      if (writer_) writer_->add_scalar(tag, last_stats_[tag], steps_);
    }
  }
  return r;
}

}  // namespace ds::debug
