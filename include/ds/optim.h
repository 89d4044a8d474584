// ds::optim: optimizers, learning-rate schedules, gradient clipping, and
// TrainStep, which compiles forward + loss + backward + optimizer update into
// ONE executable and runs it each step (mirrors torch.optim names and defaults).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ds/compile.h"
#include "ds/nn/module.h"

namespace ds::optim {

// An optimizer is its update rule written with ds ops, so the same rule runs
// eagerly (step()) and inside a compiled training step (TrainStep).
class Optimizer {
 public:
  explicit Optimizer(double lr);
  virtual ~Optimizer() = default;

  double lr() const { return lr_; }
  void set_lr(double lr);
  int64_t steps() const { return steps_; }  // updates applied so far

  // Per-parameter state tensors (zeros like the parameter), e.g. Adam's {m, v}.
  virtual std::vector<std::string> state_names() const = 0;
  // Scalars fed to the update each step, computed on the host (lr, bias
  // corrections) so a compiled step needs no recompile when they change.
  virtual std::vector<std::string> scalar_names() const = 0;
  virtual std::vector<double> scalars(int64_t step) const = 0;  // step counts from 1
  // The update for one parameter: returns {new_param, new_state...}. Works on
  // concrete and symbolic tensors; `scalars` are 0-d tensors in scalar_names order.
  virtual std::vector<Tensor> update(const Tensor& param, const Tensor& grad,
                                     const std::vector<Tensor>& state,
                                     const std::vector<Tensor>& scalars) const = 0;

  // Eager step: params[i] <- update(params[i], grads[i]); state kept per slot.
  void step(const std::vector<Tensor*>& params, const std::vector<Tensor>& grads);
  // The state of the parameter in `slot` (created as zeros on first use).
  std::vector<Tensor>& state_for(const Tensor* slot, const Tensor& like);
  // Called by TrainStep after a compiled update, to keep steps() current.
  void count_step() { ++steps_; }

 private:
  double lr_;
  int64_t steps_ = 0;
  std::map<const Tensor*, std::vector<Tensor>> state_;
};

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};
class SGD : public Optimizer {
 public:
  explicit SGD(SGDOptions o);
  std::vector<std::string> state_names() const override;
  std::vector<std::string> scalar_names() const override { return {"lr"}; }
  std::vector<double> scalars(int64_t step) const override;
  std::vector<Tensor> update(const Tensor& p, const Tensor& g, const std::vector<Tensor>& state,
                             const std::vector<Tensor>& scalars) const override;
  const SGDOptions& options() const { return o_; }

 private:
  SGDOptions o_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};
// Adam (L2 weight decay added to the gradient) or, with decoupled = true,
// AdamW (weight decay applied to the parameter, scaled by lr).
class Adam : public Optimizer {
 public:
  explicit Adam(AdamOptions o, bool decoupled_weight_decay = false);
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  std::vector<std::string> scalar_names() const override;
  std::vector<double> scalars(int64_t step) const override;
  std::vector<Tensor> update(const Tensor& p, const Tensor& g, const std::vector<Tensor>& state,
                             const std::vector<Tensor>& scalars) const override;
  const AdamOptions& options() const { return o_; }

 private:
  AdamOptions o_;
  bool decoupled_;
};
class AdamW : public Adam {
 public:
  // PyTorch's AdamW default weight decay.
  explicit AdamW(AdamOptions o = {.weight_decay = 1e-2}) : Adam(o, true) {}
};

// Scales `grads` so their global L2 norm is at most max_norm (as
// torch.nn.utils.clip_grad_norm_); returns the clipped grads and the norm before.
std::pair<std::vector<Tensor>, Tensor> clip_grad_norm(const std::vector<Tensor>& grads,
                                                      double max_norm);

// ---- learning-rate schedules: lr as a function of the step (or epoch) count.
class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  virtual double lr(int64_t step) const = 0;
  // Sets the optimizer's lr for `step`.
  void apply(Optimizer& opt, int64_t step) const { opt.set_lr(lr(step)); }
};

// base * gamma^(step / step_size)
class StepLR : public LRSchedule {
 public:
  StepLR(double base_lr, int64_t step_size, double gamma = 0.1);
  double lr(int64_t step) const override;

 private:
  double base_, gamma_;
  int64_t step_size_;
};

// eta_min + (base - eta_min)(1 + cos(pi * step / t_max)) / 2, constant eta_min after t_max.
class CosineAnnealingLR : public LRSchedule {
 public:
  CosineAnnealingLR(double base_lr, int64_t t_max, double eta_min = 0.0);
  double lr(int64_t step) const override;

 private:
  double base_, eta_min_;
  int64_t t_max_;
};

