// batch_norm_train: batch norm in training mode as one op. Over x [N, C, ...] it
// returns y = (x - mean) / sqrt(var + eps) * weight + bias and the batch
// statistics per channel (mean, biased var), so a training step runs one
// statistics pass and one normalize pass instead of a chain of reductions,
// broadcasts and elementwise ops. Its VJP is batch_norm_train_backward, the closed
// form over the same statistics:
//   dx = w / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))
//   dweight = sum(dy * xhat), dbias = sum(dy).
// With the epilogue (the batch_norm_epilogue pass forms it from the graph's
// add/relu after batch norm): y = relu(y + residual), the residual an optional
// fourth input (after weight and bias) and relu a bool attribute; y is rounded to
// x's type before the residual is added, as the separate add would see it.
// x may be float32/float64/float16/bfloat16; the statistics, weight and bias are
// float32 (float64 for a float64 x): a low-precision x keeps float32 statistics.
#include "ir/ops/batch_norm_train.h"

#include <cmath>

#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

DType stats_type(DType x) { return x == DType::Float64 ? DType::Float64 : DType::Float32; }

bool same_extents(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return false;
  for (size_t d = 0; d < a.size(); ++d)
    if (a[d] != b[d] && a[d] != dyn && b[d] != dyn) return false;
  return true;
}

// Checks the [N, C, ...] input `i` of a floating type; returns C.
int64_t checked_channels(const OpContext& c, size_t i, const char* what) {
  const TensorType& x = c.inputs[i];
  DS_CHECK(is_floating(x.dtype), TypeError, c.where(), what, " must be floating-point, got ",
           dtype_name(x.dtype));
  DS_CHECK(x.shape.size() >= 2, ShapeError, c.where(), what,
           " must be [N, C, ...] (rank >= 2), got ", shape_str(x.shape));
  return x.shape[1];
}

// Checks that input `i` is a [C] vector of the statistics' type.
void check_per_channel(const OpContext& c, size_t i, const char* what, int64_t channels,
                       DType stats) {
  const TensorType& t = c.inputs[i];
  DS_CHECK(t.dtype == stats, TypeError, c.where(), what, " must be ", dtype_name(stats),
           " (the statistics' type for a ", dtype_name(c.inputs[0].dtype), " input), got ",
           dtype_name(t.dtype));
  DS_CHECK(same_extents(t.shape, Shape{channels}), ShapeError, c.where(), what, " has shape ",
           shape_str(t.shape), ", expected [", channels, "] (one value per channel)");
}

std::vector<TensorType> with_stats(const TensorType& x, int64_t channels) {
  const DType s = stats_type(x.dtype);
  return {x, {s, {channels}}, {s, {channels}}};
}

// inputs: x, [weight], [bias]
std::vector<TensorType> infer_forward(const OpContext& c) {
  const int64_t ch = checked_channels(c, 0, "input x");
  const DType s = stats_type(c.inputs[0].dtype);
  if (c.inputs.size() > 1) check_per_channel(c, 1, "weight", ch, s);
  if (c.inputs.size() > 2) check_per_channel(c, 2, "bias", ch, s);
  if (c.inputs.size() > 3) {
    const TensorType &x = c.inputs[0], &r = c.inputs[3];
    DS_CHECK(r.dtype == x.dtype && same_extents(r.shape, x.shape), TypeError, c.where(),
             "residual must have x's type ", dtype_name(x.dtype), " ", shape_str(x.shape),
             ", got ", dtype_name(r.dtype), " ", shape_str(r.shape));
  }
  return with_stats(c.inputs[0], ch);
}

// inputs: dy, x, mean, var, [weight]
std::vector<TensorType> infer_backward(const OpContext& c) {
  const int64_t ch = checked_channels(c, 1, "input x");
  const TensorType &dy = c.inputs[0], &x = c.inputs[1];
  DS_CHECK(dy.dtype == x.dtype && same_extents(dy.shape, x.shape), TypeError, c.where(),
           "gradient dy must have x's type ", dtype_name(x.dtype), " ", shape_str(x.shape),
           ", got ", dtype_name(dy.dtype), " ", shape_str(dy.shape));
  const DType s = stats_type(x.dtype);
  check_per_channel(c, 2, "mean", ch, s);
  check_per_channel(c, 3, "var", ch, s);
  if (c.inputs.size() > 4) check_per_channel(c, 4, "weight", ch, s);
  return with_stats(x, ch);
}

