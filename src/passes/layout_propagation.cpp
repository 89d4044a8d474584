// Layout propagation: see layout_propagation.h. Chains are the connected
// components of candidate nodes (convolutions, layout-agnostic ops, max_pool2d)
// linked through activation inputs (a convolution's x and residual; every input
// of the others); a component with fewer than two convolutions stays plain,
// since one convolution gains nothing over reordering inside its own kernel.
#include "passes/layout_propagation.h"

#include <map>
#include <numeric>
#include <set>

#include "ds/op.h"
#include "ir/ops/blocked_layout.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

bool is_conv(const Node& n) { return n.op->name == "conv2d" || n.op->name == "fused_conv2d"; }

bool static_nchw_f32(const TensorType& t) {
  if (t.dtype != DType::Float32 || t.shape.size() != 4) return false;
  for (int64_t d : t.shape)
    if (d == dyn) return false;
  return true;
}

// conv2d / max_pool2d with explicit channels-last activations: already NHWC.
bool channels_last(const Node& n) {
  const auto it = n.attrs.find("channels_last");
  return it != n.attrs.end() && std::get<bool>(it->second);
}

bool candidate(const Graph& g, const Node& n) {
  if (n.outputs.size() != 1 || !static_nchw_f32(n.outputs[0])) return false;
  const std::string& op = n.op->name;
  if (channels_last(n)) return false;
  if (is_conv(n))
    return std::get<int64_t>(n.attrs.at("groups")) == 1 && static_nchw_f32(g.type(n.inputs[0]));
  // Max pooling keeps the zero channels zero; it joins a chain, not counted as a
  // conv. Floor mode only: the blocked kernels pool in it (ceil_mode would run
  // the float64 reference).
  if (op == "max_pool2d")
    return !std::get<bool>(n.attrs.at("ceil_mode")) && static_nchw_f32(g.type(n.inputs[0]));
  // Unary ops with f(0) = 0 keep the padding channels zero.
  static const std::set<std::string> unary = {"relu", "leaky_relu", "gelu", "silu", "tanh", "neg"};
  static const std::set<std::string> binary = {"add", "sub", "mul"};
  const size_t arity = unary.count(op) ? 1 : binary.count(op) ? 2 : 0;
  if (arity == 0 || n.inputs.size() != arity) return false;
  for (const ValueRef& v : n.inputs)
    if (!(g.type(v) == n.outputs[0])) return false;  // no broadcasting, no type change
  return true;
}

// Does input `i` of candidate `n` carry an activation (the blocked value)?
bool carries(const Node& n, size_t i) {
  if (!is_conv(n)) return true;
  const auto res = n.attrs.find("has_residual");
  const bool residual = res != n.attrs.end() && std::get<bool>(res->second);
  return i == 0 || (residual && i + 1 == n.inputs.size());
}

