// Autocast (mixed precision): the matmul and convolution family and attention
// compute in bfloat16/float16, everything else (reductions, norms, softmax, losses, the
// optimizer update) stays float32. Each such op's float32 inputs are cast down,
// the op runs on the low-precision values, and its outputs are cast back to
// float32, so the graph's interface and every other node keep their types.
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
