// SGD, Adam, AdamW update rules (as PyTorch computes them) and clip_grad_norm.
#include <cmath>

#include "ds/ops.h"
#include "ds/optim.h"

namespace ds::optim {

Optimizer::Optimizer(double lr) : lr_(lr) { set_lr(lr); }

void Optimizer::set_lr(double lr) {
  DS_CHECK(lr >= 0 && std::isfinite(lr), ValueError, "optimizer: lr must be finite and >= 0, got ",
           lr);
  lr_ = lr;
}

std::vector<Tensor>& Optimizer::state_for(const Tensor* slot, const Tensor& like) {
  auto it = state_.find(slot);
  if (it == state_.end()) {
    std::vector<Tensor> s;
    for (size_t i = 0; i < state_names().size(); ++i) s.push_back(Tensor::zeros(like.shape(), like.dtype()));
    it = state_.emplace(slot, std::move(s)).first;
  }
  return it->second;
}

void Optimizer::step(const std::vector<Tensor*>& params, const std::vector<Tensor>& grads) {
  DS_CHECK(params.size() == grads.size(), ValueError, "optimizer step: ", params.size(),
           " parameters but ", grads.size(), " gradients");
  ++steps_;
  const std::vector<double> values = scalars(steps_);
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor& p = *params[i];
    // Scalars in the parameter's dtype: exact for float64, and no promotion of float32.
    std::vector<Tensor> sc;
    for (double v : values) sc.push_back(Tensor::scalar(v, p.dtype()));
    DS_CHECK(grads[i].shape() == p.shape(), ShapeError, "optimizer step: gradient ", i,
             " has shape ", shape_str(grads[i].shape()), ", its parameter ", shape_str(p.shape()));
    std::vector<Tensor>& state = state_for(params[i], p);
    std::vector<Tensor> out = update(p, grads[i], state, sc);
    p = out[0];
    for (size_t k = 0; k < state.size(); ++k) state[k] = out[k + 1];
  }
}

SGD::SGD(SGDOptions o) : Optimizer(o.lr), o_(o) {
  DS_CHECK(o.momentum >= 0, ValueError, "SGD: momentum must be >= 0, got ", o.momentum);
  DS_CHECK(o.weight_decay >= 0, ValueError, "SGD: weight_decay must be >= 0, got ", o.weight_decay);
  DS_CHECK(!o.nesterov || o.momentum > 0, ValueError, "SGD: nesterov needs momentum > 0");
}

std::vector<std::string> SGD::state_names() const {
  if (o_.momentum > 0) return {"momentum_buffer"};
  return {};
}

std::vector<double> SGD::scalars(int64_t) const { return {lr()}; }

std::vector<Tensor> SGD::update(const Tensor& p, const Tensor& grad, const std::vector<Tensor>& state,
                                const std::vector<Tensor>& sc) const {
  Tensor g = grad;
  if (o_.weight_decay != 0) g = g + p * o_.weight_decay;
  if (o_.momentum == 0) return {p - g * sc[0]};
  // PyTorch starts the buffer at the first gradient; with a zero buffer and no
  // dampening, momentum * 0 + g is the same thing.
  Tensor buf = state[0] * o_.momentum + g;
  Tensor d = o_.nesterov ? g + buf * o_.momentum : buf;
  return {p - d * sc[0], buf};
}

Adam::Adam(AdamOptions o, bool decoupled) : Optimizer(o.lr), o_(o), decoupled_(decoupled) {
  const char* name = decoupled ? "AdamW" : "Adam";
  DS_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, ValueError, name,
           ": betas must be in [0, 1), got (", o.beta1, ", ", o.beta2, ")");
  DS_CHECK(o.eps >= 0, ValueError, name, ": eps must be >= 0, got ", o.eps);
  DS_CHECK(o.weight_decay >= 0, ValueError, name, ": weight_decay must be >= 0, got ",
           o.weight_decay);
}

std::vector<std::string> Adam::scalar_names() const {
  return {"step_size", "inv_sqrt_bias_correction2", "decay"};
}

std::vector<double> Adam::scalars(int64_t step) const {
  const double t = static_cast<double>(step);
  const double bc1 = 1 - std::pow(o_.beta1, t), bc2 = 1 - std::pow(o_.beta2, t);
  return {lr() / bc1, 1.0 / std::sqrt(bc2), decoupled_ ? 1.0 - lr() * o_.weight_decay : 1.0};
}

std::vector<Tensor> Adam::update(const Tensor& param, const Tensor& grad,
                                 const std::vector<Tensor>& state,
                                 const std::vector<Tensor>& sc) const {
  Tensor p = param, g = grad;
  if (o_.weight_decay != 0) {
    if (decoupled_)
      p = p * sc[2];
    else
      g = g + p * o_.weight_decay;
  }
  Tensor m = state[0] * o_.beta1 + g * (1 - o_.beta1);
  Tensor v = state[1] * o_.beta2 + square(g) * (1 - o_.beta2);
  Tensor denom = sqrt(v) * sc[1] + o_.eps;
  return {p - m / denom * sc[0], m, v};
}

std::pair<std::vector<Tensor>, Tensor> clip_grad_norm(const std::vector<Tensor>& grads,
                                                      double max_norm) {
  DS_CHECK(!grads.empty(), ValueError, "clip_grad_norm: no gradients");
  DS_CHECK(max_norm > 0, ValueError, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  Tensor total;
  for (const Tensor& g : grads) {
    Tensor s = sum(square(g));
    total = total.defined() ? total + s : s;
  }
  Tensor norm = sqrt(total);
  // min(1, max_norm / (norm + 1e-6)), the factor PyTorch applies.
  Tensor factor = minimum(scalar_like(max_norm, norm) / (norm + 1e-6), scalar_like(1.0, norm));
  std::vector<Tensor> out;
  for (const Tensor& g : grads) out.push_back(g * cast(factor, g.dtype()));
  return {out, norm};
}

}  // namespace ds::optim