struct UnionFind {
  std::vector<int> parent;
  explicit UnionFind(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int find(int x) { return parent[x] == x ? x : parent[x] = find(parent[x]); }
  void unite(int a, int b) { parent[find(a)] = find(b); }
};

// The nodes to rewrite: members of components holding two or more convolutions.
std::set<int> chain_nodes(const Graph& g) {
  const auto& nodes = g.nodes();
  std::vector<bool> cand(nodes.size());
  for (const Node& n : nodes) cand[n.id] = candidate(g, n);
  UnionFind uf(nodes.size());
  for (const Node& n : nodes) {
    if (!cand[n.id]) continue;
    for (size_t i = 0; i < n.inputs.size(); ++i)
      if (carries(n, i) && cand[n.inputs[i].node]) uf.unite(n.id, n.inputs[i].node);
  }
  std::map<int, int> convs;  // component root -> its convolutions
  for (const Node& n : nodes)
    if (cand[n.id] && is_conv(n)) ++convs[uf.find(n.id)];
  std::set<int> keep;
  for (const Node& n : nodes)
    if (cand[n.id] && convs[uf.find(n.id)] >= 2) keep.insert(n.id);
  return keep;
}

// The block of a value with `channels` channels.
int64_t block_for(int64_t block, int64_t channels) { return block == ops::kChannelsLast ? channels : block; }

// blocked_conv2d's attributes for a conv2d or fused_conv2d node.
AttrMap blocked_conv_attrs(const Graph& g, const Node& n, int64_t block) {
  AttrMap a = n.attrs;
  a.erase("channels_last");  // false for every candidate
  if (n.op->name == "conv2d") {
    a["activation"] = std::string("none");
    a["alpha"] = 0.0;
    a["has_bias"] = n.inputs.size() > 2;
    a["has_residual"] = false;
  }
  a["block"] = block_for(block, n.outputs[0].shape[1]);
  // Only a contiguous constant reaches the kernel as the same buffer on every run.
  Tensor w;
  a["weights_constant"] = constant_value(g, n.inputs[1], &w) && w.is_contiguous();
  return a;
}

// The op a chain node becomes, and its attributes.
std::string blocked_op(const Node& n) {
  if (is_conv(n)) return "blocked_conv2d";
  return n.op->name == "max_pool2d" ? "blocked_max_pool2d" : n.op->name;
}

AttrMap blocked_attrs(const Graph& g, const Node& n, int64_t block) {
  if (is_conv(n)) return blocked_conv_attrs(g, n, block);
  AttrMap a = n.attrs;
  a.erase("channels_last");  // false for every candidate
  if (n.op->name == "max_pool2d") a["channels"] = n.outputs[0].shape[1];
  return a;
}

// A training graph: its backward ops read every activation in the plain layout,
// so each chain value would need a from_blocked as well.
bool has_backward_ops(const Graph& g) {
  for (const Node& n : g.nodes())
    if (n.op->name.find("_backward") != std::string::npos) return true;
  return false;
}

}  // namespace

Graph layout_propagation(const Graph& g, int64_t block) {
  if ((block <= 0 && block != ops::kChannelsLast) || has_backward_ops(g)) return g;
  const std::set<int> keep = chain_nodes(g);
  if (keep.empty()) return g;
  // Values of chain nodes read in the plain layout: graph outputs, readers
  // outside the chain, and non-activation inputs (weights) of chain convolutions.
  std::set<std::pair<int, int>> read_plain;
  for (const Node& n : g.nodes())
    for (size_t i = 0; i < n.inputs.size(); ++i)
      if (!keep.count(n.id) || !carries(n, i)) read_plain.insert({n.inputs[i].node, n.inputs[i].output});
  for (const auto& [_, v] : g.outputs()) read_plain.insert({v.node, v.output});

  Rewriter rw(g);
  std::map<std::pair<int, int>, Tensor> blocked;  // old value -> its blocked form
  auto blocked_of = [&](ValueRef v) {
    auto it = blocked.find({v.node, v.output});
    if (it != blocked.end()) return it->second;
    const int64_t channels = rw.src().type(v).shape[1];
    const Tensor t = rw.dst().add("to_blocked", {rw.map(v)}, {{"block", block_for(block, channels)}})[0];
    return blocked[{v.node, v.output}] = t;
  };
  return rw.run([&](const Node& n) {
    if (!keep.count(n.id)) return false;
    std::vector<Tensor> in;
    for (size_t i = 0; i < n.inputs.size(); ++i)
      in.push_back(carries(n, i) ? blocked_of(n.inputs[i]) : rw.map(n.inputs[i]));
    const Tensor out = rw.dst().add(blocked_op(n), in, blocked_attrs(g, n, block), n.name)[0];
    blocked[{n.id, 0}] = out;
    if (read_plain.count({n.id, 0}))
      rw.set({n.id, 0}, rw.dst().add("from_blocked", {out}, {{"channels", n.outputs[0].shape[1]}})[0]);
    return true;
  });
}

namespace {
std::function<int64_t()>& block_provider() {
  static std::function<int64_t()> provider;
  return provider;
}
}  // namespace

void set_conv_channel_block_provider(std::function<int64_t()> provider) {
  block_provider() = std::move(provider);
}

int64_t conv_channel_block() {
  static const int64_t block = block_provider() ? block_provider()() : 0;
  return block;
}

}  // namespace ds::passes
