// fused_linear and fused_conv2d: a library op (linear, matmul or conv2d) with its
// epilogue folded in by the epilogue-fusion pass:
//   y = activation(base(x, w) [+ bias] [+ residual])
// Inputs: x, w, [bias if has_bias], [residual if has_residual]. The residual has
// the result's type. The reference kernels compose the existing ops in float64.
#include "ir/ops/fused_epilogue.h"

#include <map>

#include "ds/ops.h"
#include "ir/ops/op_helpers.h"

namespace ds::ops {

namespace {

const std::map<std::string, Act>& activations() {
  static const std::map<std::string, Act> m = {
      {"none", Act::None},     {"relu", Act::Relu},         {"leaky_relu", Act::LeakyRelu},
      {"gelu", Act::Gelu},     {"gelu_tanh", Act::GeluTanh}, {"silu", Act::Silu},
      {"sigmoid", Act::Sigmoid}, {"tanh", Act::Tanh}};
  return m;
}

}  // namespace

bool is_epilogue_activation(const std::string& name) { return activations().count(name) > 0; }

Act parse_activation(const std::string& name) {
  auto it = activations().find(name);
  DS_CHECK(it != activations().end(), ValueError, "unknown epilogue activation '", name, "'");
  return it->second;
}

Tensor apply_epilogue_activation(const Tensor& x, const std::string& name, double alpha) {
  switch (parse_activation(name)) {
    case Act::None: return x;
    case Act::Relu: return relu(x);
    case Act::LeakyRelu: return leaky_relu(x, alpha);
    case Act::Gelu: return gelu(x, "none");
    case Act::GeluTanh: return gelu(x, "tanh");
    case Act::Silu: return silu(x);
    case Act::Sigmoid: return sigmoid(x);
    case Act::Tanh: return tanh(x);
  }
  return x;
}

namespace {

// The base op's name: fused_conv2d -> conv2d, fused_linear -> its `base` attribute.
std::string base_name(const OpContext& c) {
  return c.op.name == "fused_conv2d" ? "conv2d" : c.s("base");
}

size_t base_arity(const OpContext& c) { return c.b("has_bias") ? 3 : 2; }

// Infers the base op on its own inputs; checks the epilogue's inputs against it.
std::vector<TensorType> infer_fused(const OpContext& c) {
  const size_t want = base_arity(c) + (c.b("has_residual") ? 1 : 0);
  DS_CHECK(c.inputs.size() == want, ValueError, c.where(), "expects ", want,
           " inputs (x, w", c.b("has_bias") ? ", bias" : "", c.b("has_residual") ? ", residual" : "",
           "), got ", c.inputs.size());
  DS_CHECK(is_epilogue_activation(c.s("activation")), ValueError, c.where(), "unknown activation '",
           c.s("activation"), "'");
  const std::string base = base_name(c);
  DS_CHECK(base == "linear" || base == "matmul" || base == "conv2d", ValueError, c.where(),
           "base must be linear, matmul or conv2d, got '", base, "'");
  const bool bias_outside = base == "matmul";  // matmul has no bias input: added after
  std::vector<TensorType> base_in(c.inputs.begin(),
                                  c.inputs.begin() + (bias_outside ? 2 : base_arity(c)));
  const OpContext bc{get_op(base), c.attrs, base_in, c.node};
  std::vector<TensorType> out = get_op(base).infer(bc);
  DS_CHECK(is_floating(out[0].dtype), TypeError, c.where(), "expects floating inputs");
  if (bias_outside && c.b("has_bias")) {
    const Shape& y = out[0].shape;
    DS_CHECK(!y.empty() && c.inputs[2].shape == Shape{y.back()}, ShapeError, c.where(), "bias ",
             shape_str(c.inputs[2].shape), " must be [", y.empty() ? 0 : y.back(), "]");
  }
  if (c.b("has_residual"))
    DS_CHECK(c.inputs.back() == out[0], TypeError, c.where(), "residual must be ", out[0].str(),
             ", got ", c.inputs.back().str());
  return out;
}

Cost cost_fused(const OpContext& c) {
  const std::string base = base_name(c);
  std::vector<TensorType> base_in(c.inputs.begin(), c.inputs.begin() + 2);
  const OpContext bc{get_op(base), c.attrs, base_in, c.node};
  const auto out = get_op(base).infer(bc);
  Cost cost = get_op(base).estimate(bc, out);
  const double n = static_cast<double>(numel(out[0].shape) == dyn ? 1 : numel(out[0].shape));
  cost.flops += 4 * n;  // bias, residual and a few for the activation
  if (c.b("has_residual")) cost.bytes += n * dtype_size(out[0].dtype);
  return cost;
}

AttrMap conv_geometry(const OpContext& c) {
  return {{"stride", c.ints("stride")}, {"padding", c.ints("padding")},
          {"dilation", c.ints("dilation")}, {"groups", c.i("groups")}};
}

void reference_fused(const KernelCall& k) {
  const OpContext& c = k.ctx;
  const std::string base = base_name(c);
  auto f64 = [&](size_t i) { return cast(k.inputs[i], DType::Float64); };
  Tensor bias = c.b("has_bias") ? f64(2) : Tensor();
  Tensor y;
  if (base == "conv2d")
    y = apply1("conv2d", {f64(0), f64(1), bias}, conv_geometry(c));
  else if (base == "linear")
    y = linear(f64(0), f64(1), bias);
  else
    y = bias.defined() ? add(matmul(f64(0), f64(1)), bias) : matmul(f64(0), f64(1));
  if (c.b("has_residual")) y = add(y, f64(k.inputs.size() - 1));
  y = apply_epilogue_activation(y, c.s("activation"), c.f("alpha"));
  copy_into(y, k.outputs[0]);
}

std::vector<AttrSpec> epilogue_attrs(std::vector<AttrSpec> base) {
  base.push_back({"activation", AttrKind::String, std::string("none")});
  base.push_back({"alpha", AttrKind::Float, 0.0});
  base.push_back({"has_bias", AttrKind::Bool, false});
  base.push_back({"has_residual", AttrKind::Bool, false});
  return base;
}

const OpRegistrar reg([] {
  register_op({
      .name = "fused_linear",
      .traits = kLibrary,
      .num_inputs = -1,
      .attrs = epilogue_attrs({{"base", AttrKind::String, std::string("linear")}}),
      .infer = infer_fused,
      .cost = cost_fused,
      .reference = reference_fused,
  });
  register_op({
      .name = "fused_conv2d",
      .traits = kLibrary,
      .num_inputs = -1,
      .attrs = epilogue_attrs({{"stride", AttrKind::Ints, std::vector<int64_t>{1}},
                               {"padding", AttrKind::Ints, std::vector<int64_t>{0}},
                               {"dilation", AttrKind::Ints, std::vector<int64_t>{1}},
                               {"groups", AttrKind::Int, int64_t{1}}}),
      .infer = infer_fused,
      .cost = cost_fused,
      .reference = reference_fused,
  });
});

}  // namespace
}  // namespace ds::ops
