// add(pad(a), pad(b), pad(c)) -> concat(a, b, c) when the zero paddings tile one
// axis: the gradient of slicing one tensor into parts (GPT's q/k/v split) is each
// part's gradient padded back to the full extent, summed. The concat writes each
// element once instead of padding three full tensors and adding them twice.
// Exact up to the sign of a zero: x + 0 turns a -0 part into +0, concat keeps -0.
#include <algorithm>
#include <vector>

#include "ds/op.h"
#include "passes/low_precision_layout.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

// A deeper sum is not a gradient of slices; the cap bounds the walk on shared adds.
constexpr size_t kMaxParts = 64;

// Collects the leaves of the add tree at `node` whose adds all have type `type`.
void add_leaves(const Graph& g, const ValueRef& v, const TensorType& type,
                std::vector<ValueRef>& leaves) {
  const Node& n = g.node(v.node);
  if (n.op->name == "add" && n.outputs[0] == type && leaves.size() < kMaxParts) {
    for (const ValueRef& in : n.inputs) add_leaves(g, in, type, leaves);
    return;
  }
  leaves.push_back(v);
}

struct Part {
  int64_t offset;  // where the part starts along the axis
  ValueRef value;  // the unpadded part
};

// The axis a zero padding pads (-1: none or several), with the padding before it.
int padded_axis(const Node& pad, int rank, int64_t* before) {
  if (pad.op->name != "pad" || std::get<std::string>(pad.attrs.at("mode")) != "constant" ||
      std::get<double>(pad.attrs.at("value")) != 0.0)
    return -1;
  const auto& p = std::get<std::vector<int64_t>>(pad.attrs.at("pads"));
  int axis = -1;
  for (int d = 0; d < static_cast<int>(p.size()) / 2 && d < rank; ++d) {
    if (p[2 * d] == 0 && p[2 * d + 1] == 0) continue;
    if (axis >= 0) return -1;
    axis = d;
    *before = p[2 * d];
  }
  return axis;
}

// The parts, in order, when the sum at `root` is zero-padded parts tiling one axis.
bool tiled_parts(const Graph& g, const Node& root, int* axis, std::vector<Part>& parts) {
  const TensorType& type = root.outputs[0];
  if (!is_floating(type.dtype)) return false;
  std::vector<ValueRef> leaves;
  add_leaves(g, {root.id, 0}, type, leaves);
  if (leaves.size() < 2 || leaves.size() > kMaxParts) return false;
  const int rank = static_cast<int>(type.shape.size());
  *axis = -1;
  for (const ValueRef& leaf : leaves) {
    const Node& pad = g.node(leaf.node);
    int64_t before = 0;
    const int a = padded_axis(pad, rank, &before);
    if (a < 0 || (*axis >= 0 && a != *axis) || pad.outputs[0] != type) return false;
    *axis = a;
    parts.push_back({before, pad.inputs[0]});
  }
  if (type.shape[*axis] == dyn || type.shape[*axis] == 0) return false;
  std::sort(parts.begin(), parts.end(),
            [](const Part& x, const Part& y) { return x.offset < y.offset; });
  int64_t end = 0;
  for (const Part& p : parts) {
    if (p.offset != end) return false;  // a gap or an overlap
    end += g.type(p.value).shape[*axis];
  }
  return end == type.shape[*axis];
}

}  // namespace

Graph padded_sum_to_concat(const Graph& g) {
  Rewriter rw(g);
  bool changed = false;
  Graph out = rw.run([&](const Node& n) {
    if (n.op->name != "add") return false;
    int axis = -1;
    std::vector<Part> parts;
    if (!tiled_parts(g, n, &axis, parts)) return false;
    std::vector<Tensor> inputs;
    for (const Part& p : parts)
      if (g.type(p.value).shape[axis] > 0) inputs.push_back(rw.map(p.value));
    rw.set({n.id, 0}, rw.dst().add("concat", inputs, {{"axis", int64_t{axis}}}, n.name)[0]);
    changed = true;
    return true;
  });
  return changed ? dead_code_elimination(out) : g;
}

}  // namespace ds::passes
