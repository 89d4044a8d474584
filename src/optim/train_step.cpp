// TrainStep / EvalStep: trace a module with symbolic values swapped into its
// parameter and buffer slots, compile once per input signature, then run the
// executable each step and swap its outputs back into the slots. No graph is
// rebuilt per step; the per-step host work is feeding and swapping tensors.
#include <algorithm>
#include <cfloat>

#include "ds/autodiff.h"
#include "ds/ops.h"
#include "ds/optim.h"
#include "passes/pass_manager.h"

namespace ds::optim {
namespace {

// Puts symbolic placeholders into the module's slots for the duration of a trace,
// restoring the concrete tensors afterwards (also when the trace throws).
class SlotSwap {
 public:
  SlotSwap(Graph& g, const std::vector<std::pair<std::string, Tensor*>>& slots,
           const std::string& prefix)
      : slots_(slots) {
    for (auto& [name, slot] : slots_) {
      saved_.push_back(*slot);
      *slot = g.placeholder(prefix + name, slot->shape(), slot->dtype());
      symbolic_.push_back(*slot);
    }
  }
  ~SlotSwap() {
    for (size_t i = 0; i < slots_.size(); ++i) *slots_[i].second = saved_[i];
  }
  const std::vector<Tensor>& placeholders() const { return symbolic_; }
  const std::vector<Tensor>& saved() const { return saved_; }

 private:
  const std::vector<std::pair<std::string, Tensor*>>& slots_;
  std::vector<Tensor> saved_, symbolic_;
};

// Positions of `names` in the executable's input (or output) list.
std::vector<size_t> positions(const std::vector<IOSpec>& specs, const std::vector<std::string>& names) {
  std::vector<size_t> pos;
  for (const auto& n : names) {
    auto it = std::find_if(specs.begin(), specs.end(), [&](const IOSpec& s) { return s.name == n; });
    DS_CHECK(it != specs.end(), NotFoundError, "train step: the executable has no '", n, "'");
    pos.push_back(static_cast<size_t>(it - specs.begin()));
  }
  return pos;
}

// fp16 dynamic loss scaling, in the graph: the gradients of loss * scale, divided by
// the scale; found_inf when any is Inf/NaN (their absolute sum is then not a finite
// float32); the scale halves on found_inf and doubles after `interval` good steps.
struct LossScaling {
  Tensor scale, good_steps;  // placeholders, 0-d float32
  Tensor found_inf, new_scale, new_good_steps;

  std::vector<Tensor> unscaled_grads(Graph& g, const Tensor& loss, const std::vector<Tensor>& params,
                                     int64_t interval) {
    std::vector<Tensor> grads = grad(g, mul(loss, scale), params);
    Tensor total;
    for (Tensor& gr : grads) {
      gr = div(gr, scale);
      const Tensor s = sum(abs(gr));
      total = total.defined() ? add(total, s) : s;
    }
    found_inf = logical_not(le(total, Tensor::scalar(FLT_MAX)));
    const Tensor grown = good_steps + 1.0;
    const Tensor grow = ge(grown, Tensor::scalar(static_cast<double>(interval)));
    const Tensor zero = Tensor::scalar(0.0);
    new_scale = where(found_inf, scale * 0.5, where(grow, scale * 2.0, scale));
    new_good_steps = where(found_inf, zero, where(grow, zero, grown));
    return grads;
  }
};

}  // namespace

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
};