// Linear ramp from start_factor * after(0) to after(warmup_steps) over warmup_steps,
// then the wrapped schedule shifted by warmup_steps.
class LinearWarmup : public LRSchedule {
 public:
  LinearWarmup(std::shared_ptr<LRSchedule> after, int64_t warmup_steps, double start_factor = 0.0);
  double lr(int64_t step) const override;

 private:
  std::shared_ptr<LRSchedule> after_;
  int64_t warmup_;
  double start_;
};

// torch.optim.lr_scheduler.OneCycleLR with cosine annealing (two phases).
class OneCycleLR : public LRSchedule {
 public:
  OneCycleLR(double max_lr, int64_t total_steps, double pct_start = 0.3, double div_factor = 25.0,
             double final_div_factor = 1e4);
  double lr(int64_t step) const override;

 private:
  double max_lr_, initial_, min_;
  int64_t total_, up_;
};

// ---- one compiled training step
// loss(output, target) -> scalar loss
using LossFn = std::function<Tensor(const Tensor& output, const Tensor& target)>;

struct TrainStepOptions {
  double clip_grad_norm = 0.0;  // > 0: clip the global gradient norm in the graph
  std::string target = "cpu";
  // "fp32" | "bf16" | "fp16" (CompileOptions::precision); parameters stay float32.
  // fp16 adds dynamic loss scaling: the loss is multiplied by the scale and the
  // gradients divided by it; a step with an Inf/NaN gradient is skipped and halves
  // the scale; after `loss_scale_growth_interval` good steps in a row it doubles.
  std::string precision = "fp32";
  double initial_loss_scale = 65536.0;
  int64_t loss_scale_growth_interval = 2000;
  // Bytes (0: unlimited). When the whole-batch step's plan is over it, the step
  // runs the batch as equal micro-batches (the largest divisor of the batch that
  // fits), sums their gradients weighted by rows / batch and applies ONE update:
  // the same result as the whole batch for a loss that is a mean over the batch
  // (each micro-batch's mean loss, weighted, adds up to the batch mean). Batch
  // norm in train mode normalizes each micro-batch with its own statistics and
  // updates the running statistics once per micro-batch, as in PyTorch with
  // gradient accumulation; dropout draws per micro-batch. A batch whose single
  // sample does not fit is refused when the step compiles, naming need and budget.
  int64_t memory_budget = 0;
  // false: the step returns no model output (StepResult::output undefined), so it
  // neither casts nor copies one (GPT-2's float32 logits are 3.3 GB a step).
  bool return_output = true;
};

struct StepResult {
  Tensor loss;    // 0-d
  Tensor output;  // the model output (logits), e.g. for accuracy
  bool skipped = false;  // fp16: a non-finite gradient; parameters and state unchanged
};

// Traces model forward + loss + ds::grad + the optimizer update for one input
// signature into one graph, compiles it once (per signature), and on each
// step() runs it and swaps the new parameters, optimizer state and buffers
// (running statistics, dropout seeds) into the module.
class TrainStep {
 public:
  TrainStep(nn::Module& model, Optimizer& optimizer, LossFn loss, TrainStepOptions options = {});
  StepResult step(const Tensor& input, const Tensor& target);
  // The compiled executable for this signature (compiling it if needed).
  const Executable& executable(const TensorType& input, const TensorType& target);
  double loss_scale() const;  // fp16: the current dynamic loss scale; otherwise 1
  // Rows per micro-batch for this signature (compiling if needed): the batch
  // itself unless options.memory_budget splits it. With a split, executable()
  // is the per-micro-batch forward + backward (gradient accumulation).
  int64_t micro_batch_size(const TensorType& input, const TensorType& target);

 private:
  struct Compiled;
  struct MicroPlan;
  Compiled& compiled(const TensorType& input, const TensorType& target);
  std::shared_ptr<MicroPlan> plan_micro(const TensorType& input, const TensorType& target,
                                        int64_t need);
  StepResult step_micro(const MicroPlan& plan, const Tensor& input, const Tensor& target);
  nn::Module& model_;
  Optimizer& opt_;
  LossFn loss_;
  TrainStepOptions options_;
  std::vector<std::pair<std::string, Tensor*>> params_, buffers_;
  std::vector<std::pair<std::vector<TensorType>, std::shared_ptr<Compiled>>> cache_;
  Tensor loss_scale_, good_steps_;  // fp16 loss-scaling state (0-d float32), fed each step
};

// Compiled inference (eval mode forward) for one input signature, cached.
class EvalStep {
 public:
  explicit EvalStep(nn::Module& model, std::string target = "cpu");
  Tensor run(const Tensor& input);

 private:
  nn::Module& model_;
  std::string target_;
  std::vector<std::pair<std::string, Tensor*>> params_, buffers_;
  std::vector<std::pair<TensorType, Executable>> cache_;
};

}  // namespace ds::optim
