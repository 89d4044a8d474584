// TrainStep / EvalStep: trace a module with symbolic values swapped into its
// parameter and buffer slots, compile once per input signature, then run the
// executable each step and swap its outputs back into the slots. No graph is
// rebuilt per step; the per-step host work is feeding and swapping tensors.
#include <algorithm>
#include <optional>

#include "ds/autodiff.h"
#include "ds/ops.h"
#include "ds/optim.h"
#include "optim/train_step_trace.h"
#include "passes/pass_manager.h"
#include "runtime/micro_batch.h"

namespace ds::optim {

using detail::LossScaling;
using detail::positions;

struct TrainStep::Compiled {
  std::shared_ptr<Executable> exe;
  std::vector<std::string> feed_names;  // in our feed order
  std::vector<size_t> feed_pos;         // our feed i -> executable input feed_pos[i]
  size_t loss_out = 0, output_out = 0;
  std::vector<size_t> param_out;
  std::vector<std::vector<size_t>> state_out;
  std::vector<std::pair<size_t, size_t>> buffer_out;  // (buffer index, output position)
  bool loss_scaling = false;
  size_t found_inf_out = 0, scale_out = 0, good_steps_out = 0;
  // Set when the whole batch is over options.memory_budget: the step runs as
  // micro-batches with gradient accumulation instead of `exe`.
  std::shared_ptr<MicroPlan> micro;
};

TrainStep::TrainStep(nn::Module& model, Optimizer& optimizer, LossFn loss, TrainStepOptions options)
    : model_(model), opt_(optimizer), loss_(std::move(loss)), options_(std::move(options)) {
  DS_CHECK(loss_, ValueError, "TrainStep: the loss function is empty");
  params_ = model_.parameter_slots();
  buffers_ = model_.buffer_slots();
  DS_CHECK(!params_.empty(), ValueError, "TrainStep: the model has no parameters");
  DS_CHECK(options_.memory_budget >= 0, ValueError,
           "TrainStep: memory_budget must be >= 0 bytes (0: unlimited), got ", options_.memory_budget);
  passes::precision_dtype(options_.precision);  // throws on an unknown precision
  if (options_.precision == "fp16") {
    DS_CHECK(options_.initial_loss_scale > 0 && options_.loss_scale_growth_interval > 0, ValueError,
             "TrainStep: fp16 loss scaling needs initial_loss_scale > 0 and "
             "loss_scale_growth_interval > 0, got ",
             options_.initial_loss_scale, " and ", options_.loss_scale_growth_interval);
    loss_scale_ = Tensor::scalar(options_.initial_loss_scale);
    good_steps_ = Tensor::scalar(0.0);
  }
}

double TrainStep::loss_scale() const {
  return loss_scale_.defined() ? loss_scale_.item<float>() : 1.0;
}

TrainStep::Compiled& TrainStep::compiled(const TensorType& input, const TensorType& target) {
  const std::vector<TensorType> sig = {input, target};
  for (auto& [s, c] : cache_)
    if (s == sig) return *c;

  Graph g;
  auto c = std::make_shared<Compiled>();
  const detail::TracedForward t =
      detail::trace_forward(g, model_, loss_, params_, buffers_, input, target);
  std::optional<LossScaling> scaling;
  c->loss_scaling = loss_scale_.defined();
  std::vector<Tensor> grads;
  if (c->loss_scaling) {
    scaling.emplace(g);
    grads = scaling->unscale(grad(g, mul(t.loss, scaling->scale), t.params),
                             options_.loss_scale_growth_interval);
  } else {
    grads = grad(g, t.loss, t.params);
  }
  g.output(t.loss, "loss");
  if (options_.return_output) g.output(t.output, "output");
  detail::add_updates(g, opt_, params_, t.params, std::move(grads), options_.clip_grad_norm,
                      scaling ? &*scaling : nullptr);
  std::vector<std::string> out_names = {"loss"};
  if (options_.return_output) out_names.push_back("output");
  for (size_t i = 0; i < params_.size(); ++i) {
    out_names.push_back("new_param:" + params_[i].first);
    for (size_t k = 0; k < opt_.state_names().size(); ++k)
      out_names.push_back("new_state:" + params_[i].first + ":" + std::to_string(k));
  }
  for (const auto& [b, value] : t.new_buffers) {
    const std::string n = "new_buffer:" + buffers_[b].first;
    g.output(value, n);
    out_names.push_back(n);
    c->buffer_out.emplace_back(b, 0);
  }
  if (scaling) {
    for (const auto& [v, n] : {std::pair{scaling->found_inf, "found_inf"},
                               {scaling->new_scale, "new_loss_scale"},
                               {scaling->new_good_steps, "new_good_steps"}}) {
      g.output(v, n);
      out_names.push_back(n);
    }
  }
  CompileOptions copts;
  copts.precision = options_.precision;
  c->exe = std::make_shared<Executable>(compile(g, options_.target, copts));
  if (options_.memory_budget > 0) {
    const int64_t need = planned_bytes(*c->exe);
    if (need > options_.memory_budget) {
      c->micro = plan_micro(input, target, need);
      c->exe = c->micro->gradients;
      cache_.emplace_back(sig, c);
      return *c;
    }
  }

  // Feed order: params, states, buffers, input, target, scalars.
  for (auto& [n, _] : params_) c->feed_names.push_back("param:" + n);
  for (size_t i = 0; i < params_.size(); ++i)
    for (const auto& sn : opt_.state_names())
      c->feed_names.push_back("state:" + params_[i].first + ":" + sn);
  for (auto& [n, _] : buffers_) c->feed_names.push_back("buffer:" + n);
  c->feed_names.push_back("input");
  c->feed_names.push_back("target");
  for (const auto& sn : opt_.scalar_names()) c->feed_names.push_back("scalar:" + sn);
  if (c->loss_scaling) {
    c->feed_names.push_back("loss_scale");
    c->feed_names.push_back("good_steps");
  }
  c->feed_pos = positions(c->exe->inputs(), c->feed_names);
  DS_CHECK(c->exe->inputs().size() == c->feed_names.size(), ValueError, "TrainStep: expected ",
           c->feed_names.size(), " executable inputs, got ", c->exe->inputs().size());

  const auto out_pos = positions(c->exe->outputs(), out_names);
  size_t k = 0;
  c->loss_out = out_pos[k++];
  if (options_.return_output) c->output_out = out_pos[k++];
  const size_t n_state = opt_.state_names().size();
  for (size_t i = 0; i < params_.size(); ++i) {
    c->param_out.push_back(out_pos[k++]);
    c->state_out.emplace_back();
    for (size_t s = 0; s < n_state; ++s) c->state_out.back().push_back(out_pos[k++]);
  }
  for (auto& [_, pos] : c->buffer_out) pos = out_pos[k++];
  if (c->loss_scaling) {
    c->found_inf_out = out_pos[k++];
    c->scale_out = out_pos[k++];
    c->good_steps_out = out_pos[k++];
  }
  cache_.emplace_back(sig, c);
  return *c;
}

const Executable& TrainStep::executable(const TensorType& input, const TensorType& target) {
  return *compiled(input, target).exe;
}

int64_t TrainStep::micro_batch_size(const TensorType& input, const TensorType& target) {
  const Compiled& c = compiled(input, target);
  return c.micro ? c.micro->micro : (input.shape.empty() ? 1 : input.shape[0]);
}

StepResult TrainStep::step(const Tensor& input, const Tensor& target) {
  DS_CHECK(input.defined() && target.defined(), ValueError, "TrainStep: undefined input or target");
  Compiled& c = compiled({input.dtype(), input.shape()}, {target.dtype(), target.shape()});
  if (c.micro) return step_micro(*c.micro, input, target);
  const int64_t t = opt_.steps() + 1;
  std::vector<Tensor> ours;
  ours.reserve(c.feed_names.size());
  for (auto& [_, slot] : params_) ours.push_back(*slot);
  for (auto& [_, slot] : params_) {
    const auto& st = opt_.state_for(slot, *slot);
    ours.insert(ours.end(), st.begin(), st.end());
  }
  for (auto& [_, slot] : buffers_) ours.push_back(*slot);
  ours.push_back(input);
  ours.push_back(target);
  for (double v : opt_.scalars(t)) ours.push_back(Tensor::scalar(v));
  if (c.loss_scaling) {
    ours.push_back(loss_scale_);
    ours.push_back(good_steps_);
  }
  // On a GPU every feed goes there, so the outputs (new parameters and optimizer
  // state) stay there: the next step feeds them without crossing the bus.
  const Device dev = Device::parse(c.exe->target());
  std::vector<Tensor> feeds(ours.size());
  for (size_t i = 0; i < ours.size(); ++i) feeds[c.feed_pos[i]] = std::move(ours[i]).to(dev);

  std::vector<Tensor> outs = c.exe->run(feeds);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor* slot = params_[i].second;
    auto& st = opt_.state_for(slot, *slot);
    *slot = outs[c.param_out[i]];
    for (size_t s = 0; s < st.size(); ++s) st[s] = outs[c.state_out[i][s]];
  }
  for (auto& [b, pos] : c.buffer_out) *buffers_[b].second = outs[pos];
  bool skipped = false;
  if (c.loss_scaling) {
    skipped = outs[c.found_inf_out].to(Device::cpu()).item<bool>();
    loss_scale_ = outs[c.scale_out];
    good_steps_ = outs[c.good_steps_out];
  }
  // A skipped step is no update: Adam's bias correction must not advance.
  if (!skipped) opt_.count_step();
  // The loss and the model's output come back where the input was given.
  return {outs[c.loss_out].to(input.device()),
          options_.return_output ? outs[c.output_out].to(input.device()) : Tensor(), skipped};
}