TrainStep::TrainStep(nn::Module& model, Optimizer& optimizer, LossFn loss, TrainStepOptions options)
    : model_(model), opt_(optimizer), loss_(std::move(loss)), options_(std::move(options)) {
  DS_CHECK(loss_, ValueError, "TrainStep: the loss function is empty");
  params_ = model_.parameter_slots();
  buffers_ = model_.buffer_slots();
  DS_CHECK(!params_.empty(), ValueError, "TrainStep: the model has no parameters");
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
  std::vector<Tensor> state_ph;  // flattened [param][state]
  std::vector<std::vector<Tensor>> states;
  Tensor output, loss;
  std::vector<Tensor> new_buffers;
  std::vector<Tensor> grads;
  std::vector<Tensor> scalar_ph;
  std::vector<Tensor> param_ph;
  LossScaling scaling;
  c->loss_scaling = loss_scale_.defined();
  {
    SlotSwap params(g, params_, "param:");
    SlotSwap buffers(g, buffers_, "buffer:");
    param_ph = params.placeholders();
    const auto names = opt_.state_names();
    for (size_t i = 0; i < params_.size(); ++i) {
      states.emplace_back();
      for (const auto& sn : names)
        states.back().push_back(g.placeholder("state:" + params_[i].first + ":" + sn,
                                              param_ph[i].shape(), param_ph[i].dtype()));
    }
    Tensor x = g.placeholder("input", input.shape, input.dtype);
    Tensor y = g.placeholder("target", target.shape, target.dtype);
    for (const auto& sn : opt_.scalar_names()) scalar_ph.push_back(g.placeholder("scalar:" + sn, {}));
    output = model_.forward(x);
    loss = loss_(output, y);
    DS_CHECK(loss.is_symbolic() && loss.impl().graph == g.data(), ValueError,
             "TrainStep: the loss does not depend on the model output");
    for (size_t i = 0; i < buffers_.size(); ++i) new_buffers.push_back(*buffers_[i].second);
    for (size_t i = 0; i < buffers_.size(); ++i)
      if (!new_buffers[i].same(buffers.placeholders()[i]))
        c->buffer_out.emplace_back(i, 0);
  }
  if (c->loss_scaling) {
    scaling.scale = g.placeholder("loss_scale", {});
    scaling.good_steps = g.placeholder("good_steps", {});
    grads = scaling.unscaled_grads(g, loss, param_ph, options_.loss_scale_growth_interval);
  } else {
    grads = grad(g, loss, param_ph);
  }
  if (options_.clip_grad_norm > 0) grads = clip_grad_norm(grads, options_.clip_grad_norm).first;

  g.output(loss, "loss");
  g.output(output, "output");
  std::vector<std::string> out_names = {"loss", "output"};
  for (size_t i = 0; i < params_.size(); ++i) {
    std::vector<Tensor> upd = opt_.update(param_ph[i], grads[i], states[i], scalar_ph);
    if (c->loss_scaling)  // a skipped step keeps the parameter and its state
      for (size_t k = 0; k < upd.size(); ++k)
        upd[k] = where(scaling.found_inf, k == 0 ? param_ph[i] : states[i][k - 1], upd[k]);
    g.output(upd[0], "new_param:" + params_[i].first);
    out_names.push_back("new_param:" + params_[i].first);
    for (size_t k = 1; k < upd.size(); ++k) {
      const std::string n = "new_state:" + params_[i].first + ":" + std::to_string(k - 1);
      g.output(upd[k], n);
      out_names.push_back(n);
    }
  }
  for (auto& [b, _] : c->buffer_out) {
    const std::string n = "new_buffer:" + buffers_[b].first;
    g.output(new_buffers[b], n);
    out_names.push_back(n);
  }
  if (c->loss_scaling) {
    for (const auto& [t, n] : {std::pair{scaling.found_inf, "found_inf"},
                               {scaling.new_scale, "new_loss_scale"},
                               {scaling.new_good_steps, "new_good_steps"}}) {
      g.output(t, n);
      out_names.push_back(n);
    }
  }
  CompileOptions copts;
  copts.precision = options_.precision;
  c->exe = std::make_shared<Executable>(compile(g, options_.target, copts));

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
  c->output_out = out_pos[k++];
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

StepResult TrainStep::step(const Tensor& input, const Tensor& target) {
  DS_CHECK(input.defined() && target.defined(), ValueError, "TrainStep: undefined input or target");
  Compiled& c = compiled({input.dtype(), input.shape()}, {target.dtype(), target.shape()});
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
  std::vector<Tensor> feeds(ours.size());
  for (size_t i = 0; i < ours.size(); ++i) feeds[c.feed_pos[i]] = std::move(ours[i]);

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
    skipped = outs[c.found_inf_out].item<bool>();
    loss_scale_ = outs[c.scale_out];
    good_steps_ = outs[c.good_steps_out];
  }
  // A skipped step is no update: Adam's bias correction must not advance.
  if (!skipped) opt_.count_step();
  return {outs[c.loss_out], outs[c.output_out], skipped};
}

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
      SlotSwap params(g, params_, "param:");
      SlotSwap buffers(g, buffers_, "buffer:");
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
  std::map<std::string, Tensor> feeds;
  for (auto& [n, slot] : params_) feeds["param:" + n] = *slot;
  for (auto& [n, slot] : buffers_) feeds["buffer:" + n] = *slot;
  feeds["input"] = input;
  return exe->run(feeds).at("output");
}

}  // namespace ds::optim
