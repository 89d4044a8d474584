// softmax_cross_entropy (logits [N, C], target [N]) -> (loss [N], lse [N]) and its
// gradient op softmax_cross_entropy_backward (logits, target, lse, dloss) -> dlogits:
//   loss = lse - (1 - ls) x[t] - ls mean(x),  dlogits = (softmax - (1 - ls) onehot(t) - ls / C) dloss
// with ls = label_smoothing; rows whose target is ignore_index give 0 (loss and
// gradient). Float64 references here; fast kernels in backends/cpu and backends/cuda.
#include "ir/ops/softmax_cross_entropy.h"

#include <cmath>
#include <limits>

#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {

void throw_bad_target(const OpContext& ctx, int64_t row, int64_t value, int64_t classes) {
  throw ValueError(detail::cat(ctx.where(), "target ", value, " at row ", row,
                               " is out of range for ", classes, " classes; expected 0 <= target < ",
                               classes, " or ignore_index (", ctx.i("ignore_index"), ")"));
}

namespace {

bool same_extent(int64_t a, int64_t b) { return a == b || a == dyn || b == dyn; }

// Checks logits [N, C] (floating) and target [N] (int32/int64) and the attributes.
void check_logits_target(const OpContext& c) {
  const TensorType &x = c.inputs[0], &t = c.inputs[1];
  DS_CHECK(is_floating(x.dtype), TypeError, c.where(), "logits must be floating-point, got ",
           x.str());
  DS_CHECK(x.shape.size() == 2, ShapeError, c.where(), "logits must be [N, C], got ",
           shape_str(x.shape));
  DS_CHECK(t.dtype == DType::Int32 || t.dtype == DType::Int64, TypeError, c.where(),
           "target must hold class indices as int32 or int64, got ", t.str());
  DS_CHECK(t.shape.size() == 1 && same_extent(t.shape[0], x.shape[0]), ShapeError, c.where(),
           "target must be [", x.shape[0], "] (one class per row of logits ", shape_str(x.shape),
           "), got ", shape_str(t.shape));
  const double ls = c.f("label_smoothing");
  DS_CHECK(ls >= 0 && ls <= 1, ValueError, c.where(), "label_smoothing must be in [0, 1], got ",
           ls);
}

// A per-row input (lse, dloss) of the statistics' type.
void check_row_values(const OpContext& c, size_t i, const char* what) {
  const TensorType &x = c.inputs[0], &v = c.inputs[i];
  const DType s = cross_entropy_stat_type(x.dtype);
  DS_CHECK(v.dtype == s && v.shape.size() == 1 && same_extent(v.shape[0], x.shape[0]), TypeError,
           c.where(), what, " must be ", dtype_name(s), " [", x.shape[0], "] for logits ", x.str(),
           ", got ", v.str());
}

Shape rows_of(const OpContext& c) {
  const int64_t n = c.inputs[0].shape[0];
  return {n != dyn ? n : c.inputs[1].shape[0]};
}

std::vector<TensorType> infer_forward(const OpContext& c) {
  check_logits_target(c);
  const DType s = cross_entropy_stat_type(c.inputs[0].dtype);
  return {{s, rows_of(c)}, {s, rows_of(c)}};
}

std::vector<TensorType> infer_backward(const OpContext& c) {
  check_logits_target(c);
  check_row_values(c, 2, "lse");
  check_row_values(c, 3, "dloss");
  Shape shape = c.inputs[0].shape;
  shape[0] = rows_of(c)[0];
  return one(c.inputs[0].dtype, shape);
}

double elements(const OpContext& c) {
  return static_cast<double>(std::max<int64_t>(numel(c.inputs[0].shape), 0));
}
double rows(const OpContext& c) {
  return static_cast<double>(std::max<int64_t>(c.inputs[0].shape[0], 0));
}

// One read of the logits forward (max, exp, sum per element); one read and one
// write backward; per row the target and two or three row values.
Cost forward_cost(const OpContext& c) {
  const double e = elements(c), size = static_cast<double>(dtype_size(c.inputs[0].dtype));
  return {4 * e, e * size + rows(c) * (8 + 2 * 8)};
}
Cost backward_cost(const OpContext& c) {
  const double e = elements(c), size = static_cast<double>(dtype_size(c.inputs[0].dtype));
  return {4 * e, 2 * e * size + rows(c) * (8 + 2 * 8)};
}

// The rows' class indices, checked: -1 marks an ignored row.
std::vector<int64_t> checked_targets(const KernelCall& k, int64_t classes) {
  const auto raw = to_f64(k.inputs[1]);
  const int64_t ignore = k.ctx.i("ignore_index");
  std::vector<int64_t> out(raw.size());
  for (size_t r = 0; r < raw.size(); ++r) {
    const auto t = static_cast<int64_t>(raw[r]);
    if (t == ignore) {
      out[r] = -1;
      continue;
    }
    if (t < 0 || t >= classes) throw_bad_target(k.ctx, static_cast<int64_t>(r), t, classes);
    out[r] = t;
  }
  return out;
}

// log(sum(exp(row))): the max stays where it is -inf, +inf or NaN.
double row_logsumexp(const double* row, int64_t n) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::isnan(row[j]) || row[j] > m ? row[j] : m;
  if (std::isnan(m) || std::isinf(m)) return m;
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(row[j] - m);
  return m + std::log(s);
}

