// Reverse mode over a Graph: walks the nodes between the wrt values and the
// outputs in reverse topological order (the graph is append-only, so reverse id
// order), asks each OpDef's VJP rule for its input cotangents, and sums them.
// The backward nodes are appended to the same graph.
#include <map>
#include <sstream>

#include "ds/autodiff.h"
#include "ds/op.h"
#include "ds/ops.h"

namespace ds {
namespace {

using Key = std::pair<int, int>;  // (node, output)
Key key(ValueRef v) { return {v.node, v.output}; }

// A concrete tensor becomes a constant of `g`; a symbolic one must belong to `g`.
Tensor in_graph(Graph& g, const Tensor& t, const std::string& what) {
  if (!t.is_symbolic()) return g.constant(t);
  DS_CHECK(t.impl().graph == g.data(), ValueError, what, " is a value of another graph");
  return t;
}

std::string input_label(const Graph& g, ValueRef v) {
  return g.node(v.node).label() + (v.output ? ":" + std::to_string(v.output) : "");
}

class Backward {
 public:
  explicit Backward(Graph g) : g_(std::move(g)) {}

  std::vector<Tensor> run(const std::vector<Tensor>& outputs, const std::vector<Tensor>& cotangents,
                          const std::vector<Tensor>& wrt) {
    DS_CHECK(outputs.size() == cotangents.size(), ValueError, "vjp: ", outputs.size(),
             " outputs but ", cotangents.size(), " cotangents");
    std::vector<ValueRef> wrt_refs;
    for (size_t i = 0; i < wrt.size(); ++i) {
      const Tensor w = in_graph(g_, wrt[i], "grad: wrt[" + std::to_string(i) + "]");
      DS_CHECK(is_floating(w.dtype()), TypeError, "grad: wrt[", i, "] (",
               input_label(g_, w.value()), ") has dtype ", dtype_name(w.dtype()),
               "; only floating values have gradients");
      wrt_refs.push_back(w.value());
    }
    const int last = mark_reaching(outputs);
    mark_active(wrt_refs, last);

    for (size_t k = 0; k < outputs.size(); ++k) {
      const Tensor out = in_graph(g_, outputs[k], "vjp: outputs[" + std::to_string(k) + "]");
      Tensor ct = in_graph(g_, cotangents[k], "vjp: cotangents[" + std::to_string(k) + "]");
      DS_CHECK(same_extents(ct.shape(), out.shape()), ShapeError, "vjp: cotangent ", k,
               " has shape ", shape_str(ct.shape()), ", its output has shape ",
               shape_str(out.shape()));
      accumulate(out.value(), ct);
    }
    for (int id = last; id >= 0; --id) backprop_node(id);

    std::vector<Tensor> result;
    for (size_t i = 0; i < wrt_refs.size(); ++i) {
      auto it = grads_.find(key(wrt_refs[i]));
      if (it != grads_.end()) {
        result.push_back(it->second);
        continue;
      }
      const TensorType& t = g_.type(wrt_refs[i]);
      // No path from this wrt value to the outputs: its gradient is zero.
      result.push_back(is_static(t.shape) ? g_.constant(Tensor::zeros(t.shape, t.dtype))
                                          : mul(g_.value(wrt_refs[i]),
                                                scalar_like(0.0, g_.value(wrt_refs[i]))));
    }
    return result;
  }

 private:
  static bool same_extents(const Shape& a, const Shape& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i] != b[i] && a[i] != dyn && b[i] != dyn) return false;
    return true;
  }

  // Nodes from which some output can be reached; returns the highest output node.
  int mark_reaching(const std::vector<Tensor>& outputs) {
    const auto& nodes = g_.nodes();
    reaches_.assign(nodes.size(), false);
    int last = -1;
    for (const Tensor& o : outputs) {
      DS_CHECK(o.is_symbolic() && o.impl().graph == g_.data(), ValueError,
               "grad: the loss/output is not a value of this graph");
      reaches_[o.value().node] = true;
      last = std::max(last, o.value().node);
    }
    for (int id = last; id >= 0; --id)
      if (reaches_[id])
        for (const ValueRef& v : nodes[id].inputs) reaches_[v.node] = true;
    return last;
  }

