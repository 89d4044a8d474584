#include "optim/train_step_trace.h"

#include <algorithm>
#include <cfloat>

#include "ds/autodiff.h"
#include "ds/ops.h"

namespace ds::optim::detail {

SlotSwap::SlotSwap(Graph& g, const Slots& slots, const std::string& prefix) : slots_(slots) {
  for (auto& [name, slot] : slots_) {
    saved_.push_back(*slot);
    *slot = g.placeholder(prefix + name, slot->shape(), slot->dtype());
    symbolic_.push_back(*slot);
  }
}

SlotSwap::~SlotSwap() {
  for (size_t i = 0; i < slots_.size(); ++i) *slots_[i].second = saved_[i];
}

TracedForward trace_forward(Graph& g, nn::Module& model, const LossFn& loss_fn, const Slots& params,
                            const Slots& buffers, const TensorType& input, const TensorType& target) {
  TracedForward t;
  SlotSwap param_swap(g, params, "param:");
  SlotSwap buffer_swap(g, buffers, "buffer:");
  t.params = param_swap.placeholders();
  Tensor x = g.placeholder("input", input.shape, input.dtype);
  Tensor y = g.placeholder("target", target.shape, target.dtype);
  t.output = model.forward(x);
  t.loss = loss_fn(t.output, y);
  DS_CHECK(t.loss.is_symbolic() && t.loss.impl().graph == g.data(), ValueError,
           "TrainStep: the loss does not depend on the model output");
  for (size_t i = 0; i < buffers.size(); ++i)
    if (!buffers[i].second->same(buffer_swap.placeholders()[i]))
      t.new_buffers.emplace_back(i, *buffers[i].second);
  return t;
}

LossScaling::LossScaling(Graph& g)
    : scale(g.placeholder("loss_scale", {})), good_steps(g.placeholder("good_steps", {})) {}

std::vector<Tensor> LossScaling::unscale(std::vector<Tensor> grads, int64_t interval) {
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

void add_updates(Graph& g, const Optimizer& opt, const Slots& params,
                 const std::vector<Tensor>& param_ph, std::vector<Tensor> grads, double clip,
                 const LossScaling* scaling) {
  if (clip > 0) grads = clip_grad_norm(grads, clip).first;
  std::vector<Tensor> scalars;
  for (const auto& sn : opt.scalar_names()) scalars.push_back(g.placeholder("scalar:" + sn, {}));
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<Tensor> state;
    for (const auto& sn : opt.state_names())
      state.push_back(g.placeholder("state:" + params[i].first + ":" + sn, param_ph[i].shape(),
                                    param_ph[i].dtype()));
    std::vector<Tensor> upd = opt.update(param_ph[i], grads[i], state, scalars);
    if (scaling)  // a skipped step keeps the parameter and its state
      for (size_t k = 0; k < upd.size(); ++k)
        upd[k] = where(scaling->found_inf, k == 0 ? param_ph[i] : state[k - 1], upd[k]);
    g.output(upd[0], "new_param:" + params[i].first);
    for (size_t k = 1; k < upd.size(); ++k)
      g.output(upd[k], "new_state:" + params[i].first + ":" + std::to_string(k - 1));
  }
}

std::vector<size_t> positions(const std::vector<IOSpec>& specs, const std::vector<std::string>& names) {
  std::vector<size_t> pos;
  for (const auto& n : names) {
    auto it = std::find_if(specs.begin(), specs.end(), [&](const IOSpec& s) { return s.name == n; });
    DS_CHECK(it != specs.end(), NotFoundError, "train step: the executable has no '", n, "'");
    pos.push_back(static_cast<size_t>(it - specs.begin()));
  }
  return pos;
}

}  // namespace ds::optim::detail
