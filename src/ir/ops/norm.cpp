// Normalization: batch_norm (inference, running statistics as inputs), layer_norm
// and rms_norm over trailing dims, group_norm over channel groups. Weight and bias
// are optional trailing inputs. Reference kernels compute in float64; VJPs
// recompute the statistics with ds ops (so they work on graphs as well).
#include <cmath>

#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

// ---- checks shared by the family
void check_floating(const OpContext& c, size_t i, const char* what) {
  DS_CHECK(is_floating(c.inputs[i].dtype), TypeError, c.where(), what, " must be floating-point, got ",
           dtype_name(c.inputs[i].dtype));
}

void check_shape(const OpContext& c, size_t i, const char* what, const Shape& expected,
                 const char* why) {
  const Shape& s = c.inputs[i].shape;
  bool ok = s.size() == expected.size();
  for (size_t d = 0; ok && d < s.size(); ++d)
    ok = s[d] == expected[d] || s[d] == dyn || expected[d] == dyn;
  DS_CHECK(ok, ShapeError, c.where(), what, " has shape ", shape_str(s), ", expected ",
           shape_str(expected), " (", why, ")");
}

DType result_type(const OpContext& c) {
  DType t = c.inputs[0].dtype;
  for (size_t i = 1; i < c.inputs.size(); ++i) t = promote_types(t, c.inputs[i].dtype);
  return t;
}

// x is [N, C, ...]: the channel extent.
int64_t channels(const OpContext& c) {
  const Shape& s = c.inputs[0].shape;
  DS_CHECK(s.size() >= 2, ShapeError, c.where(), "input must be [N, C, ...] (rank >= 2), got ",
           shape_str(s));
  return s[1];
}

// Checks normalized_shape against the trailing dims of x; returns it.
const Shape& checked_normalized_shape(const OpContext& c) {
  const Shape& x = c.inputs[0].shape;
  const Shape& ns = c.ints("normalized_shape");
  DS_CHECK(!ns.empty(), ValueError, c.where(), "normalized_shape must name at least one trailing dim");
  bool ok = ns.size() <= x.size();
  for (size_t d = 0; ok && d < ns.size(); ++d)
    ok = ns[d] >= 0 && (x[x.size() - ns.size() + d] == ns[d] || x[x.size() - ns.size() + d] == dyn);
  DS_CHECK(ok, ShapeError, c.where(), "normalized_shape ", shape_str(ns),
           " does not match the trailing dims of the input ", shape_str(x));
  return ns;
}

Cost norm_cost(const OpContext& c) {
  const auto& in = c.inputs[0];
  const double n = static_cast<double>(std::max<int64_t>(numel(in.shape), 0));
  return {8 * n, 2 * n * static_cast<double>(dtype_size(in.dtype))};
}

// Optional input i as float64 values, or `fill` repeated n times when absent.
std::vector<double> optional_input(const KernelCall& k, size_t i, int64_t n, double fill) {
  if (i < k.inputs.size()) return to_f64(k.inputs[i]);
  return std::vector<double>(static_cast<size_t>(n), fill);
}

// Normalizes `rows` contiguous rows of `len` values in place: (v - mean) * rstd, the
// statistics over the row; `centered` false gives rms_norm's v * rsqrt(mean(v^2) + eps).
void normalize_rows(std::vector<double>& x, int64_t rows, int64_t len, double eps,
                    bool centered) {
  for (int64_t r = 0; r < rows; ++r) {
    double* v = x.data() + r * len;
    double mu = 0;
    if (centered) {
      for (int64_t j = 0; j < len; ++j) mu += v[j];
      mu /= static_cast<double>(len);
    }
    double ss = 0;
    for (int64_t j = 0; j < len; ++j) ss += (v[j] - mu) * (v[j] - mu);
    const double rstd = 1.0 / std::sqrt(ss / static_cast<double>(len) + eps);
    for (int64_t j = 0; j < len; ++j) v[j] = (v[j] - mu) * rstd;
  }
}

// ---- VJP helpers
Tensor grad_as(const Tensor& g, const Tensor& input) { return cast(g, input.dtype()); }

// Sums t over its leading axes (those before the trailing `keep` axes).
Tensor sum_leading(const Tensor& t, int keep) {
  Axes lead;
  for (int d = 0; d < t.ndim() - keep; ++d) lead.push_back(d);
  return lead.empty() ? t : sum(t, lead);
}

