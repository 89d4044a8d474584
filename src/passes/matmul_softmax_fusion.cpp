// Matmul-softmax fusion: softmax over the last axis of a float32 matrix product,
// possibly scaled by scalar constants (x * c, c * x, x / c), then plus an additive
// mask, with a right operand that is a transpose of its last two axes (attention's
// softmax(q @ k^T / sqrt(d) + mask)), becomes one matmul_softmax node: the
// product's rows are normalized while in cache, the transpose is read in place, the
// scale is applied as the product is stored. Each link's value must have the next
// link as its one reader (the product itself is not kept). Runs where a fast CPU
// kernel serves the op, and only while op(b) stays cache-sized (each kernel task
// packs it).
#include <map>
#include <optional>

#include "ds/op.h"
#include "ir/ops/matmul_softmax.h"
#include "passes/loop_fusion.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

// Each kernel task packs op(b) and reads it once per block of rows: beyond this it
// would not stay in a core's L2 (1-2 MiB) next to the scratch rows.
constexpr int64_t kMaxPackedBytes = int64_t{1} << 20;

struct Plan {
  ValueRef a, b;
  std::optional<ValueRef> mask;
  bool trans_b = false;
  double scale = 1.0;
};

bool float32(const Graph& g, ValueRef v) {
  return g.type(v).dtype == DType::Float32;
}

// The scalar constant `v` holds, if it is one.
std::optional<double> scalar_constant(const Graph& g, ValueRef v) {
  Tensor c;
  if (!constant_value(g, v, &c) || c.numel() != 1) return std::nullopt;
  return element_as_double(c, 0);
}

// Whether `p` is a permute swapping the last two axes and keeping the others.
bool swaps_last_two(const Node& p) {
  if (p.op->name != "permute") return false;
  const auto& axes = std::get<std::vector<int64_t>>(p.attrs.at("axes"));
  const int rank = static_cast<int>(axes.size());
  if (rank < 2) return false;
  for (int i = 0; i < rank; ++i) {
    const int want = i == rank - 2 ? rank - 1 : i == rank - 1 ? rank - 2 : i;
    if (normalize_axis(axes[i], rank, "permute") != want) return false;
  }
  return true;
}

// The matmul at the end of a chain of scalar-constant scales from `x` (x * c,
// c * x, x / c; each value read by the next link only), their factors multiplied
// into *scale.
std::optional<ValueRef> scaled_product(const Graph& g, const ValueReaders& readers, ValueRef x,
                                       double* scale) {
  const TensorType scores = g.type(x);
  double factor = 1.0;
  for (;;) {
    if (readers.at({x.node, x.output}).size() != 1) return std::nullopt;
    const Node& p = g.node(x.node);
    const std::string& op = p.op->name;
    if (op == "matmul") break;
    if (op != "mul" && op != "div") return std::nullopt;
    int other = 0;  // the input that is not the constant
    std::optional<double> c = scalar_constant(g, p.inputs[1]);
    if (!c && op == "mul") {
      c = scalar_constant(g, p.inputs[0]);
      other = 1;
    }
    if (!c || g.type(p.inputs[other]) != scores) return std::nullopt;
    factor = op == "mul" ? factor * *c : factor / *c;
    x = p.inputs[other];
  }
  *scale = factor;
  return x;
}

std::optional<Plan> match(const Graph& g, const ValueReaders& readers, const Node& softmax) {
  if (softmax.op->name != "softmax" || softmax.outputs[0].dtype != DType::Float32)
    return std::nullopt;
  const int rank = static_cast<int>(softmax.outputs[0].shape.size());
  const int64_t axis = std::get<int64_t>(softmax.attrs.at("axis"));
  if (rank < 2 || (axis != -1 && axis != rank - 1)) return std::nullopt;
  Plan plan;
  const ValueRef scores = softmax.inputs[0];
  if (g.type(scores).dtype != DType::Float32) return std::nullopt;
  std::optional<ValueRef> product = scaled_product(g, readers, scores, &plan.scale);
  const Node& top = g.node(scores.node);
  if (!product && top.op->name == "add" && readers.at({scores.node, scores.output}).size() == 1) {
    // An additive mask: the other operand of an add whose result has the scores' type.
    for (int side : {0, 1}) {
      const ValueRef mask = top.inputs[1 - side];
      if (g.type(top.inputs[side]) != g.type(scores) || !float32(g, mask)) continue;
      product = scaled_product(g, readers, top.inputs[side], &plan.scale);
      if (product) {
        plan.mask = mask;
        break;
      }
    }
  }
  if (!product) return std::nullopt;
  const ValueRef x = *product;
  const Node& mm = g.node(x.node);
  plan.a = mm.inputs[0];
  plan.b = mm.inputs[1];
  if (!float32(g, plan.a) || !float32(g, plan.b) || g.type(plan.a).shape.size() < 2 ||
      g.type(plan.b).shape.size() < 2)
    return std::nullopt;
  if (swaps_last_two(g.node(plan.b.node))) {
    plan.b = g.node(plan.b.node).inputs[0];
    plan.trans_b = true;
  }
  const Shape& bs = g.type(plan.b).shape;
  const int64_t cols = bs[bs.size() - (plan.trans_b ? 2 : 1)];
  const int64_t depth = bs[bs.size() - (plan.trans_b ? 1 : 2)];
  // Batch dims may be symbolic; the packed extent must be known.
  if (cols == dyn || depth == dyn ||
      cols * depth * static_cast<int64_t>(sizeof(float)) > kMaxPackedBytes)
    return std::nullopt;
  const OpDef& def = get_op("matmul_softmax");
  const AttrMap attrs = {{"trans_b", plan.trans_b}, {"scale", plan.scale}};
  std::vector<TensorType> types = {g.type(plan.a), g.type(plan.b)};
  if (plan.mask) types.push_back(g.type(*plan.mask));
  const OpContext ctx{def, attrs, types, softmax.label()};
  if (select_kernel(ctx, DeviceKind::CPU).impl == "reference") return std::nullopt;
  return plan;
}

}  // namespace

Graph matmul_softmax_fusion(const Graph& g) {
  const ValueReaders readers = value_readers(g);
  Rewriter rw(g);
  bool fused = false;
  const Graph out = rw.run([&](const Node& n) {
    const auto plan = match(g, readers, n);
    if (!plan) return false;
    rw.set({n.id, 0}, matmul_softmax(rw.map(plan->a), rw.map(plan->b), plan->trans_b, plan->scale,
                                     plan->mask ? rw.map(*plan->mask) : Tensor()));
    fused = true;
    return true;
  });
  // The products, scales and transposes replaced are dead now.
  return fused ? dead_code_elimination(out) : g;
}

}  // namespace ds::passes
