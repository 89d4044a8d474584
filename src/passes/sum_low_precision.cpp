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

// What a sum reads: the widening cast and the reshapes after it, in the order they apply.
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

// A sum over the last axis alone: loop fusion may put it in one region with the
// cast and the cast's other readers, reading x once.
bool last_axis_only(const Graph& g, const Node& sum) {
  const auto& axes = std::get<std::vector<int64_t>>(sum.attrs.at("axes"));
  const int64_t rank = static_cast<int64_t>(g.type(sum.inputs[0]).shape.size());
  return axes.size() == 1 && rank > 0 && (axes[0] == -1 || axes[0] == rank - 1);
}

// The casts and reshapes of the chains of `sums` read only by those sums and by
// other such nodes (and no graph output): they are not copied. Graph order puts
// readers after what they read, so the walk goes backwards.
std::set<int> unread_after(const std::map<int, Chain>& sums, const ValueReaders& readers) {
  std::set<int> chained;
  for (const auto& [_, c] : sums) {
    chained.insert(c.cast);
    chained.insert(c.reshapes.begin(), c.reshapes.end());
  }
  std::set<int> dropped;
  for (auto it = chained.rbegin(); it != chained.rend(); ++it) {
    const auto r = readers.find(Ref{*it, 0});
    bool unread = true;
    if (r != readers.end())
      for (int id : r->second) unread = unread && id >= 0 && (sums.count(id) || dropped.count(id));
    if (unread) dropped.insert(*it);
  }
  return dropped;
}

}  // namespace

Graph sum_low_precision(const Graph& g) {
  std::map<int, Chain> sums;  // by sum node
  for (const Node& n : g.nodes()) {
    Chain c;
    if (chain_of(g, n, &c)) sums[n.id] = c;
  }
  // A last-axis sum whose cast stays for other readers keeps reading it: loop
  // fusion (of a GPU target, which fuses bfloat16/float16 casts) may compute it in
  // the region that computes those readers, which reads x once.
  const ValueReaders readers = value_readers(g);
  std::set<int> dropped;
  for (bool changed = true; changed;) {
    dropped = unread_after(sums, readers);
    changed = std::erase_if(sums, [&](const auto& s) {
                return last_axis_only(g, g.node(s.first)) && !dropped.count(s.second.cast);
              }) > 0;
  }
  if (sums.empty()) return g;
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
