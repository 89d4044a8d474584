// TrainStep over a memory budget: the batch runs as equal micro-batches through
// one forward + backward executable that adds each micro-batch's gradients,
// weighted by micro / batch, into accumulators; a second executable applies one
// optimizer update to the sums. For a loss that is a mean over the batch,
// sum_k (micro / batch) * grad(mean loss of micro-batch k) = grad(mean loss of
// the batch), so the update equals the whole-batch one up to float rounding.
#include <optional>

#include "ds/autodiff.h"
#include "ds/ops.h"
#include "optim/train_step_trace.h"
#include "runtime/micro_batch.h"

namespace ds::optim {
namespace {

TensorType with_rows(TensorType t, int64_t rows) {
  t.shape[0] = rows;
  return t;
}

}  // namespace

std::shared_ptr<TrainStep::MicroPlan> TrainStep::plan_micro(const TensorType& input,
                                                            const TensorType& target, int64_t need) {
  const int64_t budget = options_.memory_budget;
  const std::string over = ds::detail::cat(
      "TrainStep: the training step for input ", dtype_name(input.dtype), shape_str(input.shape),
      " needs ", need, " bytes, over the memory_budget of ", budget, " bytes");
  DS_CHECK(!input.shape.empty() && !target.shape.empty() && input.shape[0] == target.shape[0],
           ValueError, over, ", and it cannot be split into micro-batches: input and target need the ",
           "batch as axis 0, got ", shape_str(input.shape), " and ", shape_str(target.shape));
  auto plan = std::make_shared<MicroPlan>();
  plan->batch = input.shape[0];
  const bool scaled = loss_scale_.defined();
  CompileOptions copts;
  copts.precision = options_.precision;

  auto compile_gradients = [&](int64_t micro) {
    Graph g;
    const detail::TracedForward t = detail::trace_forward(
        g, model_, loss_, params_, buffers_, with_rows(input, micro), with_rows(target, micro));
    DS_CHECK(t.output.ndim() > 0 && t.output.shape()[0] == micro, ValueError, over,
             ", and it cannot be split into micro-batches: the model output ",
             shape_str(t.output.shape()), " does not keep the batch (", micro, " rows) as axis 0");
    const Tensor loss = scaled ? mul(t.loss, g.placeholder("loss_scale", {})) : t.loss;
    const std::vector<Tensor> grads = grad(g, loss, t.params);
    const double weight = static_cast<double>(micro) / static_cast<double>(plan->batch);
    for (size_t i = 0; i < params_.size(); ++i) {
      const Tensor acc = g.placeholder("acc:" + params_[i].first, t.params[i].shape(), t.params[i].dtype());
      g.output(acc + grads[i] * weight, "new_acc:" + params_[i].first);
    }
    g.output(t.loss, "loss");
    if (options_.return_output) g.output(t.output, "output");
    plan->new_buffers.clear();
    for (const auto& [b, value] : t.new_buffers) {
      g.output(value, "new_buffer:" + buffers_[b].first);
      plan->new_buffers.push_back(b);
    }
    return std::make_shared<Executable>(compile(g, options_.target, copts));
  };

  const MicroBatchChoice choice =
      largest_fitting_micro_batch(plan->batch, need, budget, [&](int64_t micro) {
        plan->gradients = compile_gradients(micro);
        return planned_bytes(*plan->gradients);
      });
  DS_CHECK(choice.micro > 0, ValueError, over, "; even a micro-batch of 1 sample needs ",
           choice.bytes, " bytes");
  plan->micro = choice.micro;

  Graph u;
  std::vector<Tensor> param_ph, grads;
  for (const auto& [name, slot] : params_) {
    param_ph.push_back(u.placeholder("param:" + name, slot->shape(), slot->dtype()));
    grads.push_back(u.placeholder("acc:" + name, slot->shape(), slot->dtype()));
  }
  std::optional<detail::LossScaling> scaling;
  if (scaled) {
    scaling.emplace(u);
    grads = scaling->unscale(std::move(grads), options_.loss_scale_growth_interval);
    u.output(scaling->found_inf, "found_inf");
    u.output(scaling->new_scale, "new_loss_scale");
    u.output(scaling->new_good_steps, "new_good_steps");
  }
  detail::add_updates(u, opt_, params_, param_ph, std::move(grads), options_.clip_grad_norm,
                      scaling ? &*scaling : nullptr);
  plan->update = std::make_shared<Executable>(compile(u, options_.target, copts));
  const int64_t update_bytes = planned_bytes(*plan->update);
  DS_CHECK(update_bytes <= budget, ValueError, over, "; the optimizer update alone needs ",
           update_bytes, " bytes");
  return plan;
}

StepResult TrainStep::step_micro(const MicroPlan& plan, const Tensor& input, const Tensor& target) {
  std::map<std::string, Tensor> feeds, acc;
  for (const auto& [name, slot] : params_) {
    feeds["param:" + name] = *slot;
    acc["acc:" + name] = Tensor::zeros(slot->shape(), slot->dtype());
  }
  for (const auto& [name, slot] : buffers_) feeds["buffer:" + name] = *slot;
  if (loss_scale_.defined()) feeds["loss_scale"] = loss_scale_;
  double loss = 0;
  DType loss_dtype = DType::Float32;
  std::vector<Tensor> outputs;
  for (int64_t start = 0; start < plan.batch; start += plan.micro) {
    feeds["input"] = input.slice(0, start, start + plan.micro);
    feeds["target"] = target.slice(0, start, start + plan.micro);
    for (const auto& [name, a] : acc) feeds[name] = a;
    std::map<std::string, Tensor> outs = plan.gradients->run(feeds);
    for (auto& [name, a] : acc) a = outs.at("new_" + name);
    // Each micro-batch's forward sees the buffers the previous one left (running statistics).
    for (size_t b : plan.new_buffers) {
      const std::string& name = buffers_[b].first;
      *buffers_[b].second = outs.at("new_buffer:" + name);
      feeds["buffer:" + name] = *buffers_[b].second;
    }
    const Tensor& part_loss = outs.at("loss");
    loss_dtype = part_loss.dtype();
    loss += element_as_double(part_loss, 0) * static_cast<double>(plan.micro) / static_cast<double>(plan.batch);
    if (options_.return_output) outputs.push_back(outs.at("output"));
  }

  std::map<std::string, Tensor> update_feeds = std::move(acc);
  for (const auto& [name, slot] : params_) {
    update_feeds["param:" + name] = *slot;
    const auto& state = opt_.state_for(slot, *slot);
    const auto names = opt_.state_names();
    for (size_t s = 0; s < names.size(); ++s) update_feeds["state:" + name + ":" + names[s]] = state[s];
  }
  const std::vector<double> scalars = opt_.scalars(opt_.steps() + 1);
  for (size_t s = 0; s < scalars.size(); ++s)
    update_feeds["scalar:" + opt_.scalar_names()[s]] = Tensor::scalar(scalars[s]);
  if (loss_scale_.defined()) {
    update_feeds["loss_scale"] = loss_scale_;
    update_feeds["good_steps"] = good_steps_;
  }
  std::map<std::string, Tensor> outs = plan.update->run(update_feeds);
  for (const auto& [name, slot] : params_) {
    auto& state = opt_.state_for(slot, *slot);
    *slot = outs.at("new_param:" + name);
    for (size_t s = 0; s < state.size(); ++s) state[s] = outs.at("new_state:" + name + ":" + std::to_string(s));
  }
  bool skipped = false;
  if (loss_scale_.defined()) {
    skipped = outs.at("found_inf").item<bool>();
    loss_scale_ = outs.at("new_loss_scale");
    good_steps_ = outs.at("new_good_steps");
  }
  if (!skipped) opt_.count_step();  // a skipped step must not advance Adam's bias correction
  return {Tensor::scalar(loss, loss_dtype), outputs.empty() ? Tensor() : concat(outputs, 0), skipped};
}

}  // namespace ds::optim
