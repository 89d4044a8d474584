// See pad_classes.h.
#include "passes/pad_classes.h"

#include <limits>
#include <map>
#include <set>
#include <string>

#include "ds/op.h"
#include "ds/ops.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

using Ref = std::pair<int, int>;
Ref ref(ValueRef v) { return {v.node, v.output}; }

bool is_cross_entropy(const Node& n) {
  return (n.op->name == "softmax_cross_entropy" || n.op->name == "softmax_cross_entropy_backward") &&
         std::get<double>(n.attrs.at("label_smoothing")) == 0.0;
}

// A reshape that keeps the last axis (the classes) as it is.
bool keeps_last_axis(const Graph& g, const Node& n) {
  if (n.op->name != "reshape") return false;
  const Shape& in = g.type(n.inputs[0]).shape;
  const Shape& out = n.outputs[0].shape;
  return !in.empty() && !out.empty() && in.back() == out.back();
}

// A sum whose axes (none: all of them) include the last one.
bool reduces_last_axis(const Node& n, int rank) {
  const auto& axes = std::get<std::vector<int64_t>>(n.attrs.at("axes"));
  if (axes.empty()) return true;
  for (int64_t a : axes)
    if (a == rank - 1 || a == -1) return true;
  return false;
}

// Linear heads whose logits reach a softmax cross-entropy through reshapes.
std::set<int> classifier_heads(const Graph& g) {
  const ValueReaders readers = value_readers(g);
  auto reaches_loss = [&](const auto& self, Ref v) -> bool {
    const auto it = readers.find(v);
    if (it == readers.end()) return false;
    for (int id : it->second) {
      if (id < 0) continue;  // a graph output
      const Node& r = g.node(id);
      if (is_cross_entropy(r) && ref(r.inputs[0]) == v) return true;
      if (keeps_last_axis(g, r) && self(self, {r.id, 0})) return true;
    }
    return false;
  };
  std::set<int> heads;
  for (const Node& n : g.nodes()) {
    if (n.op->name != "linear" || !is_floating(n.outputs[0].dtype)) continue;
    const int64_t classes = n.outputs[0].shape.back();
    if (classes >= kPadClassesFrom && classes % kClassAlignment != 0 &&
        reaches_loss(reaches_loss, {n.id, 0}))
      heads.insert(n.id);
  }
  return heads;
}

}  // namespace

Graph pad_classes(const Graph& g) {
  const std::set<int> heads = classifier_heads(g);
  if (heads.empty()) return g;
  Rewriter rw(g);
  Graph& dst = rw.dst();
  struct Padded {
    Tensor value;     // padded on its last axis
    int64_t classes;  // the unpadded count
  };
  std::map<Ref, Padded> logits;   // logits and their gradients
  std::map<Ref, Tensor> weights;  // head weights [classes, in] -> padded on axis 0
  // Records a padded value; other readers get its first `classes` entries.
  auto keep = [&](ValueRef old, const Tensor& padded, int64_t classes) {
    logits[ref(old)] = {padded, classes};
    rw.set(old, slice(padded, padded.ndim() - 1, 0, classes));
  };
  return rw.run([&](const Node& n) {
    const std::string& op = n.op->name;
    std::vector<Tensor> in = rw.mapped_inputs(n);
    if (heads.count(n.id)) {
      const int64_t classes = n.outputs[0].shape.back();
      const int64_t padded = (classes + kClassAlignment - 1) / kClassAlignment * kClassAlignment;
      const std::vector<int64_t> pad_rows = {0, padded - classes};
      const double minus_inf = -std::numeric_limits<double>::infinity();
      const Tensor w = dst.add("pad", {in[1]}, {{"pads", pad_rows}})[0];
      const Tensor bias =
          in.size() > 2 ? in[2] : dst.constant(Tensor::zeros({classes}, in[1].dtype()));
      const Tensor b = dst.add("pad", {bias}, {{"pads", pad_rows}, {"value", minus_inf}})[0];
      weights[ref(n.inputs[1])] = w;
      keep({n.id, 0}, dst.add("linear", {in[0], w, b}, n.attrs, n.name)[0], classes);
      return true;
    }
    const auto found = n.inputs.empty() ? logits.end() : logits.find(ref(n.inputs[0]));
    if (found == logits.end()) return false;
    const Padded* x = &found->second;
    if (keeps_last_axis(g, n)) {
      std::vector<int64_t> shape = std::get<std::vector<int64_t>>(n.attrs.at("shape"));
      if (shape.back() != -1) shape.back() = x->value.shape().back();
      keep({n.id, 0}, dst.add("reshape", {x->value}, {{"shape", shape}}, n.name)[0], x->classes);
      return true;
    }
    if (is_cross_entropy(n)) {
      // The padding logits are -inf: probability 0, so the loss and lse are the
      // unpadded ones and the gradient's padding columns are 0.
      in[0] = x->value;
      const std::vector<Tensor> outs = dst.add(op, in, n.attrs, n.name);
      if (op == "softmax_cross_entropy_backward") {
        keep({n.id, 0}, outs[0], x->classes);
      } else {
        for (size_t i = 0; i < outs.size(); ++i) rw.set({n.id, static_cast<int>(i)}, outs[i]);
      }
      return true;
    }
    // d(input) = dlogits . W: the padding adds 0 * 0 terms.
    if (op == "matmul" && weights.count(ref(n.inputs[1]))) {
      rw.set({n.id, 0}, dst.add(op, {x->value, weights.at(ref(n.inputs[1]))}, n.attrs, n.name)[0]);
      return true;
    }
    // d(W) = dlogits^T . input: its first `classes` rows.
    if (op == "gemm" && n.inputs.size() == 2 && std::get<bool>(n.attrs.at("trans_a")) &&
        !std::get<bool>(n.attrs.at("trans_b"))) {
      const Tensor full = dst.add(op, {x->value, in[1]}, n.attrs, n.name)[0];
      rw.set({n.id, 0}, slice(full, 0, 0, x->classes));
      return true;
    }
    // d(b) = sum of dlogits over the leading axes: the first `classes` of the padded sum.
    if (op == "sum" && !reduces_last_axis(n, x->value.ndim())) {
      const Tensor full = dst.add(op, {x->value}, n.attrs, n.name)[0];
      rw.set({n.id, 0}, slice(full, full.ndim() - 1, 0, x->classes));
      return true;
    }
    return false;  // reads the unpadded slice
  });
}

}  // namespace ds::passes