// Axes of [N, C, ...] other than the channel axis.
Axes all_but_channel(int rank) {
  Axes a = {0};
  for (int d = 2; d < rank; ++d) a.push_back(d);
  return a;
}

// A per-channel [C] tensor shaped [C, 1, ...] to broadcast against [N, C, ...].
Tensor per_channel(const Tensor& t, int rank) {
  Shape s(static_cast<size_t>(rank - 1), 1);
  s[0] = t.shape()[0];
  return reshape(t, s);
}

// Gradient of (x - mean) * rstd over `axes` (keepdims statistics), given the gradient
// of the normalized value `gxhat` and xhat itself.
Tensor centered_norm_grad(const Tensor& gxhat, const Tensor& xhat, const Tensor& rstd,
                          const Axes& axes) {
  return mul(rstd, gxhat - mean(gxhat, axes, true) - mul(xhat, mean(mul(gxhat, xhat), axes, true)));
}

Axes trailing_axes(int rank, size_t count) {
  Axes a;
  for (int d = rank - static_cast<int>(count); d < rank; ++d) a.push_back(d);
  return a;
}

// ---- layer_norm
std::vector<TensorType> infer_layer_norm(const OpContext& c) {
  check_floating(c, 0, "input x");
  const Shape& ns = checked_normalized_shape(c);
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    check_floating(c, i, i == 1 ? "weight" : "bias");
    check_shape(c, i, i == 1 ? "weight" : "bias", ns, "normalized_shape");
  }
  return one(result_type(c), c.inputs[0].shape);
}

void layer_norm_reference(const KernelCall& k) {
  const int64_t len = numel(k.ctx.ints("normalized_shape"));
  const int64_t n = k.inputs[0].numel();
  if (n == 0) return;
  auto x = to_f64(k.inputs[0]);
  normalize_rows(x, n / len, len, k.ctx.f("eps"), true);
  const auto w = optional_input(k, 1, len, 1.0), b = optional_input(k, 2, len, 0.0);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * w[i % len] + b[i % len];
  from_f64(x, k.outputs[0]);
}

std::vector<Tensor> layer_norm_vjp(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  const size_t k = a.ctx.ints("normalized_shape").size();
  const Axes axes = trailing_axes(x.ndim(), k);
  const Tensor& g = a.grads[0];
  Tensor xc = x - mean(x, axes, true);
  Tensor rstd = rsqrt(mean(mul(xc, xc), axes, true) + a.ctx.f("eps"));
  Tensor xhat = mul(xc, rstd);
  const bool has_w = a.inputs.size() > 1;
  Tensor gxhat = has_w ? mul(g, a.inputs[1]) : g;
  std::vector<Tensor> out = {grad_as(centered_norm_grad(gxhat, xhat, rstd, axes), x)};
  if (has_w) out.push_back(grad_as(sum_leading(mul(g, xhat), static_cast<int>(k)), a.inputs[1]));
  if (a.inputs.size() > 2) out.push_back(grad_as(sum_leading(g, static_cast<int>(k)), a.inputs[2]));
  return out;
}

// ---- rms_norm: x * rsqrt(mean(x^2) + eps) * weight
void rms_norm_reference(const KernelCall& k) {
  const int64_t len = numel(k.ctx.ints("normalized_shape"));
  const int64_t n = k.inputs[0].numel();
  if (n == 0) return;
  auto x = to_f64(k.inputs[0]);
  normalize_rows(x, n / len, len, k.ctx.f("eps"), false);
  const auto w = optional_input(k, 1, len, 1.0);
  for (int64_t i = 0; i < n; ++i) x[i] *= w[i % len];
  from_f64(x, k.outputs[0]);
}

std::vector<Tensor> rms_norm_vjp(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  const size_t k = a.ctx.ints("normalized_shape").size();
  const Axes axes = trailing_axes(x.ndim(), k);
  const Tensor& g = a.grads[0];
  Tensor r = rsqrt(mean(mul(x, x), axes, true) + a.ctx.f("eps"));
  const bool has_w = a.inputs.size() > 1;
  Tensor gxhat = has_w ? mul(g, a.inputs[1]) : g;
  // d/dx_j of x_i r = r (delta_ij - x_i x_j r^2 / n)
  Tensor gx = mul(r, gxhat - mul(mul(x, mul(r, r)), mean(mul(gxhat, x), axes, true)));
  std::vector<Tensor> out = {grad_as(gx, x)};
  if (has_w) out.push_back(grad_as(sum_leading(mul(g, mul(x, r)), static_cast<int>(k)), a.inputs[1]));
  return out;
}

