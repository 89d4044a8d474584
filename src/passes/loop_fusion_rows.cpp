// softmax, log_softmax, layer_norm and rms_norm as row reductions plus
// elementwise ops, computed in each node's dtype with float64 row sums (as the
// fused kernel accumulates), so fusion can take in the ops before and after them.
#include "ds/op.h"
#include "ds/ops.h"
#include "passes/loop_fusion.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

bool float_dtype(DType t) {
  return t == DType::Float32 || t == DType::Float64;
}

bool decomposable(const Graph& g, const Node& n) {
  const std::string& op = n.op->name;
  const bool softmax = op == "softmax" || op == "log_softmax";
  const bool norm = op == "layer_norm" || op == "rms_norm";
  if ((!softmax && !norm) || n.outputs.size() != 1 || n.inputs.empty()) return false;
  const TensorType& x = g.type(n.inputs[0]);
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  if (rank == 0 || !is_static(x.shape) || x.shape.back() <= 0 || !float_dtype(x.dtype) ||
      n.outputs[0].dtype != x.dtype)
    return false;
  if (softmax) {
    const int64_t axis = std::get<int64_t>(n.attrs.at("axis"));
    return axis == -1 || axis == rank - 1;
  }
  const auto& normalized = std::get<std::vector<int64_t>>(n.attrs.at("normalized_shape"));
  if (normalized.size() != 1 || normalized[0] != x.shape.back()) return false;
  for (size_t i = 1; i < n.inputs.size(); ++i)
    if (g.type(n.inputs[i]) != TensorType{x.dtype, {x.shape.back()}}) return false;
  return true;
}

Tensor decompose(const Node& n, const std::vector<Tensor>& in) {
  const std::string& op = n.op->name;
  const Tensor& x = in[0];
  const Axes row = {-1};
  if (op == "softmax") {
    const Tensor e = exp(x - max(x, row, true));
    return e / sum(e, row, true);
  }
  if (op == "log_softmax") {
    const Tensor d = x - max(x, row, true);
    return d - log(sum(exp(d), row, true));
  }
  const double eps = std::get<double>(n.attrs.at("eps"));
  Tensor y;
  if (op == "layer_norm") {
    const Tensor d = x - mean(x, row, true);
    y = d * rsqrt(mean(d * d, row, true) + eps);
  } else {
    y = x * rsqrt(mean(x * x, row, true) + eps);
  }
  if (in.size() > 1) y = y * in[1];
  if (in.size() > 2) y = y + in[2];
  return y;
}

}  // namespace

Graph decompose_row_ops(const Graph& g) {
  Rewriter rw(g);
  return rw.run([&](const Node& n) {
    if (!decomposable(g, n)) return false;
    rw.set({n.id, 0}, decompose(n, rw.mapped_inputs(n)));
    return true;
  });
}

}  // namespace ds::passes
