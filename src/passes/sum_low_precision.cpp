// See sum_low_precision.h.
#include "passes/sum_low_precision.h"

#include <map>
#include <set>
#include <vector>

#include "ds/op.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

using Ref = std::pair<int, int>;

// A cast from a float type to a wider one (every value exactly representable).
bool widening_cast(const Graph& g, const Node& n) {
  if (n.op->name != "cast") return false;
  const DType from = g.type(n.inputs[0]).dtype, to = n.outputs[0].dtype;
  return is_floating(from) && is_floating(to) && dtype_size(to) > dtype_size(from);
}

// What a sum reads: the widening cast and the reshapes after it (innermost first).
struct Chain {
  int cast = -1;
  std::vector<int> reshapes;
};

bool chain_of(const Graph& g, const Node& sum, Chain* c) {
  if (sum.op->name != "sum" || !is_floating(sum.outputs[0].dtype)) return false;
  int id = sum.inputs[0].node;
  std::vector<int> reshapes;
  while (g.node(id).op->name == "reshape") {
    reshapes.insert(reshapes.begin(), id);
    id = g.node(id).inputs[0].node;
  }
  if (!widening_cast(g, g.node(id))) return false;
  c->cast = id;
  c->reshapes = std::move(reshapes);
  return true;
}

}  // namespace

Graph sum_low_precision(const Graph& g) {
  std::map<int, Chain> sums;  // by sum node
  for (const Node& n : g.nodes()) {
    Chain c;
    if (chain_of(g, n, &c)) sums[n.id] = c;
  }
  if (sums.empty()) return g;
  // The casts and reshapes read only by rewritten sums and by other such nodes are
  // not copied; graph order puts readers after what they read, so walk it backwards.
  std::set<int> chained;
  for (const auto& [_, c] : sums) {
    chained.insert(c.cast);
    chained.insert(c.reshapes.begin(), c.reshapes.end());
  }
  const ValueReaders readers = value_readers(g);
  std::set<int> dropped;
  for (auto it = chained.rbegin(); it != chained.rend(); ++it) {
    const auto r = readers.find(Ref{*it, 0});
    bool unread = true;
    if (r != readers.end())
      for (int id : r->second) unread = unread && id >= 0 && (sums.count(id) || dropped.count(id));
    if (unread) dropped.insert(*it);
  }
  Rewriter rw(g);
  return rw.run([&](const Node& n) {
    if (dropped.count(n.id)) return true;
    const auto it = sums.find(n.id);
    if (it == sums.end()) return false;
    const Chain& c = it->second;
    Tensor x = rw.map(g.node(c.cast).inputs[0]);
    for (int id : c.reshapes) x = rw.dst().add("reshape", {x}, g.node(id).attrs)[0];
    AttrMap attrs = n.attrs;
    attrs["dtype"] = std::string(dtype_name(n.outputs[0].dtype));
    rw.set({n.id, 0}, rw.dst().add("sum", {x}, attrs, n.name)[0]);
    return true;
  });
}

}  // namespace ds::passes
