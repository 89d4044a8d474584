// Tracing the step the debugger inspects, and the node-by-node re-run that
// finds the first op producing a NaN/Inf.
#include <cmath>
#include <map>
#include <sstream>

#include "ds/autodiff.h"
#include "ds/debug.h"
#include "ds/nn/layers.h"
#include "ds/op.h"
#include "ds/ops.h"
#include "tools/debug_trace.h"

namespace ds::debug {
namespace detail {
namespace {

// Symbolic placeholders in the module's slots while tracing; restored after.
class SlotSwap {
 public:
  SlotSwap(Graph& g, std::vector<std::pair<std::string, Tensor*>> slots, const std::string& prefix)
      : slots_(std::move(slots)) {
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

 private:
  std::vector<std::pair<std::string, Tensor*>> slots_;
  std::vector<Tensor> saved_, symbolic_;
};

int node_count(const Graph& g) { return static_cast<int>(g.nodes().size()); }

// "Linear(in_features=3, ...)" -> "Linear"
std::string type_name(const nn::Module& m) {
  const std::string n = m.name();
  return n.substr(0, n.find('('));
}

// "fc2.weight" -> "fc2"; a top-level parameter belongs to the model ("").
std::string module_of(const std::string& param) {
  const auto dot = param.rfind('.');
  return dot == std::string::npos ? "" : param.substr(0, dot);
}

}  // namespace

TracedStep trace_step(nn::Module& model, const optim::LossFn& loss, const TensorType& input,
                      const TensorType& target) {
  TracedStep t;
  Graph& g = t.graph;
  const auto param_slots = model.parameter_slots();
  std::vector<std::pair<int, int>> layer_ranges;  // [begin, end) node ids per Sequential child
  std::vector<std::string> child_names;
  std::map<int, std::string> param_layer;  // placeholder node id -> module path
  std::vector<Tensor> params;
  int forward_begin = 0, loss_begin = 0, backward_begin = 0;
  {
    SlotSwap p(g, param_slots, "param:");
    SlotSwap b(g, model.buffer_slots(), "buffer:");
    params = p.placeholders();
    for (size_t i = 0; i < params.size(); ++i)
      param_layer[params[i].impl().value.node] = module_of(param_slots[i].first);
    Tensor x = g.placeholder("input", input.shape, input.dtype);
    Tensor y = g.placeholder("target", target.shape, target.dtype);
    forward_begin = node_count(g);
    if (dynamic_cast<nn::Sequential*>(&model)) {
      for (auto& [name, child] : model.named_children()) {
        const int begin = node_count(g);
        x = child->forward(x);
        layer_ranges.emplace_back(begin, node_count(g));
        child_names.push_back(name);
        t.activations.emplace_back(name + ":" + type_name(*child), x);
      }
      t.output = x;
    } else {
      t.output = model.forward(x);
    }
    t.activations.emplace_back("output", t.output);
    loss_begin = node_count(g);
    t.loss = loss(t.output, y);
    DS_CHECK(t.loss.is_symbolic() && t.loss.impl().graph == g.data(), ValueError,
             "debug: the loss does not depend on the model output");
  }
  backward_begin = node_count(g);
  const std::vector<Tensor> grads = grad(g, t.loss, params);
  for (size_t i = 0; i < params.size(); ++i) t.grads.emplace_back(param_slots[i].first, grads[i]);

  const auto& nodes = g.nodes();
  t.layer.assign(nodes.size(), "");
  t.phase.assign(nodes.size(), "");
  for (auto& [id, layer] : param_layer) t.layer[id] = layer;
  for (size_t r = 0; r < layer_ranges.size(); ++r)
    for (int id = layer_ranges[r].first; id < layer_ranges[r].second; ++id) t.layer[id] = child_names[r];
  for (const Node& n : nodes) {
    const int id = n.id;
    t.phase[id] = id < forward_begin ? "input"
                  : id < loss_begin   ? "forward"
                  : id < backward_begin ? "loss"
                                        : "backward";
    if (!t.layer[id].empty() || t.phase[id] == "input" || t.phase[id] == "loss") continue;
    // A parameter read names the layer; otherwise the nearest forward value read
    // (a gradient op reads its layer's forward values); otherwise the newest input.
    std::string by_param, by_forward, by_newest;
    int forward_id = -1, newest_id = -1;
    for (const ValueRef& in : n.inputs) {
      auto it = param_layer.find(in.node);
      if (it != param_layer.end()) by_param = it->second;
      if (t.phase[in.node] == "forward" && in.node > forward_id) {
        forward_id = in.node;
        by_forward = t.layer[in.node];
      }
      if (in.node > newest_id) {
        newest_id = in.node;
        by_newest = t.layer[in.node];
      }
    }
    t.layer[id] = !by_param.empty() ? by_param : !by_forward.empty() ? by_forward : by_newest;
  }
  return t;
}

}  // namespace detail

namespace {

template <typename T> TensorStats stats_of(const T* p, int64_t n) {
  TensorStats s;
  s.numel = n;
  double sum = 0, sq = 0;
  int64_t finite = 0;
  s.min = INFINITY;
  s.max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(p[i]);
    if (!std::isfinite(v)) continue;
    ++finite;
    sum += v;
    sq += v * v;
    s.min = std::min(s.min, v);
    s.max = std::max(s.max, v);
  }
  s.nonfinite = n - finite;
  if (finite == 0) {
    s.min = s.max = s.mean = s.std = s.norm = NAN;
    return s;
  }
  s.mean = sum / double(finite);
  // Two passes for the variance: sum of squares minus mean^2 cancels badly.
  double var = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(p[i]);
    if (std::isfinite(v)) var += (v - s.mean) * (v - s.mean);
  }
  s.std = std::sqrt(var / double(finite));
  s.norm = std::sqrt(sq);
  return s;
}

}  // namespace

