// Epilogue fusion: conv2d / linear / matmul followed by a bias add (matmul), a
// residual add and/or an activation becomes one fused_conv2d / fused_linear node:
//   y = activation(op(x, w) [+ bias] [+ residual])
// so the epilogue runs on the output while it is still in cache (a GEMM tile, or a
// oneDNN post-op) instead of as separate kernels over memory. A link joins the
// chain only when the value before it has that link as its one reader.
#include <map>
#include <set>

#include "ds/op.h"
#include "ir/ops/fused_epilogue.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

// A planned fusion: the anchor (library op), the nodes it absorbs, the extra inputs.
struct Chain {
  int anchor = -1, last = -1;
  std::vector<int> inner;  // anchor and links before `last`: they disappear
  ValueRef bias{-1, 0}, residual{-1, 0};
  std::string activation = "none";
  double alpha = 0;
};

// The activation a node computes, as a fused op names it; "" when it is none of them.
std::string activation_of(const Node& n, double* alpha) {
  const std::string& op = n.op->name;
  if (op == "relu" || op == "silu" || op == "sigmoid" || op == "tanh") return op;
  if (op == "leaky_relu") {
    *alpha = std::get<double>(n.attrs.at("negative_slope"));
    return op;
  }
  if (op == "gelu") return std::get<std::string>(n.attrs.at("approximate")) == "tanh" ? "gelu_tanh" : "gelu";
  return "";
}

class Planner {
 public:
  explicit Planner(const Graph& g) : g_(g), uses_(value_readers(g)) {}

  // The chain starting at library node `a`, or nullopt when nothing fuses.
  std::optional<Chain> plan(const Node& a) {
    const std::string& op = a.op->name;
    if (op != "conv2d" && op != "linear" && op != "matmul") return std::nullopt;
    // fused_conv2d is NCHW only.
    if (op == "conv2d" && std::get<bool>(a.attrs.at("channels_last"))) return std::nullopt;
    const TensorType out = a.outputs[0];
    if (out.dtype != DType::Float32 && out.dtype != DType::Float64) return std::nullopt;
    if (op == "matmul" && (g_.type(a.inputs[1]).shape.size() != 2 || out.shape.size() < 2))
      return std::nullopt;
    Chain c;
    c.anchor = c.last = a.id;
    // matmul + [N] bias.
    if (op == "matmul") {
      if (const Node* n = only_reader(c.last); n && n->op->name == "add") {
        const ValueRef other = other_operand(*n, c.last);
        const TensorType& t = g_.type(other);
        if (t.dtype == out.dtype && t.shape == Shape{out.shape.back()} && n->outputs[0] == out) {
          c.bias = other;
          c.inner.push_back(c.last);
          c.last = n->id;
        }
      }
    }
    // + residual of the result's type.
    if (const Node* n = only_reader(c.last); n && n->op->name == "add") {
      const ValueRef other = other_operand(*n, c.last);
      if (other.node != c.last && g_.type(other) == out && n->outputs[0] == out) {
        c.residual = other;
        c.inner.push_back(c.last);
        c.last = n->id;
      }
    }
    if (const Node* n = only_reader(c.last); n && n->outputs[0] == out) {
      double alpha = 0;
      const std::string act = activation_of(*n, &alpha);
      if (!act.empty()) {
        c.activation = act;
        c.alpha = alpha;
        c.inner.push_back(c.last);
        c.last = n->id;
      }
    }
    if (c.last == c.anchor) return std::nullopt;
    return c;
  }

 private:
  // The one node reading output 0 of `id` (nullptr when it has several or is an output).
  const Node* only_reader(int id) const {
    auto it = uses_.find({id, 0});
    if (it == uses_.end() || it->second.size() != 1 || it->second[0] < 0) return nullptr;
    const Node& n = g_.node(it->second[0]);
    return n.outputs.size() == 1 ? &n : nullptr;
  }
  // The operand of binary `n` that is not `id`'s output (x + x gives {id, 0}).
  static ValueRef other_operand(const Node& n, int id) {
    if (n.inputs.size() != 2) return {id, 0};
    return n.inputs[0].node == id ? n.inputs[1] : n.inputs[0];
  }

  const Graph& g_;
  ValueReaders uses_;
};

}  // namespace

Graph epilogue_fusion(const Graph& g) {
  Planner planner(g);
  std::map<int, Chain> by_last;  // chains keyed by the node whose value they replace
  std::set<int> absorbed;        // nodes inside a chain, before its last
  std::set<int> claimed;         // every node of a chain: a link joins one chain only
  for (const Node& n : g.nodes()) {
    auto c = planner.plan(n);
    if (!c || claimed.count(c->last)) continue;
    absorbed.insert(c->inner.begin(), c->inner.end());
    claimed.insert(c->inner.begin(), c->inner.end());
    claimed.insert(c->last);
    by_last[c->last] = *c;
  }
  if (by_last.empty()) return g;
  Rewriter rw(g);
  return rw.run([&](const Node& n) {
    if (absorbed.count(n.id)) return true;
    auto it = by_last.find(n.id);
    if (it == by_last.end()) return false;
    const Chain& c = it->second;
    const Node& a = g.node(c.anchor);
    std::vector<Tensor> inputs = rw.mapped_inputs(a);
    AttrMap attrs = a.attrs;
    attrs.erase("channels_last");  // always false here (plan() skips channels-last convs)
    const bool has_bias = c.bias.node >= 0 || (a.op->name != "matmul" && a.inputs.size() > 2);
    if (c.bias.node >= 0) inputs.push_back(rw.map(c.bias));
    if (c.residual.node >= 0) inputs.push_back(rw.map(c.residual));
    attrs["activation"] = c.activation;
    attrs["alpha"] = c.alpha;
    attrs["has_bias"] = has_bias;
    attrs["has_residual"] = c.residual.node >= 0;
    std::string op = "fused_conv2d";
    if (a.op->name != "conv2d") {
      op = "fused_linear";
      attrs["base"] = a.op->name;
    }
    rw.set({n.id, 0}, rw.dst().add(op, inputs, attrs, n.name.empty() ? a.name : n.name)[0]);
    return true;
  });
}

}  // namespace ds::passes