// Bytes moved by the fast kernels: the forward reads x twice (statistics, then
// normalize; and a residual once) and writes y; the backward reads x and dy twice
// and writes dx.
Cost forward_cost(const OpContext& c) {
  const double n = static_cast<double>(std::max<int64_t>(numel(c.inputs[0].shape), 0));
  const double passes = c.inputs.size() > 3 ? 4 : 3;  // a residual is read once more
  return {7 * n, passes * n * static_cast<double>(dtype_size(c.inputs[0].dtype))};
}
Cost backward_cost(const OpContext& c) {
  const double n = static_cast<double>(std::max<int64_t>(numel(c.inputs[1].shape), 0));
  return {9 * n, 5 * n * static_cast<double>(dtype_size(c.inputs[1].dtype))};
}

// [N, C, inner] geometry of a contiguous [N, C, ...] tensor.
struct Planes {
  int64_t n, ch, inner;
  int64_t at(int64_t b, int64_t c, int64_t i) const { return (b * ch + c) * inner + i; }
  int64_t per_channel() const { return n * inner; }
};
Planes planes_of(const Tensor& x) {
  const int64_t n = x.shape()[0], ch = x.shape()[1];
  return {n, ch, n * ch > 0 ? x.numel() / (n * ch) : 0};
}

std::vector<double> optional_or(const KernelCall& k, size_t i, int64_t n, double fill) {
  if (i < k.inputs.size()) return to_f64(k.inputs[i]);
  return std::vector<double>(static_cast<size_t>(n), fill);
}

// y = relu(y + residual), each part where the call has it.
void apply_epilogue(const KernelCall& k, std::vector<double>* y) {
  if (k.inputs.size() > 3) {
    const auto r = to_f64(k.inputs[3]);
    for (size_t i = 0; i < y->size(); ++i) (*y)[i] += r[i];
  }
  if (k.ctx.b("relu"))
    for (double& v : *y) v = v > 0 || std::isnan(v) ? v : 0.0;
}

// Float64 reference: two-pass statistics (0/0 = NaN for a channel without values).
void forward_reference(const KernelCall& k) {
  const Planes p = planes_of(k.inputs[0]);
  auto x = to_f64(k.inputs[0]);
  const auto w = optional_or(k, 1, p.ch, 1.0), b = optional_or(k, 2, p.ch, 0.0);
  const double eps = k.ctx.f("eps"), m = static_cast<double>(p.per_channel());
  std::vector<double> mean(p.ch), var(p.ch);
  for (int64_t c = 0; c < p.ch; ++c) {
    double s = 0;
    for (int64_t b0 = 0; b0 < p.n; ++b0)
      for (int64_t i = 0; i < p.inner; ++i) s += x[p.at(b0, c, i)];
    const double mu = s / m;
    double ss = 0;
    for (int64_t b0 = 0; b0 < p.n; ++b0)
      for (int64_t i = 0; i < p.inner; ++i) ss += (x[p.at(b0, c, i)] - mu) * (x[p.at(b0, c, i)] - mu);
    mean[c] = mu;
    var[c] = ss / m;
    const double scale = w[c] / std::sqrt(var[c] + eps);
    for (int64_t b0 = 0; b0 < p.n; ++b0)
      for (int64_t i = 0; i < p.inner; ++i) {
        double& v = x[p.at(b0, c, i)];
        v = (v - mu) * scale + b[c];
      }
  }
  apply_epilogue(k, &x);
  from_f64(x, k.outputs[0]);
  from_f64(mean, k.outputs[1]);
  from_f64(var, k.outputs[2]);
}

void backward_reference(const KernelCall& k) {
  const Planes p = planes_of(k.inputs[1]);
  auto dy = to_f64(k.inputs[0]);
  const auto x = to_f64(k.inputs[1]), mean = to_f64(k.inputs[2]), var = to_f64(k.inputs[3]);
  const auto w = optional_or(k, 4, p.ch, 1.0);
  const double eps = k.ctx.f("eps"), m = static_cast<double>(p.per_channel());
  std::vector<double> dw(p.ch), db(p.ch);
  for (int64_t c = 0; c < p.ch; ++c) {
    const double invstd = 1.0 / std::sqrt(var[c] + eps);
    double sdy = 0, sdyxc = 0;  // sum(dy), sum(dy * (x - mean))
    for (int64_t b0 = 0; b0 < p.n; ++b0)
      for (int64_t i = 0; i < p.inner; ++i) {
        const int64_t j = p.at(b0, c, i);
        sdy += dy[j];
        sdyxc += dy[j] * (x[j] - mean[c]);
      }
    db[c] = sdy;
    dw[c] = sdyxc * invstd;
    const double scale = w[c] * invstd;
    for (int64_t b0 = 0; b0 < p.n; ++b0)
      for (int64_t i = 0; i < p.inner; ++i) {
        const int64_t j = p.at(b0, c, i);
        dy[j] = scale * (dy[j] - sdy / m - (x[j] - mean[c]) * invstd * invstd * sdyxc / m);
      }
  }
  from_f64(dy, k.outputs[0]);
  from_f64(dw, k.outputs[1]);
  from_f64(db, k.outputs[2]);
}