void forward_reference(const KernelCall& k) {
  const int64_t n = k.inputs[0].shape()[0], classes = k.inputs[0].shape()[1];
  const auto x = to_f64(k.inputs[0]);
  const auto target = checked_targets(k, classes);
  const double ls = k.ctx.f("label_smoothing");
  std::vector<double> loss(static_cast<size_t>(n)), lse(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const double* row = x.data() + r * classes;
    lse[r] = row_logsumexp(row, classes);
    if (target[r] < 0) continue;
    double l = lse[r] - (1 - ls) * row[target[r]];
    if (ls > 0) {
      double s = 0;
      for (int64_t j = 0; j < classes; ++j) s += row[j];
      l -= ls * s / static_cast<double>(classes);
    }
    loss[r] = l;
  }
  from_f64(loss, k.outputs[0]);
  from_f64(lse, k.outputs[1]);
}

void backward_reference(const KernelCall& k) {
  const int64_t n = k.inputs[0].shape()[0], classes = k.inputs[0].shape()[1];
  auto x = to_f64(k.inputs[0]);
  const auto target = checked_targets(k, classes);
  const auto lse = to_f64(k.inputs[2]), dloss = to_f64(k.inputs[3]);
  const double ls = k.ctx.f("label_smoothing");
  const double uniform = classes > 0 ? ls / static_cast<double>(classes) : 0.0;
  for (int64_t r = 0; r < n; ++r) {
    double* row = x.data() + r * classes;
    for (int64_t j = 0; j < classes; ++j) {
      if (target[r] < 0) {
        row[j] = 0;
        continue;
      }
      const double hit = j == target[r] ? 1 - ls : 0.0;
      row[j] = (std::exp(row[j] - lse[r]) - hit - uniform) * dloss[r];
    }
  }
  from_f64(x, k.outputs[0]);
}

AttrMap attrs_of(const OpContext& c) {
  return {{"ignore_index", c.i("ignore_index")}, {"label_smoothing", c.f("label_smoothing")}};
}

// The loss's gradient is the backward op; the lse output's (softmax * dlse) is
// written with ds ops: no model differentiates through lse, but it is an output.
std::vector<Tensor> forward_vjp(const VjpArgs& a) {
  const Tensor &x = a.inputs[0], &target = a.inputs[1], &lse = a.outputs[1];
  Tensor dx;
  if (a.grads[0].defined())
    dx = apply1("softmax_cross_entropy_backward", {x, target, lse, a.grads[0]}, attrs_of(a.ctx));
  if (a.grads[1].defined()) {
    const Tensor xs = cast(x, lse.dtype());
    const Tensor soft = exp(xs - reshape(lse, {-1, 1}));
    const Tensor d = cast(soft * reshape(a.grads[1], {-1, 1}), x.dtype());
    dx = dx.defined() ? dx + d : d;
  }
  return {dx, Tensor()};
}

const std::vector<AttrSpec> kAttrs = {{"ignore_index", AttrKind::Int, int64_t{-100}},
                                      {"label_smoothing", AttrKind::Float, 0.0}};

const OpRegistrar reg([] {
  register_op({
      .name = "softmax_cross_entropy",
      .traits = kReduction,
      .num_inputs = 2,
      .attrs = kAttrs,
      .infer = infer_forward,
      .cost = forward_cost,
      .reference = forward_reference,
      .vjp = forward_vjp,
  });
  // No VJP: second derivatives through the loss are not supported (autodiff
  // names this op when one is asked for).
  register_op({
      .name = "softmax_cross_entropy_backward",
      .traits = kReduction,
      .num_inputs = 4,
      .attrs = kAttrs,
      .infer = infer_backward,
      .cost = backward_cost,
      .reference = backward_reference,
  });
});

}  // namespace
}  // namespace ops

SoftmaxCrossEntropyResult softmax_cross_entropy(const Tensor& logits, const Tensor& target,
                                                int64_t ignore_index, double label_smoothing) {
  const auto out = apply("softmax_cross_entropy", {logits, target},
                         {{"ignore_index", ignore_index}, {"label_smoothing", label_smoothing}});
  return {out[0], out[1]};
}

}  // namespace ds
