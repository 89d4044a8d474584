// Loop fusion: maximal connected regions of elementwise ops, with sum/mean/max
// reductions over the last axis whose per-row results may feed later ops of the
// same rows (softmax, layer_norm, RMSNorm spelled out, or decomposed from those
// ops first), become one `fused` node carrying the region's kernel IR. Values
// computed inside a region and read outside it (or graph outputs) become extra
// outputs of the fused node; a merge that would route a path out of the region
// and back in (a cycle once contracted), or that the kernel IR cannot express,
// is refused. Regions for CUDA targets also take float16/bfloat16 values (casts
// included, so the casts autocast puts around matmuls run inside the regions
// next to them); the CPU's LLVM emitter compiles float32/float64/bool only.
#include <algorithm>
#include <map>
#include <optional>
#include <queue>
#include <set>

#include "codegen/jit.h"
#include "codegen/kernel_ir.h"
#include "ds/op.h"
#include "passes/loop_fusion.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

// A value type regions of this target can hold.
bool region_dtype(DType t, bool low_precision) {
  return codegen::is_kernel_dtype(t) && (low_precision || !codegen::is_low_precision(t));
}

bool fusible(const Graph& g, const Node& n, bool low_precision) {
  if (!codegen::is_kernel_op(n.op->name) || n.outputs.size() != 1) return false;
  if (!is_static(n.outputs[0].shape) || !region_dtype(n.outputs[0].dtype, low_precision))
    return false;
  for (const ValueRef& v : n.inputs) {
    const TensorType& t = g.type(v);
    if (!is_static(t.shape) || !region_dtype(t.dtype, low_precision)) return false;
  }
  for (const auto& [_, a] : n.attrs) {  // the text form holds plain strings only
    if (auto* s = std::get_if<std::string>(&a))
      for (char c : *s)
        if (c <= ' ' || c == '=' || c == '%') return false;
  }
  return true;
}

// sum/mean/max over the last axis only, of a float value with a non-empty last axis.
bool fusible_reduction(const Graph& g, const Node& n) {
  if (!codegen::is_kernel_reduction(n.op->name) || n.inputs.size() != 1) return false;
  const TensorType& in = g.type(n.inputs[0]);
  const auto& axes = std::get<std::vector<int64_t>>(n.attrs.at("axes"));
  const int64_t rank = static_cast<int64_t>(in.shape.size());
  return rank >= 1 && is_static(in.shape) && in.shape.back() > 0 && axes.size() == 1 &&
         (axes[0] == -1 || axes[0] == rank - 1) &&
         (in.dtype == DType::Float32 || in.dtype == DType::Float64) &&
         n.outputs[0].dtype == in.dtype;
}

bool row_constant(const Shape& s) {
  return s.empty() || s.back() == 1;
}

class RegionBuilder {
 public:
  RegionBuilder(const Graph& g, bool low_precision)
      : g_(g), low_precision_(low_precision), region_(g.nodes().size(), -1) {
    consumers_.resize(g.nodes().size());
    for (const Node& n : g.nodes())
      for (const ValueRef& v : n.inputs) consumers_[v.node].push_back(n.id);
  }

  void grow() {
    for (const Node& n : g_.nodes()) {
      if (!fusible_reduction(g_, n) && !fusible(g_, n, low_precision_)) continue;
      region_[n.id] = static_cast<int>(members_.size());
      members_.push_back({n.id});
      for (const ValueRef& v : n.inputs) {
        const int other = region_[v.node];
        if (other >= 0 && other != region_[n.id]) try_merge(region_[n.id], other);
      }
    }
  }

  const std::vector<int>& region() const { return region_; }
  const std::vector<std::vector<int>>& members() const { return members_; }

