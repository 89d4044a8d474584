// Low-precision layout. Autocast narrows each matmul/conv/attention input to
// bfloat16 (float16) and widens each output back to float32, so the layout ops in
// between (GPT's q/k/v slice, the head reshape and permute, their gradients) move
// float32 copies of values that were narrow a moment ago and will be again.
//
// Exactness: widening is exact, narrowing a widened value gives it back, and a
// layout op only moves values (or writes a pad value the narrow type holds
// exactly), so L(widen(x)) == widen(L(x)) and narrow(L(y)) == L(narrow(y)) bit for bit.
//
// The float32 layout ops joined by their values form components. Each component's
// inputs ("bases") are either widened narrow values (their narrow version is free)
// or other float32 values (narrowing them costs a cast); its exits are narrowing
// casts and float32 readers. For each component the pass costs three ways to run
// it, in bytes moved, and keeps the cheapest (the graph as it is on a tie):
//   - as it is: every layout op in float32;
//   - all narrow: every layout op on narrow values, widened only where a float32
//     reader needs the value;
//   - by need: each layout op in the precision(s) its readers need, so an op
//     read both ways runs twice (a narrow copy is cheaper than the cast it saves).
#include "passes/low_precision_layout.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "ds/op.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

constexpr DType kWide = DType::Float32;
// Cost model only: a symbolic extent (the batch) counted as this many elements.
constexpr int64_t kSymbolicExtent = 64;

bool is_cast(const Graph& g, const Node& n, DType from, DType to) {
  return n.op->name == "cast" && g.type(n.inputs[0]).dtype == from && n.outputs[0].dtype == to;
}

// `v` written as float32 equals `v` written in `low` and widened.
bool exact_in(double v, DType low) {
  if (std::isnan(v)) return false;  // NaN payloads need not survive the narrow type
  const float f = static_cast<float>(v);
  if (static_cast<double>(f) != v) return false;
  const float back = low == DType::BFloat16 ? float(BFloat16(f)) : float(Half(f));
  return back == f && std::signbit(back) == std::signbit(f);
}

// A float32 layout op whose result on narrowed inputs is its result narrowed.
bool moves_values_exactly(const Graph& g, const Node& n, DType low) {
  static const std::set<std::string> ops = {"reshape", "permute", "flatten", "squeeze", "slice",
                                            "split", "broadcast_to", "concat", "stack"};
  if (n.op->name == "pad") {
    if (std::get<std::string>(n.attrs.at("mode")) == "constant" &&
        !exact_in(std::get<double>(n.attrs.at("value")), low))
      return false;
  } else if (!ops.count(n.op->name)) {
    return false;
  }
  for (const ValueRef& v : n.inputs)
    if (g.type(v).dtype != kWide) return false;
  for (const TensorType& t : n.outputs)
    if (t.dtype != kWide) return false;
  return !n.inputs.empty();
}

double elements(const Shape& s) {
  double n = 1;
  for (int64_t e : s) n *= static_cast<double>(e == dyn ? kSymbolicExtent : e);
  return n;
}

// Elements a layout op reads and writes: it writes its outputs and reads what it
// keeps (a slice reads its output's worth, a pad or broadcast its input).
double elements_moved(const Graph& g, const Node& n) {
  double in = 0, out = 0;
  for (const ValueRef& v : n.inputs) in += elements(g.type(v).shape);
  for (const TensorType& t : n.outputs) out += elements(t.shape);
  return out + std::min(in, out);
}

enum Mode : int { kNone = 0, kNarrow = 1, kFloat32 = 2 };

class Analysis {
 public:
  Analysis(const Graph& g, DType low) : g_(g), low_(low) {
    for (const Node& n : g.nodes()) {
      first_.push_back(static_cast<int>(refs_.size()));
      for (int o = 0; o < static_cast<int>(n.outputs.size()); ++o) refs_.push_back({n.id, o});
    }
    readers_.resize(refs_.size());
    parent_.resize(refs_.size());
    std::iota(parent_.begin(), parent_.end(), 0);
    in_region_.assign(g.nodes().size(), false);
    for (const Node& n : g.nodes()) {
      for (const ValueRef& v : n.inputs) readers_[id(v)].push_back(n.id);
      if (!moves_values_exactly(g, n, low)) continue;
      in_region_[n.id] = true;
      for (int o = 0; o < static_cast<int>(n.outputs.size()); ++o)
        for (const ValueRef& v : n.inputs) unite(id(v), id({n.id, o}));
    }
    for (const auto& [_, v] : g.outputs()) readers_[id(v)].push_back(-1);
    build_components();
  }