TensorStats tensor_stats(const Tensor& t) {
  if (t.numel() == 0) return {};
  // float32 (nearly every tensor in training) is read in place; others as float64.
  if (t.dtype() == DType::Float32) {
    const Tensor c = t.contiguous();
    return stats_of(c.data<float>(), c.numel());
  }
  const Tensor d = t.to(DType::Float64).contiguous();
  return stats_of(d.data<double>(), d.numel());
}

bool all_finite(const Tensor& t) {
  if (!is_floating(t.dtype())) return true;
  if (t.dtype() == DType::Float32) {
    const Tensor c = t.contiguous();
    const float* p = c.data<float>();
    for (int64_t i = 0, n = c.numel(); i < n; ++i)
      if (!std::isfinite(p[i])) return false;
    return true;
  }
  return tensor_stats(t).nonfinite == 0;
}

std::optional<NonFiniteReport> find_first_nonfinite(nn::Module& model, const optim::LossFn& loss,
                                                    const Tensor& input, const Tensor& target,
                                                    int64_t step) {
  const detail::TracedStep t = detail::trace_step(model, loss, {input.dtype(), input.shape()},
                                                  {target.dtype(), target.shape()});
  std::map<std::string, Tensor> feeds = {{"input", input}, {"target", target}};
  for (auto& [n, v] : model.named_parameters()) feeds["param:" + n] = v;
  for (auto& [n, slot] : model.buffer_slots()) feeds["buffer:" + n] = *slot;

  const auto& nodes = t.graph.nodes();
  std::vector<std::vector<Tensor>> values(nodes.size());
  for (const Node& n : nodes) {
    std::vector<Tensor>& out = values[n.id];
    if (n.op->name == "placeholder") {
      out = {feeds.at(n.name)};
    } else if (n.op->name == "constant") {
      out = {std::get<Tensor>(n.attrs.at("value"))};
    } else {
      std::vector<Tensor> ins;
      for (const ValueRef& in : n.inputs) ins.push_back(values[in.node][in.output]);
      out = apply(n.op->name, ins, n.attrs);
    }
    bool finite = true;
    for (const Tensor& v : out) finite = finite && all_finite(v);
    if (finite) continue;
    // Every earlier value is finite (we stop at the first), so the inputs are.
    NonFiniteReport r;
    r.step = step;
    r.node = n.id;
    r.op = n.op->name;
    r.node_label = n.label();
    r.layer = t.layer[n.id];
    r.phase = t.phase[n.id];
    std::ostringstream m;
    if (n.op->name == "placeholder") {
      m << "step " << step << ": the fed value '" << n.name << "' contains NaN or Inf";
    } else {
      m << "step " << step << ": first non-finite value produced by " << r.node_label << " ("
        << r.phase;
      if (!r.layer.empty()) m << ", layer " << r.layer;
      m << ") from finite inputs";
    }
    r.message = m.str();
    return r;
  }
  return std::nullopt;
}

}  // namespace ds::debug