  // Floating values that depend on a wrt value.
  void mark_active(const std::vector<ValueRef>& wrt, int last) {
    const auto& nodes = g_.nodes();
    for (const ValueRef& w : wrt) active_[key(w)] = true;
    for (int id = 0; id <= last; ++id) {
      const Node& n = nodes[id];
      bool any = false;
      for (const ValueRef& v : n.inputs) any |= is_active(v);
      if (!any) continue;
      for (int o = 0; o < static_cast<int>(n.outputs.size()); ++o)
        if (is_floating(n.outputs[o].dtype)) active_[{id, o}] = true;
    }
  }

  bool is_active(ValueRef v) const {
    auto it = active_.find(key(v));
    return it != active_.end() && it->second;
  }

  void accumulate(ValueRef v, Tensor g) {
    const TensorType& t = g_.type(v);
    if (g.dtype() != t.dtype) g = cast(g, t.dtype);
    auto [it, added] = grads_.try_emplace(key(v), g);
    if (!added) it->second = add(it->second, g);
  }

  void backprop_node(int id) {
    if (!reaches_[id]) return;
    const Node n = g_.node(id);  // a copy: the VJP appends nodes (and may reallocate)
    bool needed = false;
    for (const ValueRef& v : n.inputs) needed |= is_active(v);
    if (!needed) return;
    std::vector<Tensor> out_grads(n.outputs.size());
    bool any = false;
    for (int o = 0; o < static_cast<int>(n.outputs.size()); ++o) {
      auto it = grads_.find({id, o});
      if (it != grads_.end()) {
        out_grads[o] = it->second;
        any = true;
      }
    }
    if (!any) return;
    DS_CHECK(static_cast<bool>(n.op->vjp), ValueError, "grad: ", n.label(), " (op '",
             n.op->name, "') is not differentiable, but a gradient must flow through it");

    std::vector<TensorType> in_types;
    std::vector<Tensor> inputs, outputs;
    for (const ValueRef& v : n.inputs) {
      in_types.push_back(g_.type(v));
      inputs.push_back(g_.value(v));
    }
    for (int o = 0; o < static_cast<int>(n.outputs.size()); ++o) outputs.push_back(g_.value({id, o}));
    OpContext ctx{*n.op, n.attrs, in_types, n.label()};
    std::vector<Tensor> in_grads = n.op->vjp(VjpArgs{ctx, inputs, outputs, out_grads});
    DS_CHECK(in_grads.size() <= n.inputs.size(), ValueError, "grad: the VJP rule of ", n.label(),
             " returned ", in_grads.size(), " gradients for ", n.inputs.size(), " inputs");
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const ValueRef v = n.inputs[i];
      if (!is_active(v)) continue;
      DS_CHECK(i < in_grads.size() && in_grads[i].defined(), ValueError, "grad: ", n.label(),
               " (op '", n.op->name, "') gives no gradient for its input ", i, " (",
               input_label(g_, v), "), but one is required");
      Tensor gi = in_graph(g_, in_grads[i], "grad");
      DS_CHECK(same_extents(gi.shape(), g_.type(v).shape), ShapeError, "grad: the VJP rule of ",
               n.label(), " returned shape ", shape_str(gi.shape()), " for input ", i,
               " of shape ", shape_str(g_.type(v).shape));
      accumulate(v, gi);
    }
  }

  Graph g_;
  std::vector<bool> reaches_;
  std::map<Key, bool> active_;
  std::map<Key, Tensor> grads_;
};

}  // namespace

std::vector<Tensor> vjp(const Graph& graph, const std::vector<Tensor>& outputs,
                        const std::vector<Tensor>& cotangents, const std::vector<Tensor>& wrt) {
  return Backward(graph).run(outputs, cotangents, wrt);
}

std::vector<Tensor> grad(const Graph& graph, const Tensor& loss, const std::vector<Tensor>& wrt) {
  DS_CHECK(loss.defined(), ValueError, "grad: the loss is an undefined tensor");
  DS_CHECK(loss.numel() == 1 && is_static(loss.shape()), ShapeError,
           "grad: the loss must have one element, got shape ", shape_str(loss.shape()),
           " (reduce it, e.g. with ds::mean, or use ds::vjp with a cotangent)");
  DS_CHECK(is_floating(loss.dtype()), TypeError, "grad: the loss has dtype ",
           dtype_name(loss.dtype()), "; expected a floating dtype");
  Graph g = graph;
  Tensor seed = g.constant(Tensor::full(loss.shape(), 1.0, loss.dtype()), "grad_seed");
  return Backward(g).run({loss}, {seed}, wrt);
}

}  // namespace ds
