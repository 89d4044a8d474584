// Batch-norm folding (inference): conv2d/linear with constant weights followed by
// batch_norm with constant statistics becomes one conv2d/linear with scaled
// weights and a shifted bias:  W' = W * s,  b' = (b - mean) * s + beta,
// s = gamma / sqrt(var + eps), per output channel.
#include <map>

#include "ds/op.h"
#include "ds/ops.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

}  // namespace

Graph fold_batch_norm(const Graph& g) {
  const ValueReaders uses = value_readers(g);
  Rewriter rw(g);
  return rw.run([&](const Node& n) {
    if (n.op->name != "batch_norm") return false;
    const Node& prod = g.node(n.inputs[0].node);
    if ((prod.op->name != "conv2d" && prod.op->name != "linear") || uses.at({prod.id, 0}).size() != 1)
      return false;
    // batch_norm scales axis 1: a channels-last conv's output channels are axis 3.
    if (prod.op->name == "conv2d" && std::get<bool>(prod.attrs.at("channels_last"))) return false;
    // Every parameter must be a compile-time constant.
    std::vector<Tensor> bn;  // mean, var, [gamma], [beta]
    for (size_t i = 1; i < n.inputs.size(); ++i) {
      Tensor c;
      if (!constant_value(g, n.inputs[i], &c)) return false;
      bn.push_back(c);
    }
    Tensor w, b;
    if (!constant_value(g, prod.inputs[1], &w)) return false;
    if (prod.inputs.size() > 2 && !constant_value(g, prod.inputs[2], &b)) return false;
    if (!is_floating(w.dtype())) return false;
    const int64_t channels = w.shape()[0];
    // Fold in float64, then return to the weight's dtype.
    auto f64 = [](const Tensor& t) { return cast(t, DType::Float64); };
    Tensor scale = rsqrt(f64(bn[1]) + std::get<double>(n.attrs.at("eps")));
    if (bn.size() > 2) scale = mul(scale, f64(bn[2]));
    Tensor shift = neg(mul(f64(bn[0]), scale));
    if (b.defined()) shift = add(shift, mul(f64(b), scale));
    if (bn.size() > 3) shift = add(shift, f64(bn[3]));
    Shape scale_shape(w.ndim(), 1);
    scale_shape[0] = channels;
    Tensor new_w = cast(mul(f64(w), reshape(scale, scale_shape)), w.dtype());
    Tensor new_b = cast(shift, w.dtype());
    Tensor x = rw.map(prod.inputs[0]);
    Tensor folded = rw.dst().add(prod.op->name,
                                 {x, rw.dst().constant(new_w), rw.dst().constant(new_b)},
                                 prod.attrs, n.name.empty() ? prod.name : n.name)[0];
    rw.set({n.id, 0}, folded);
    return true;
  });
}

}  // namespace ds::passes