  struct Component {
    std::vector<int> nodes;   // region nodes, in graph order
    std::vector<int> values;  // their inputs and outputs
  };
  const std::vector<Component>& components() const { return components_; }

  int id(ValueRef v) const { return first_[v.node] + v.output; }
  ValueRef ref(int value) const { return refs_[value]; }
  bool in_region(int node) const { return node >= 0 && in_region_[node]; }
  bool is_base(int value) const { return !in_region_[refs_[value].node]; }
  // A base that is a widened narrow value: its narrow version is the cast's input.
  bool is_widened(int value) const {
    return is_base(value) && is_cast(g_, g_.node(refs_[value].node), low_, kWide);
  }
  bool narrows(int reader) const {
    return reader >= 0 && is_cast(g_, g_.node(reader), kWide, low_);
  }
  bool float32_exit(int value) const {
    for (int r : readers_[value])
      if (!in_region(r) && !narrows(r)) return true;
    return false;
  }
  const std::vector<int>& readers(int value) const { return readers_[value]; }

  // Bytes moved by the component's layout ops and casts with `mode` per node.
  double cost(const Component& c, const std::map<int, int>& mode) const {
    const double nb = static_cast<double>(dtype_size(low_)), wb = 4, cast = nb + wb;
    double bytes = 0;
    for (int n : c.nodes) {
      const double moved = elements_moved(g_, g_.node(n));
      if (mode.at(n) & kNarrow) bytes += moved * nb;
      if (mode.at(n) & kFloat32) bytes += moved * wb;
    }
    for (int v : c.values) {
      const int need = needed(v, mode);
      const double n = elements(g_.type(ref(v)).shape);
      if (is_base(v)) {
        if (is_widened(v) ? (need & kFloat32) : (need & kNarrow)) bytes += n * cast;
      } else {
        const int missing = need & ~mode.at(ref(v).node);  // precisions only a cast gives
        bytes += n * cast * ((missing & kNarrow ? 1 : 0) + (missing & kFloat32 ? 1 : 0));
      }
    }
    return bytes;
  }

  // The precisions `value`'s readers take it in.
  int needed(int value, const std::map<int, int>& mode) const {
    int need = kNone;
    for (int r : readers_[value]) {
      if (in_region(r)) need |= mode.at(r);
      else need |= narrows(r) ? kNarrow : kFloat32;
    }
    return need;
  }

  // Each node in the precisions its readers need (graph order reversed).
  std::map<int, int> by_need(const Component& c) const {
    std::map<int, int> mode;
    for (int n : c.nodes) mode[n] = kNone;
    for (auto it = c.nodes.rbegin(); it != c.nodes.rend(); ++it) {
      int m = kNone;
      for (int o = 0; o < static_cast<int>(g_.node(*it).outputs.size()); ++o)
        m |= needed(id({*it, o}), mode);
      mode[*it] = m == kNone ? kFloat32 : m;
    }
    return mode;
  }

 private:
  int find(int v) {
    while (parent_[v] != v) v = parent_[v] = parent_[parent_[v]];
    return v;
  }
  void unite(int a, int b) { parent_[find(a)] = find(b); }

  void build_components() {
    std::map<int, int> index;  // union-find root -> component
    auto component_of = [&](int value) -> Component& {
      auto [it, added] = index.try_emplace(find(value), static_cast<int>(components_.size()));
      if (added) components_.emplace_back();
      return components_[it->second];
    };
    std::vector<bool> listed(refs_.size(), false);
    for (const Node& n : g_.nodes()) {
      if (!in_region_[n.id]) continue;
      Component& c = component_of(id({n.id, 0}));
      c.nodes.push_back(n.id);
      auto list = [&](int v) {
        if (!listed[v]) c.values.push_back(v);
        listed[v] = true;
      };
      for (const ValueRef& v : n.inputs) list(id(v));
      for (int o = 0; o < static_cast<int>(n.outputs.size()); ++o) list(id({n.id, o}));
    }
  }

  const Graph& g_;
  DType low_;
  std::vector<int> first_;  // node -> id of its output 0
  std::vector<ValueRef> refs_;
  std::vector<std::vector<int>> readers_;  // value -> reading nodes (-1: a graph output)
  std::vector<int> parent_;
  std::vector<bool> in_region_;
  std::vector<Component> components_;
};