namespace {

// `slot` on `device`: moved there once (as model.to("cuda")), fed in place afterwards.
const Tensor& on_device(Tensor& slot, Device device) {
  if (slot.device() != device) slot = slot.to(device);
  return slot;
}

}  // namespace

EvalStep::EvalStep(nn::Module& model, std::string target) : model_(model), target_(std::move(target)) {
  params_ = model_.parameter_slots();
  buffers_ = model_.buffer_slots();
}

Tensor EvalStep::run(const Tensor& input) {
  const TensorType sig{input.dtype(), input.shape()};
  const Executable* exe = nullptr;
  for (auto& [s, e] : cache_)
    if (s == sig) exe = &e;
  if (!exe) {
    Graph g;
    const bool was_training = model_.is_training();
    model_.eval();
    Tensor out;
    try {
      detail::SlotSwap params(g, params_, "param:");
      detail::SlotSwap buffers(g, buffers_, "buffer:");
      Tensor x = g.placeholder("input", input.shape(), input.dtype());
      out = model_.forward(x);
    } catch (...) {
      model_.train(was_training);
      throw;
    }
    model_.train(was_training);
    g.output(out, "output");
    cache_.emplace_back(sig, compile(g, target_));
    exe = &cache_.back().second;
  }
  const Device dev = Device::parse(exe->target());
  std::map<std::string, Tensor> feeds;
  for (auto& [n, slot] : params_) feeds["param:" + n] = on_device(*slot, dev);
  for (auto& [n, slot] : buffers_) feeds["buffer:" + n] = on_device(*slot, dev);
  feeds["input"] = input.to(dev);
  return exe->run(feeds).at("output").to(input.device());
}

}  // namespace ds::optim
