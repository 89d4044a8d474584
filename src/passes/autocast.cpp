// Autocast (mixed precision), as PyTorch's: the matmul and convolution family and
// attention compute in bfloat16/float16; reductions, norms, softmax, losses and the
// optimizer update stay float32. Each such op's float32 inputs are cast down,
// the op runs on the low-precision values, and its outputs are cast back to
// float32, so the graph's interface and every other node keep their types.
// Batch norm in training mode reads a convolution's low-precision output
// directly (float32 statistics; see batch_norm_on_low), and the simple ops
// between layers stay low where all their inputs are (see elementwise_on_low).
#include <algorithm>
#include <set>
#include <string>

#include "ds/error.h"
#include "ds/op.h"
#include "ir/ops/attention.h"
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

// Ops PyTorch's autocast runs in their inputs' precision, each rounding once:
// a CNN's residual adds, ReLUs, ReLU-gradient masks, max pooling and the sums of
// gradient paths. Where every float input is a low value (a cast up from one,
// maybe reshaped, or a 0-d zero constant: a ReLU mask's), the op runs on the low
// values and its result is cast up for the float32 graph, so chains of them
// (batch norm -> add -> relu -> conv) move 2-byte activations, not 4-byte ones. Compares, relu,
// where, maximum and max pooling give the same values either way; add, sub and mul round to the low
// type once, as PyTorch's autocast does. Composite formulas that pass through other ops (GELU's
// erf, norms) stay float32, and so do ops with any other float32 input (a parameter's gradient
// scaled by a constant before the optimizer: float16 would flush small values).
const std::set<std::string>& input_precision_ops() {
  static const std::set<std::string> ops = {
      "add", "sub", "mul", "neg", "relu", "where", "maximum",    "minimum",
      "eq",  "ne",  "lt",  "le",  "gt",   "ge",    "max_pool2d", "max_pool2d_backward"};
  return ops;
}

bool zero_scalar(const Graph& g, const Tensor& t) {
  Tensor value;
  return constant_value(g, t.value(), &value) && value.ndim() == 0 && value.item<double>() == 0.0;
}

bool elementwise_on_low(Rewriter& rw, const Node& n, DType low) {
  if (!input_precision_ops().count(n.op->name)) return false;
  std::vector<Tensor> in = rw.mapped_inputs(n);
  bool any_low = false;
  for (Tensor& x : in) {
    const DType t = x.dtype();
    if (!is_floating(t)) continue;  // masks, indices
    if (t != DType::Float32) return false;
    Tensor source;
    if (low_source(rw.dst(), x, low, &source)) {
      x = source;
      any_low = true;
    } else if (zero_scalar(rw.dst(), x)) {
      x = rw.dst().add("cast", {x}, {{"dtype", low}})[0];
    } else {
      return false;
    }
  }
  if (!any_low) return false;
  const std::vector<Tensor> outs = rw.dst().add(n.op->name, in, n.attrs, n.name);
  for (size_t i = 0; i < outs.size(); ++i)
    rw.set({n.id, static_cast<int>(i)},
           outs[i].dtype() == low ? rw.dst().add("cast", {outs[i]}, {{"dtype", DType::Float32}})[0]
                                  : outs[i]);
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
    if (batch_norm_on_low(rw, n, low) || elementwise_on_low(rw, n, low)) return true;
    if (!low_precision_ops().count(n.op->name)) return false;
    // Only float32 computations move; float64 (and integer) ones keep their precision.
    for (const ValueRef& v : n.inputs)
      if (g.type(v).dtype != DType::Float32) return false;
    std::vector<Tensor> inputs = rw.mapped_inputs(n);
    // Attention's backward keeps the forward's float32 log-sum-exp.
    const size_t cast_count =
        n.op->name == "scaled_dot_product_attention_backward" ? ops::kLseInput : inputs.size();
    for (size_t i = 0; i < std::min(cast_count, inputs.size()); ++i)
      inputs[i] = rw.dst().add("cast", {inputs[i]}, {{"dtype", low}})[0];
    const std::vector<Tensor> outs = rw.dst().add(n.op->name, inputs, n.attrs, n.name);
    for (size_t i = 0; i < outs.size(); ++i)  // float32 outputs (attention's lse) stay as they are
      rw.set({n.id, static_cast<int>(i)},
             outs[i].dtype() == DType::Float32
                 ? outs[i]
                 : rw.dst().add("cast", {outs[i]}, {{"dtype", DType::Float32}})[0]);
    return true;
  });
}

}  // namespace ds::passes
