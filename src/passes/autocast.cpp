// Autocast (mixed precision): the matmul and convolution family and attention
// compute in bfloat16/float16, everything else (reductions, norms, softmax, losses, the
// optimizer update) stays float32. Each such op's float32 inputs are cast down,
// the op runs on the low-precision values, and its outputs are cast back to
// float32, so the graph's interface and every other node keep their types.
// Batch norm in training mode reads a convolution's low-precision output
// directly (float32 statistics; see batch_norm_on_low).
#include <set>
#include <string>

#include "ds/error.h"
#include "ds/op.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

const std::set<std::string>& low_precision_ops() {
  static const std::set<std::string> ops = {
      "matmul", "linear", "gemm", "conv2d", "conv2d_backward_input", "conv2d_backward_weight",
      "conv_transpose2d",
      // fp32 accumulation inside (tensor cores on CUDA), as PyTorch's autocast runs SDPA
      "scaled_dot_product_attention", "scaled_dot_product_attention_backward"};
  return ops;
}

// Is `t` (of the new graph) a cast up to float32 of a `low` value? Then returns
// that value in `source`.
bool cast_up_from(const Graph& g, const Tensor& t, DType low, Tensor* source) {
  const Node& n = g.node(t.value().node);
  if (n.op->name != "cast" || g.type(n.inputs[0]).dtype != low ||
      g.type(t.value()).dtype != DType::Float32)
    return false;
  *source = g.value(n.inputs[0]);
  return true;
}

// The same through reshapes after the cast (channels-last BatchNorm2d views its
// NHWC input as [N*H*W, C, 1, 1]): the reshapes are redone on the low value.
bool low_source(Graph& g, const Tensor& t, DType low, Tensor* source) {
  const Node& n = g.node(t.value().node);
  if (n.op->name != "reshape") return cast_up_from(g, t, low, source);
  const AttrMap attrs = n.attrs;  // g.add below may move the node list
  Tensor inner;
  if (!low_source(g, g.value(n.inputs[0]), low, &inner)) return false;
  *source = g.add("reshape", {inner}, attrs)[0];
  return true;
}

// batch_norm_train and its backward take a low-precision x and keep float32
// statistics, weight and bias (as PyTorch's autocast runs batch norm): where x is
// a cast up from a low-precision value (a convolution's output), they read that
// value instead, and y (dx) comes back low and is cast up for the float32 graph.
// The backward's dy is cast down to x's type (the op wants them alike).
bool batch_norm_on_low(Rewriter& rw, const Node& n, DType low) {
  const bool backward = n.op->name == "batch_norm_train_backward";
  if (!backward && n.op->name != "batch_norm_train") return false;
  std::vector<Tensor> in = rw.mapped_inputs(n);
  const size_t xi = backward ? 1 : 0;
  Tensor x_low;
  if (!low_source(rw.dst(), in[xi], low, &x_low)) return false;
  in[xi] = x_low;
  if (backward) {
    Tensor dy_low;
    in[0] = low_source(rw.dst(), in[0], low, &dy_low)
                ? dy_low
                : rw.dst().add("cast", {in[0]}, {{"dtype", low}})[0];
  }
  const std::vector<Tensor> outs = rw.dst().add(n.op->name, in, n.attrs, n.name);
  rw.set({n.id, 0}, rw.dst().add("cast", {outs[0]}, {{"dtype", DType::Float32}})[0]);
  for (int i = 1; i < static_cast<int>(outs.size()); ++i) rw.set({n.id, i}, outs[i]);
  return true;
}

}  // namespace

DType precision_dtype(const std::string& precision) {
  if (precision == "fp32") return DType::Float32;
  if (precision == "bf16") return DType::BFloat16;
  if (precision == "fp16") return DType::Float16;
  throw ValueError(detail::cat("precision must be one of \"fp32\", \"bf16\", \"fp16\", got \"",
                               precision, "\""));
}

Graph autocast(const Graph& g, DType low) {
  DS_CHECK(low == DType::BFloat16 || low == DType::Float16, ValueError,
           "autocast: the low precision must be bfloat16 or float16, got ", dtype_name(low));
  Rewriter rw(g);
  return rw.run([&](const Node& n) {
    if (batch_norm_on_low(rw, n, low)) return true;
    if (!low_precision_ops().count(n.op->name)) return false;
    // Only float32 computations move; float64 (and integer) ones keep their precision.
    for (const ValueRef& v : n.inputs)
      if (g.type(v).dtype != DType::Float32) return false;
    std::vector<Tensor> inputs;
    for (const Tensor& x : rw.mapped_inputs(n))
      inputs.push_back(rw.dst().add("cast", {x}, {{"dtype", low}})[0]);
    const std::vector<Tensor> outs = rw.dst().add(n.op->name, inputs, n.attrs, n.name);
    for (size_t i = 0; i < outs.size(); ++i)
      rw.set({n.id, static_cast<int>(i)},
             rw.dst().add("cast", {outs[i]}, {{"dtype", DType::Float32}})[0]);
    return true;
  });
}

}  // namespace ds::passes
