// See batch_norm_epilogue.h.
#include "passes/batch_norm_epilogue.h"

#include <map>
#include <vector>

#include "ds/op.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

using Ref = std::pair<int, int>;
Ref ref(ValueRef v) { return {v.node, v.output}; }

// `v`'s readers (value_readers' ids), empty when none.
const std::vector<int>& readers_of(const ValueReaders& r, Ref v) {
  static const std::vector<int> none;
  const auto it = r.find(v);
  return it == r.end() ? none : it->second;
}

bool is_static(const Shape& s) {
  for (int64_t e : s)
    if (e == dyn) return false;
  return true;
}

bool is_zero_constant(const Graph& g, ValueRef v) {
  Tensor value;
  return constant_value(g, v, &value) && value.numel() == 1 && value.item<double>() == 0.0;
}

// `v`'s readers are one relu and masks gt(v, 0) (relu's gradient): returns the relu.
int relu_with_masks(const Graph& g, const ValueReaders& r, Ref v) {
  int relu = -1;
  for (int id : readers_of(r, v)) {
    if (id < 0) return -1;
    const Node& n = g.node(id);
    if (n.op->name == "relu" && relu < 0) {
      relu = id;
    } else if (!(n.op->name == "gt" && ref(n.inputs[0]) == v && is_zero_constant(g, n.inputs[1]))) {
      return -1;
    }
  }
  return relu;
}

struct Plan {
  int relu = -1;           // the relu node the batch norm takes over
  int add = -1;            // the residual add (or -1)
  ValueRef residual{};     // the add's other operand
  Ref normalized{};        // y after its reshapes (what relu or add read)
};

// What batch norm `bn` takes over: y, through reshapes each read once, feeds
// relu (+ masks), or an add whose other operand is already computed (it becomes
// the fused op's input) and whose sum feeds relu (+ masks).
bool plan_for(const Graph& g, const ValueReaders& r, const Node& bn, Plan* p) {
  if (bn.op->name != "batch_norm_train" || std::get<bool>(bn.attrs.at("relu")) ||
      bn.inputs.size() > 3 || !is_static(bn.outputs[0].shape))
    return false;
  Ref v = {bn.id, 0};
  auto only_reader = [&](Ref value) {
    const std::vector<int>& rs = readers_of(r, value);
    return rs.size() == 1 ? rs[0] : -1;
  };
  while (only_reader(v) >= 0 && g.node(only_reader(v)).op->name == "reshape")
    v = {only_reader(v), 0};
  p->normalized = v;
  p->relu = relu_with_masks(g, r, v);
  if (p->relu >= 0) return true;
  if (only_reader(v) < 0 || bn.inputs.size() != 3) return false;
  const Node& add = g.node(only_reader(v));
  if (add.op->name != "add") return false;
  const ValueRef other = ref(add.inputs[0]) == v ? add.inputs[1] : add.inputs[0];
  const TensorType &t = g.type({v.first, v.second}), &o = g.type(other);
  if (o.dtype != t.dtype || o.shape != t.shape) return false;
  // The residual through reshapes made after the batch norm (autocast redoes a
  // reshape on the low value where the add reads it): the op reads it reshaped.
  ValueRef residual = other;
  while (residual.node >= bn.id && g.node(residual.node).op->name == "reshape")
    residual = g.node(residual.node).inputs[0];
  if (residual.node >= bn.id) return false;
  p->relu = relu_with_masks(g, r, {add.id, 0});
  if (p->relu < 0) return false;
  p->add = add.id;
  p->residual = residual;
  return true;
}

}  // namespace

Graph batch_norm_epilogue(const Graph& g) {
  const ValueReaders readers = value_readers(g);
  std::map<int, Plan> plans;  // by batch-norm node
  std::map<int, Ref> takes;   // add and relu nodes taken over -> the value standing for them
  for (const Node& n : g.nodes()) {
    Plan p;
    if (!plan_for(g, readers, n, &p)) continue;
    plans[n.id] = p;
    if (p.add >= 0) takes[p.add] = p.normalized;
    takes[p.relu] = p.normalized;
  }
  if (plans.empty()) return g;
  Rewriter rw(g);
  return rw.run([&](const Node& n) {
    if (const auto it = takes.find(n.id); it != takes.end()) {
      // normalized now maps to relu(y [+ residual]) of the fused op
      rw.set({n.id, 0}, rw.map({it->second.first, it->second.second}));
      return true;
    }
    const auto it = plans.find(n.id);
    if (it == plans.end()) return false;
    std::vector<Tensor> in = rw.mapped_inputs(n);
    if (it->second.add >= 0) {
      Tensor residual = rw.map(it->second.residual);
      const Shape& y = n.outputs[0].shape;
      if (residual.shape() != y) residual = rw.dst().add("reshape", {residual}, {{"shape", y}})[0];
      in.push_back(residual);
    }
    AttrMap attrs = n.attrs;
    attrs["relu"] = true;
    const std::vector<Tensor> outs = rw.dst().add(n.op->name, in, attrs, n.name);
    for (size_t i = 0; i < outs.size(); ++i) rw.set({n.id, static_cast<int>(i)}, outs[i]);
    return true;
  });
}

}  // namespace ds::passes