// ---- group_norm: x [N, C, ...] normalized over each group of C / num_groups channels
std::vector<TensorType> infer_group_norm(const OpContext& c) {
  check_floating(c, 0, "input x");
  const int64_t ch = channels(c);
  const int64_t groups = c.i("num_groups");
  DS_CHECK(groups > 0, ValueError, c.where(), "num_groups must be positive, got ", groups);
  DS_CHECK(ch == dyn || ch % groups == 0, ValueError, c.where(), "channels (", ch,
           ") must be divisible by num_groups (", groups, ")");
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    check_floating(c, i, i == 1 ? "weight" : "bias");
    check_shape(c, i, i == 1 ? "weight" : "bias", {ch}, "one value per channel");
  }
  return one(result_type(c), c.inputs[0].shape);
}

void group_norm_reference(const KernelCall& k) {
  const Shape& s = k.inputs[0].shape();
  const int64_t n = k.inputs[0].numel();
  if (n == 0) return;
  const int64_t ch = s[1], groups = k.ctx.i("num_groups");
  const int64_t spatial = n / (s[0] * ch);
  auto x = to_f64(k.inputs[0]);
  normalize_rows(x, s[0] * groups, ch / groups * spatial, k.ctx.f("eps"), true);
  const auto w = optional_input(k, 1, ch, 1.0), b = optional_input(k, 2, ch, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i / spatial % ch;
    x[i] = x[i] * w[c] + b[c];
  }
  from_f64(x, k.outputs[0]);
}

std::vector<Tensor> group_norm_vjp(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  const Shape& s = x.shape();
  const int64_t groups = a.ctx.i("num_groups");
  int64_t spatial = 1;
  for (int d = 2; d < x.ndim(); ++d) spatial *= s[d];
  const Shape grouped = {s[0], groups, s[1] / groups * spatial};
  const Axes row = {2};
  const Tensor& g = a.grads[0];
  Tensor xr = reshape(x, grouped);
  Tensor xc = xr - mean(xr, row, true);
  Tensor rstd = rsqrt(mean(mul(xc, xc), row, true) + a.ctx.f("eps"));
  Tensor xhat_r = mul(xc, rstd);
  const bool has_w = a.inputs.size() > 1;
  Tensor gxhat = has_w ? mul(g, per_channel(a.inputs[1], x.ndim())) : g;
  Tensor gx = reshape(centered_norm_grad(reshape(gxhat, grouped), xhat_r, rstd, row), s);
  std::vector<Tensor> out = {grad_as(gx, x)};
  const Axes red = all_but_channel(x.ndim());
  if (has_w) out.push_back(grad_as(sum(mul(g, reshape(xhat_r, s)), red), a.inputs[1]));
  if (a.inputs.size() > 2) out.push_back(grad_as(sum(g, red), a.inputs[2]));
  return out;
}

// ---- batch_norm (inference): (x - running_mean) / sqrt(running_var + eps) * w + b
std::vector<TensorType> infer_batch_norm(const OpContext& c) {
  check_floating(c, 0, "input x");
  const int64_t ch = channels(c);
  static const char* names[] = {"x", "running_mean", "running_var", "weight", "bias"};
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    check_floating(c, i, names[i]);
    check_shape(c, i, names[i], {ch}, "one value per channel");
  }
  return one(result_type(c), c.inputs[0].shape);
}

void batch_norm_reference(const KernelCall& k) {
  const Shape& s = k.inputs[0].shape();
  const int64_t n = k.inputs[0].numel();
  if (n == 0) return;
  const int64_t ch = s[1], spatial = n / (s[0] * ch);
  auto x = to_f64(k.inputs[0]);
  const auto mu = to_f64(k.inputs[1]), var = to_f64(k.inputs[2]);
  const auto w = optional_input(k, 3, ch, 1.0), b = optional_input(k, 4, ch, 0.0);
  const double eps = k.ctx.f("eps");
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i / spatial % ch;
    x[i] = (x[i] - mu[c]) / std::sqrt(var[c] + eps) * w[c] + b[c];
  }
  from_f64(x, k.outputs[0]);
}