// A [C] tensor shaped [C, 1, ...] to broadcast against [N, C, ...].
Tensor per_channel(const Tensor& t, int rank) {
  Shape s(static_cast<size_t>(rank - 1), 1);
  s[0] = t.shape()[0];
  return reshape(t, s);
}

Tensor add_defined(const Tensor& a, const Tensor& b) { return a.defined() ? add(a, b) : b; }

// The statistics per channel count M = N * H * W (static: their gradients need it).
double values_per_channel(const Tensor& x, const OpContext& c) {
  double m = 1;
  for (int d = 0; d < x.ndim(); ++d) {
    if (d == 1) continue;
    DS_CHECK(x.shape()[d] != dyn, ShapeError, c.where(),
             "a gradient of the batch mean or var needs a static input shape, got ",
             shape_str(x.shape()));
    m *= static_cast<double>(x.shape()[d]);
  }
  return m;
}

std::vector<Tensor> forward_vjp(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  const int rank = x.ndim();
  const Tensor &mean = a.outputs[1], &var = a.outputs[2];
  Tensor gx, gw, gb, gy = a.grads[0];
  // Through the epilogue: relu's mask (y > 0 exactly where its input was), then
  // the residual's gradient is the normalized output's.
  if (gy.defined() && a.ctx.b("relu"))
    gy = where(gt(a.outputs[0], scalar_like(0.0, a.outputs[0])), gy, scalar_like(0.0, gy));
  if (gy.defined()) {
    std::vector<Tensor> in = {gy, x, mean, var};
    if (a.inputs.size() > 1) in.push_back(a.inputs[1]);
    const auto g = apply("batch_norm_train_backward", in, {{"eps", a.ctx.f("eps")}});
    gx = g[0];
    gw = g[1];
    gb = g[2];
  }
  // The statistics as outputs: d mean / dx = 1/M, d var / dx = 2 (x - mean) / M.
  if (a.grads[1].defined()) {
    const double m = values_per_channel(x, a.ctx);
    gx = add_defined(gx, cast(broadcast_to(per_channel(a.grads[1] / m, rank), x.shape()), x.dtype()));
  }
  if (a.grads[2].defined()) {
    const double m = values_per_channel(x, a.ctx);
    gx = add_defined(gx, cast(mul(x - per_channel(mean, rank), per_channel(a.grads[2] * (2 / m), rank)),
                              x.dtype()));
  }
  std::vector<Tensor> out = {gx};
  if (a.inputs.size() > 1) out.push_back(gw.defined() ? gw : a.inputs[1] * 0.0);
  if (a.inputs.size() > 2) out.push_back(gb.defined() ? gb : a.inputs[2] * 0.0);
  if (a.inputs.size() > 3) out.push_back(gy.defined() ? gy : a.inputs[3] * 0.0);
  return out;
}

const OpRegistrar reg([] {
  register_op({
      .name = "batch_norm_train",
      .traits = kReduction,
      .num_inputs = 4,
      .min_inputs = 1,
      .attrs = {{"eps", AttrKind::Float, 1e-5}, {"relu", AttrKind::Bool, false}},
      .infer = infer_forward,
      .cost = forward_cost,
      .reference = forward_reference,
      .vjp = forward_vjp,
  });
  // No VJP: a second derivative through batch norm in training mode is not
  // supported (autodiff names this op when one is asked for).
  register_op({
      .name = "batch_norm_train_backward",
      .traits = kReduction,
      .num_inputs = 5,
      .min_inputs = 4,
      .attrs = {{"eps", AttrKind::Float, 1e-5}},
      .infer = infer_backward,
      .cost = backward_cost,
      .reference = backward_reference,
  });
});

}  // namespace
}  // namespace ops

BatchNormTrainResult batch_norm_train(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                      double eps) {
  std::vector<Tensor> in = {x};
  // A bias without a weight gets a weight of ones.
  if (weight.defined() || bias.defined())
    in.push_back(weight.defined() ? weight : Tensor::full(bias.shape(), 1.0, bias.dtype()));
  if (bias.defined()) in.push_back(bias);
  auto out = apply("batch_norm_train", in, {{"eps", eps}});
  return {out[0], out[1], out[2]};
}

}  // namespace ds