// Rebuilds `g` with the chosen modes (node -> kNarrow/kFloat32 bits) for the
// region nodes of the components that change.
class Rebuild {
 public:
  Rebuild(const Graph& g, const Analysis& a, DType low, const std::map<int, int>& mode)
      : a_(a), low_(low), mode_(mode), rw_(g), narrow_(refs(g)), wide_(refs(g)) {}

  Graph run() {
    return rw_.run([&](const Node& n) {
      if (mode_.count(n.id)) {
        emit(n);
        return true;
      }
      if (!a_.narrows(n.id) || !changed(a_.id(n.inputs[0]))) return false;
      rw_.set({n.id, 0}, narrow(a_.id(n.inputs[0])));
      return true;
    });
  }

 private:
  static size_t refs(const Graph& g) {
    size_t n = 0;
    for (const Node& node : g.nodes()) n += node.outputs.size();
    return n;
  }
  // A value of a changed component (its narrowing casts share one narrow version).
  bool changed(int v) const {
    if (!a_.is_base(v)) return mode_.count(a_.ref(v).node) > 0;
    for (int r : a_.readers(v))
      if (a_.in_region(r) && mode_.count(r)) return true;
    return false;
  }

  void emit(const Node& n) {
    const int m = mode_.at(n.id);
    std::vector<Tensor> narrow_in, wide_in;
    for (const ValueRef& v : n.inputs) {
      if (m & kNarrow) narrow_in.push_back(narrow(a_.id(v)));
      if (m & kFloat32) wide_in.push_back(wide(a_.id(v)));
    }
    auto& dst = rw_.dst();
    std::vector<Tensor> narrow_out, wide_out;
    if (m & kNarrow) narrow_out = dst.add(n.op->name, narrow_in, n.attrs, n.name);
    if (m & kFloat32) wide_out = dst.add(n.op->name, wide_in, n.attrs, n.name);
    for (int o = 0; o < static_cast<int>(n.outputs.size()); ++o) {
      const int v = a_.id({n.id, o});
      if (m & kNarrow) narrow_[v] = narrow_out[o];
      if (m & kFloat32) wide_[v] = wide_out[o];
      if (a_.float32_exit(v)) rw_.set({n.id, o}, wide(v));
    }
  }

  Tensor narrow(int v) {
    if (narrow_[v].defined()) return narrow_[v];
    const ValueRef r = a_.ref(v);
    if (a_.is_widened(v)) {
      narrow_[v] = rw_.map(rw_.src().node(r.node).inputs[0]);
    } else {
      narrow_[v] = rw_.dst().add("cast", {wide(v)}, {{"dtype", low_}})[0];
    }
    return narrow_[v];
  }

  Tensor wide(int v) {
    if (wide_[v].defined()) return wide_[v];
    if (a_.is_base(v)) return wide_[v] = rw_.map(a_.ref(v));
    return wide_[v] = rw_.dst().add("cast", {narrow(v)}, {{"dtype", kWide}})[0];
  }

  const Analysis& a_;
  DType low_;
  const std::map<int, int>& mode_;
  Rewriter rw_;
  std::vector<Tensor> narrow_, wide_;  // by value id
};

Graph narrow_layout(const Graph& g, DType low) {
  const Analysis a(g, low);
  std::map<int, int> chosen;  // region node -> mode, for the components that change
  for (const Analysis::Component& c : a.components()) {
    std::map<int, int> as_is, all_narrow;
    for (int n : c.nodes) {
      as_is[n] = kFloat32;
      all_narrow[n] = kNarrow;
    }
    const std::map<int, int> need = a.by_need(c);
    double best = a.cost(c, as_is);
    const std::map<int, int>* pick = nullptr;
    const std::map<int, int>* candidates[] = {&all_narrow, &need};
    for (const std::map<int, int>* m : candidates) {
      const double cost = a.cost(c, *m);
      if (cost < best) {
        best = cost;
        pick = m;
      }
    }
    if (pick) chosen.insert(pick->begin(), pick->end());
  }
  if (chosen.empty()) return g;
  return Rebuild(g, a, low, chosen).run();
}

}  // namespace

Graph low_precision_layout(const Graph& g) {
  Graph out = dead_code_elimination(g);
  for (DType low : {DType::BFloat16, DType::Float16}) out = narrow_layout(out, low);
  return dead_code_elimination(out);
}

}  // namespace ds::passes
