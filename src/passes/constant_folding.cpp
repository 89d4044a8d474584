// Constant folding: an op whose inputs are all constants is evaluated once at
// compile time (eagerly, through the same kernels) and becomes a constant.
#include "ds/op.h"
#include "ds/ops.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {
// Folding must not blow up the graph's constant data (e.g. a broadcast of a scalar).
constexpr int64_t kMaxFoldedElements = int64_t{1} << 20;
}  // namespace

Graph constant_folding(const Graph& g) {
  Rewriter rw(g);
  return rw.run([&](const Node& n) {
    if (n.op->has(kSource) || n.op->has(kRandom) || n.inputs.empty()) return false;
    for (const ValueRef& v : n.inputs)
      if (!constant_value(rw.dst(), rw.map(v).value(), nullptr)) return false;
    for (const TensorType& t : n.outputs)
      if (!is_static(t.shape) || numel(t.shape) > kMaxFoldedElements) return false;
    std::vector<Tensor> in;
    for (const ValueRef& v : n.inputs) {
      Tensor c;
      constant_value(rw.dst(), rw.map(v).value(), &c);
      in.push_back(c);
    }
    auto outs = apply(n.op->name, in, n.attrs);
    for (size_t i = 0; i < outs.size(); ++i)
      rw.set({n.id, static_cast<int>(i)}, rw.dst().constant(outs[i], n.name));
    return true;
  });
}

}  // namespace ds::passes