 private:
  // Whether the kernel IR can hold `set` (node ids, in topological order): one
  // iteration shape, reductions of values of that shape, per-row values read
  // only where they broadcast along rows, keepdims=false reductions read by no
  // member (their rows would broadcast along the wrong axis).
  bool expressible(const std::vector<int>& set) const {
    std::optional<Shape> shape;
    for (int m : set)
      if (codegen::is_kernel_reduction(g_.node(m).op->name)) {
        const Shape& s = g_.type(g_.node(m).inputs[0]).shape;
        if (shape && *shape != s) return false;
        shape = s;
      }
    if (!shape) shape = g_.node(set.front()).outputs[0].shape;
    Shape row_shape = *shape;
    if (!row_shape.empty()) row_shape.back() = 1;
    enum Level { Elem, Row, Sealed };
    std::map<int, Level> level;
    for (int m : set) {
      const Node& n = g_.node(m);
      if (codegen::is_kernel_reduction(n.op->name)) {
        auto it = level.find(n.inputs[0].node);
        if (it != level.end() && it->second != Elem) return false;
        level[m] = std::get<bool>(n.attrs.at("keepdims")) ? Row : Sealed;
        continue;
      }
      bool reads_row = false, row_args = true;
      for (const ValueRef& v : n.inputs) {
        auto it = level.find(v.node);
        if (it == level.end()) {
          row_args = row_args && row_constant(g_.type(v).shape);
        } else if (it->second == Sealed) {
          return false;
        } else {
          reads_row = reads_row || it->second == Row;
          row_args = row_args && it->second == Row;
        }
      }
      const bool row = reads_row && row_args;
      if (n.outputs[0].shape != (row ? row_shape : *shape)) return false;
      level[m] = row ? Row : Elem;
    }
    return true;
  }

  // Merges region `b` into `a` unless the IR cannot express the union or a path
  // leaves it and comes back. Paths are followed on the contracted graph:
  // reaching a member of another region reaches all of it (it becomes one node).
  void try_merge(int a, int b) {
    std::set<int> set(members_[a].begin(), members_[a].end());
    set.insert(members_[b].begin(), members_[b].end());
    if (!expressible(std::vector<int>(set.begin(), set.end()))) return;
    std::vector<bool> reached(g_.nodes().size(), false);
    std::vector<int> stack;
    auto reach = [&](int c) {
      if (reached[c]) return;
      reached[c] = true;
      stack.push_back(c);
      if (region_[c] >= 0)
        for (int m : members_[region_[c]])
          if (!reached[m]) reached[m] = true, stack.push_back(m);
    };
    for (int m : set)
      for (int c : consumers_[m])
        if (!set.count(c)) reach(c);
    while (!stack.empty()) {
      const int x = stack.back();
      stack.pop_back();
      for (int c : consumers_[x]) {
        if (set.count(c)) return;  // out of the region and back in
        reach(c);
      }
    }
    for (int m : members_[b]) region_[m] = a;
    members_[a].assign(set.begin(), set.end());
    members_[b].clear();
  }

  const Graph& g_;
  const bool low_precision_;
  std::vector<int> region_;
  std::vector<std::vector<int>> members_;
  std::vector<std::vector<int>> consumers_;
};

struct Region {
  codegen::KernelIR ir;
  std::vector<ValueRef> inputs;   // external values, one per IR input
  std::vector<ValueRef> outputs;  // member values read outside, one per IR result
  std::vector<bool> squeeze;      // per result: a keepdims=false row reduction given as rows
};

Region build_region(const Graph& g, const std::vector<int>& members,
                    const std::vector<std::vector<ValueRef>>& readers_outside) {
  Region r;
  const std::set<int> set(members.begin(), members.end());
  std::map<int, int> reg_of_node;  // member -> register
  std::map<std::pair<int, int>, int> reg_of_input;
  std::vector<int> reductions;
  std::set<int> read_inside;
  for (int m : members) {
    if (codegen::is_kernel_reduction(g.node(m).op->name)) reductions.push_back(m);
    for (const ValueRef& v : g.node(m).inputs) read_inside.insert(v.node);
  }
  r.ir.shape = reductions.empty() ? g.node(members.front()).outputs[0].shape
                                  : g.type(g.node(reductions[0]).inputs[0]).shape;
  // A single reduction that nothing in the region reads, of a computed value,
  // closes the loop as the IR's trailing `reduce` (the form every backend emits).
  const int trailing = reductions.size() == 1 && !read_inside.count(reductions[0]) &&
                               set.count(g.node(reductions[0]).inputs[0].node)
                           ? reductions[0]
                           : -1;
  for (int m : members)
    for (const ValueRef& v : g.node(m).inputs)
      if (!set.count(v.node) &&
          reg_of_input.try_emplace({v.node, v.output}, r.inputs.size()).second) {
        r.inputs.push_back(v);
        r.ir.inputs.push_back(g.type(v));
      }
  int reg = static_cast<int>(r.inputs.size());
  for (int m : members) {
    const Node& n = g.node(m);
    auto operand = [&](const ValueRef& v) {
      return set.count(v.node) ? reg_of_node.at(v.node) : reg_of_input.at({v.node, v.output});
    };
    if (m == trailing) {
      r.ir.reduce = codegen::KernelReduce{n.op->name, operand(n.inputs[0]),
                                          std::get<bool>(n.attrs.at("keepdims"))};
      continue;
    }
    const bool reduction = codegen::is_kernel_reduction(n.op->name);
    codegen::KernelInst in{n.op->name, reduction ? AttrMap{} : n.attrs, {}, n.outputs[0].dtype};
    for (const ValueRef& v : n.inputs) in.args.push_back(operand(v));
    r.ir.insts.push_back(std::move(in));
    reg_of_node[m] = reg++;
    if (!readers_outside[m].empty()) {
      r.outputs.push_back({m, 0});
      r.ir.outputs.push_back(reg_of_node[m]);
      r.squeeze.push_back(reduction && !std::get<bool>(n.attrs.at("keepdims")));
    }
  }
  if (trailing >= 0) {
    r.outputs.push_back({trailing, 0});
    r.squeeze.push_back(false);
  }
  return r;
}

