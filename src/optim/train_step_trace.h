// Pieces shared by the whole-batch training step (train_step.cpp) and the
// micro-batched one (train_step_micro.cpp): tracing forward + loss with symbolic
// values in the module's slots, fp16 loss scaling in the graph, feed positions.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ds/optim.h"

namespace ds::optim::detail {

using Slots = std::vector<std::pair<std::string, Tensor*>>;

// Puts symbolic placeholders (named prefix + slot name) into the module's slots
// for the duration of a trace, restoring the concrete tensors afterwards (also
// when the trace throws).
class SlotSwap {
 public:
  SlotSwap(Graph& g, const Slots& slots, const std::string& prefix);
  ~SlotSwap();
  SlotSwap(const SlotSwap&) = delete;
  SlotSwap& operator=(const SlotSwap&) = delete;
  const std::vector<Tensor>& placeholders() const { return symbolic_; }

 private:
  const Slots& slots_;
  std::vector<Tensor> saved_, symbolic_;
};

// model.forward + loss traced into `g` on placeholders "param:<name>",
// "buffer:<name>", "input", "target".
struct TracedForward {
  std::vector<Tensor> params;  // the parameter placeholders, in slot order
  Tensor output, loss;
  // Buffers the forward replaced (running statistics, dropout seeds): (index, new value).
  std::vector<std::pair<size_t, Tensor>> new_buffers;
};
TracedForward trace_forward(Graph& g, nn::Module& model, const LossFn& loss_fn, const Slots& params,
                            const Slots& buffers, const TensorType& input, const TensorType& target);

// fp16 dynamic loss scaling, in the graph: gradients of loss * scale are divided
// by the scale; found_inf when any is Inf/NaN (their absolute sum is then not a
// finite float32); the scale halves on found_inf and doubles after `interval`
// good steps in a row.
struct LossScaling {
  Tensor scale, good_steps;  // placeholders "loss_scale", "good_steps" (0-d float32)
  Tensor found_inf, new_scale, new_good_steps;

  explicit LossScaling(Graph& g);
  // Divides gradients of the scaled loss by the scale and sets the outputs above.
  std::vector<Tensor> unscale(std::vector<Tensor> scaled_grads, int64_t interval);
};

// The optimizer update of every parameter, added to `g` as outputs
// "new_param:<name>" and "new_state:<name>:<k>" (k counts the optimizer's states),
// with clipping of the global gradient norm when clip > 0; a step whose loss
// scaling found an Inf/NaN keeps the parameters and states (scaling may be null).
// Adds the placeholders "state:<name>:<state>" and "scalar:<name>".
void add_updates(Graph& g, const Optimizer& opt, const Slots& params,
                 const std::vector<Tensor>& param_ph, std::vector<Tensor> grads, double clip,
                 const LossScaling* scaling);

// Positions of `names` in the executable's input (or output) list.
std::vector<size_t> positions(const std::vector<IOSpec>& specs, const std::vector<std::string>& names);

}  // namespace ds::optim::detail

namespace ds::optim {

// A step over options.memory_budget, as micro-batches with gradient accumulation.
struct TrainStep::MicroPlan {
  int64_t batch = 0, micro = 0;  // rows of the whole batch and of each micro-batch
  // One micro-batch: params, buffers, input/target rows, "acc:<param>" (the sum so
  // far) -> "loss", "output", "new_acc:<param>" (acc + gradient * micro / batch),
  // "new_buffer:<name>"; with fp16 loss scaling the gradients are of loss * "loss_scale".
  std::shared_ptr<Executable> gradients;
  // The accumulated gradients -> the optimizer update (clipping and unscaling included).
  std::shared_ptr<Executable> update;
  std::vector<size_t> new_buffers;  // buffer indices the forward replaces
};

}  // namespace ds::optim