std::vector<Tensor> batch_norm_vjp(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  const int rank = x.ndim();
  const Tensor& g = a.grads[0];
  const Axes red = all_but_channel(rank);
  Tensor rstd = rsqrt(a.inputs[2] + a.ctx.f("eps"));  // [C]
  Tensor scale = a.inputs.size() > 3 ? mul(rstd, a.inputs[3]) : rstd;
  Tensor xc = x - per_channel(a.inputs[1], rank);
  Tensor gx = mul(g, per_channel(scale, rank));
  Tensor g_sum = sum(g, red);
  Tensor g_xc = sum(mul(g, xc), red);
  // d/d var of xc * (var + eps)^(-1/2) * w = -1/2 xc w rstd^3
  Tensor g_var = mul(g_xc, mul(scale, mul(rstd, rstd))) * -0.5;
  std::vector<Tensor> out = {grad_as(gx, x), grad_as(neg(mul(g_sum, scale)), a.inputs[1]),
                             grad_as(g_var, a.inputs[2])};
  if (a.inputs.size() > 3) out.push_back(grad_as(mul(g_xc, rstd), a.inputs[3]));
  if (a.inputs.size() > 4) out.push_back(grad_as(g_sum, a.inputs[4]));
  return out;
}

const OpRegistrar reg([] {
  register_op({
      .name = "batch_norm",
      .traits = kFusible,
      .num_inputs = 5,
      .min_inputs = 3,
      .attrs = {{"eps", AttrKind::Float, 1e-5}},
      .infer = infer_batch_norm,
      .cost = norm_cost,
      .reference = batch_norm_reference,
      .vjp = batch_norm_vjp,
      .onnx = "BatchNormalization",
  });
  register_op({
      .name = "layer_norm",
      .traits = kReduction,
      .num_inputs = 3,
      .min_inputs = 1,
      .attrs = {{"normalized_shape", AttrKind::Ints, std::nullopt}, {"eps", AttrKind::Float, 1e-5}},
      .infer = infer_layer_norm,
      .cost = norm_cost,
      .reference = layer_norm_reference,
      .vjp = layer_norm_vjp,
      .onnx = "LayerNormalization",
  });
  register_op({
      .name = "rms_norm",
      .traits = kReduction,
      .num_inputs = 2,
      .min_inputs = 1,
      .attrs = {{"normalized_shape", AttrKind::Ints, std::nullopt}, {"eps", AttrKind::Float, 1e-6}},
      .infer = infer_layer_norm,
      .cost = norm_cost,
      .reference = rms_norm_reference,
      .vjp = rms_norm_vjp,
      .onnx = "RMSNormalization",
  });
  register_op({
      .name = "group_norm",
      .traits = kReduction,
      .num_inputs = 3,
      .min_inputs = 1,
      .attrs = {{"num_groups", AttrKind::Int, std::nullopt}, {"eps", AttrKind::Float, 1e-5}},
      .infer = infer_group_norm,
      .cost = norm_cost,
      .reference = group_norm_reference,
      .vjp = group_norm_vjp,
      .onnx = "GroupNormalization",
  });
});

}  // namespace
}  // namespace ops

namespace {
// Weight and bias are trailing optional inputs: a bias without a weight gets a weight
// of ones.
std::vector<Tensor> affine_inputs(std::vector<Tensor> in, const Tensor& weight,
                                  const Tensor& bias) {
  if (weight.defined() || bias.defined())
    in.push_back(weight.defined() ? weight : Tensor::full(bias.shape(), 1.0, bias.dtype()));
  if (bias.defined()) in.push_back(bias);
  return in;
}
}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, double eps) {
  return apply1("batch_norm", affine_inputs({x, running_mean, running_var}, weight, bias),
                {{"eps", eps}});
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps) {
  return apply1("layer_norm", affine_inputs({x}, weight, bias),
                {{"normalized_shape", normalized_shape}, {"eps", eps}});
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias,
                  double eps) {
  return apply1("group_norm", affine_inputs({x}, weight, bias),
                {{"num_groups", num_groups}, {"eps", eps}});
}

Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, double eps) {
  return apply1("rms_norm", affine_inputs({x}, weight, Tensor()),
                {{"normalized_shape", normalized_shape}, {"eps", eps}});
}

}  // namespace ds