Graph fuse_regions(const Graph& input, bool low_precision) {
  // Dead values would make regions without outputs.
  const Graph g = dead_code_elimination(decompose_row_ops(input));
  RegionBuilder builder(g, low_precision);
  builder.grow();
  const auto& region = builder.region();
  const auto& members = builder.members();
  const auto& nodes = g.nodes();

  // Who reads each member from outside its region (graph outputs count).
  std::vector<std::vector<ValueRef>> outside(nodes.size());
  for (const Node& n : nodes)
    for (const ValueRef& v : n.inputs)
      if (region[v.node] >= 0 && region[v.node] != region[n.id])
        outside[v.node].push_back({n.id, 0});
  for (const auto& [_, v] : g.outputs())
    if (region[v.node] >= 0) outside[v.node].push_back(v);

  // Work items: one per fused region (of two or more ops), one per other node.
  std::vector<int> item_of(nodes.size());
  std::vector<int> item_region;  // -1: a plain node
  std::vector<int> item_pos;     // ordering key: the node id (a region's last member)
  std::vector<int> item_node;
  std::map<int, int> item_of_region;
  for (const Node& n : nodes) {
    const int r = region[n.id];
    if (r >= 0 && members[r].size() >= 2) {
      auto [it, added] = item_of_region.try_emplace(r, static_cast<int>(item_region.size()));
      if (added) {
        item_region.push_back(r);
        item_pos.push_back(members[r].back());
        item_node.push_back(-1);
      }
      item_of[n.id] = it->second;
    } else {
      item_of[n.id] = static_cast<int>(item_region.size());
      item_region.push_back(-1);
      item_pos.push_back(n.id);
      item_node.push_back(n.id);
    }
  }
  if (item_of_region.empty()) return input;

  // Contracted graph, emitted in topological order (Kahn), earliest original position first.
  const size_t items = item_region.size();
  std::vector<std::set<int>> succ(items);
  std::vector<int> indegree(items, 0);
  for (const Node& n : nodes)
    for (const ValueRef& v : n.inputs) {
      const int from = item_of[v.node], to = item_of[n.id];
      if (from != to && succ[from].insert(to).second) ++indegree[to];
    }
  using Entry = std::pair<int, int>;  // (position, item)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> ready;
  for (size_t i = 0; i < items; ++i)
    if (indegree[i] == 0) ready.push({item_pos[i], static_cast<int>(i)});

  Rewriter rw(g);
  size_t emitted = 0;
  while (!ready.empty()) {
    const int it = ready.top().second;
    ready.pop();
    ++emitted;
    if (item_region[it] < 0) {
      rw.copy(nodes[item_node[it]]);
    } else {
      const Region r = build_region(g, members[item_region[it]], outside);
      std::vector<Tensor> in;
      for (const ValueRef& v : r.inputs) in.push_back(rw.map(v));
      const auto out = rw.dst().add("fused", in, {{"region", r.ir.str()}});
      for (size_t o = 0; o < r.outputs.size(); ++o) {
        const Shape& shape = g.type(r.outputs[o]).shape;
        rw.set(r.outputs[o], r.squeeze[o] ? rw.dst().add("reshape", {out[o]}, {{"shape", shape}})[0]
                                          : out[o]);
      }
    }
    for (int s : succ[it])
      if (--indegree[s] == 0) ready.push({item_pos[s], s});
  }
  DS_CHECK(emitted == items, Error, "loop_fusion: the contracted graph has a cycle");
  return rw.finish();
}

}  // namespace

Graph loop_fusion(const Graph& input) {
  if (!codegen::jit_available()) return input;  // interpreting a region is slower than the ops
  return fuse_regions(input, false);
}

Graph loop_fusion_regions(const Graph& input) {
  return fuse_regions(input, true);
}

}  // namespace ds::passes
