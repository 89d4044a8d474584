// Reductions over any axes with keepdims (sum, mean, prod, max, min, var, std,
// logsumexp), argmax/argmin along one axis, softmax/log_softmax. Reference
// kernels fold each output's group of values in float64; VJPs are written with
// ds ops, so they run eagerly and build graphs alike.
//
// sum takes an optional result type, torch.sum(x, dtype=...)'s: attribute `dtype`,
// a dtype name ("float32"), empty for numpy's result type. It lets a bfloat16 or
// float16 value be summed into float32 without a float32 copy of it (the bias
// gradients under autocast; see passes/sum_low_precision.h).
#include <cmath>
#include <limits>

#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Shape reduced_shape(const Shape& in, const std::vector<int>& axes, bool keep) {
  Shape out;
  for (int d = 0; d < static_cast<int>(in.size()); ++d) {
    const bool r = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (!r)
      out.push_back(in[d]);
    else if (keep)
      out.push_back(1);
  }
  return out;
}

// Calls f(out_index, values) for each output element with the reduced values.
template <typename F>
void for_each_group(const std::vector<double>& x, const Shape& in, const std::vector<int>& axes,
                    F&& f) {
  const int nd = static_cast<int>(in.size());
  Shape kept_shape, red_shape;
  std::vector<int> kept_axes;
  for (int d = 0; d < nd; ++d) {
    if (std::find(axes.begin(), axes.end(), d) != axes.end())
      red_shape.push_back(in[d]);
    else {
      kept_shape.push_back(in[d]);
      kept_axes.push_back(d);
    }
  }
  const Shape st = contiguous_strides(in);
  const int64_t n_out = numel(kept_shape), n_red = numel(red_shape);
  std::vector<double> vals(static_cast<size_t>(n_red));
  for (int64_t o = 0; o < n_out; ++o) {
    int64_t base = 0, rem = o;
    for (int k = static_cast<int>(kept_axes.size()) - 1; k >= 0; --k) {
      base += (rem % kept_shape[k]) * st[kept_axes[k]];
      rem /= kept_shape[k];
    }
    for (int64_t r = 0; r < n_red; ++r) {
      int64_t off = base, rr = r;
      for (int k = static_cast<int>(axes.size()) - 1; k >= 0; --k) {
        off += (rr % red_shape[k]) * st[axes[k]];
        rr /= red_shape[k];
      }
      vals[r] = x[off];
    }
    f(o, vals);
  }
}

// Normalized reduction axes; a rank-0 input has none (numpy accepts axis 0 or -1
// there and returns the value).
std::vector<int> reduce_axes(const std::vector<int64_t>& axes, int rank, const std::string& where) {
  auto a = norm_axes(axes, rank, where);
  if (rank == 0) a.clear();
  return a;
}

// Elements per output group; -1 when a reduced extent is symbolic.
int64_t static_group_size(const Shape& in, const std::vector<int>& axes) {
  int64_t n = 1;
  for (int a : axes) {
    if (in[a] == dyn) return -1;
    n *= in[a];
  }
  return n;
}

// ---- group folds (float64)
double fold_sum(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e;
  return s;
}
double fold_mean(const std::vector<double>& v) {
  return fold_sum(v) / static_cast<double>(v.size());  // empty: 0/0 = NaN, like numpy
}
// max/min propagate NaN, like numpy.
double fold_max(const std::vector<double>& v) {
  double m = -kInf;
  for (double e : v) {
    if (std::isnan(e)) return e;
    m = std::max(m, e);
  }
  return m;
}
double fold_min(const std::vector<double>& v) {
  double m = kInf;
  for (double e : v) {
    if (std::isnan(e)) return e;
    m = std::min(m, e);
  }
  return m;
}
double fold_prod(const std::vector<double>& v) {
  double p = 1;
  for (double e : v) p *= e;
  return p;
}
// Divides by max(n - ddof, 0), like numpy (so ddof >= n gives inf or NaN).
double fold_var(const std::vector<double>& v, int64_t ddof) {
  const double m = fold_mean(v);
  double s = 0;
  for (double e : v) s += (e - m) * (e - m);
  return s / static_cast<double>(std::max<int64_t>(static_cast<int64_t>(v.size()) - ddof, 0));
}
// log(sum(exp(v))) shifted by the max for stability; all -inf gives -inf.
double fold_logsumexp(const std::vector<double>& v) {
  const double m = fold_max(v);
  if (std::isnan(m) || std::isinf(m)) return m;
  double s = 0;
  for (double e : v) s += std::exp(e - m);
  return m + std::log(s);
}

// ---- VJP helpers
std::vector<int> vjp_axes(const VjpArgs& a) {
  return reduce_axes(a.ctx.ints("axes"), a.inputs[0].ndim(), a.ctx.where());
}

// An output-shaped tensor reshaped so it broadcasts against the input (reduced
// axes kept as extent 1).
Tensor keep_reduced(const Tensor& t, const VjpArgs& a) {
  if (a.ctx.b("keepdims")) return t;
  return reshape(t, reduced_shape(a.inputs[0].shape(), vjp_axes(a), true));
}

std::vector<int64_t> as_int64(const std::vector<int>& v) { return {v.begin(), v.end()}; }

// A tensor of ones shaped like x (a graph expression when x is symbolic).
Tensor ones_like(const Tensor& x, DType t) { return cast(logical_or(eq(x, x), isnan(x)), t); }

// g broadcast to x's shape. A symbolic extent of x (a dynamic batch) is known only at
// run time, so then the broadcast comes from multiplying with ones shaped like x.
Tensor broadcast_like(const Tensor& g, const Tensor& x) {
  if (is_static(x.shape())) return broadcast_to(g, x.shape());
  return mul(ones_like(x, g.dtype()), g);
}

// max(elements per group - ddof, 0), the forward divisor, in x's type: a scalar when
// the reduced extents are static, else (a dynamic batch) counted with a sum of ones.
Tensor group_divisor(const VjpArgs& a, int64_t ddof) {
  const Tensor& x = a.inputs[0];
  const auto axes = vjp_axes(a);
  const int64_t n = static_group_size(x.shape(), axes);
  if (n >= 0) return Tensor::scalar(static_cast<double>(std::max<int64_t>(n - ddof, 0)), x.dtype());
  Tensor count = sum(ones_like(x, x.dtype()), as_int64(axes), true);
  if (ddof == 0) return count;
  return maximum(count - static_cast<double>(ddof), scalar_like(0.0, count));
}

bool differentiable(const Tensor& x) { return is_floating(x.dtype()); }

// With a wider result type the gradient comes back in x's type (cast's rule).
std::vector<Tensor> vjp_sum(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  if (!differentiable(x)) return {Tensor()};
  return {cast(broadcast_like(keep_reduced(a.grads[0], a), x), x.dtype())};
}

std::vector<Tensor> vjp_mean(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  if (!differentiable(x)) return {Tensor()};
  return {broadcast_like(keep_reduced(a.grads[0], a) / group_divisor(a, 0), x)};
}

// The gradient goes to the positions equal to the result, split evenly among ties.
std::vector<Tensor> vjp_extremum(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  if (!differentiable(x)) return {Tensor()};
  Tensor hit = cast(eq(x, keep_reduced(a.outputs[0], a)), x.dtype());
  Tensor ties = sum(hit, as_int64(vjp_axes(a)), true);
  return {mul(hit, keep_reduced(a.grads[0], a) / ties)};
}

// d prod / dx_i = product of the others, computed without dividing by zero: with
// one zero in the group only that position gets the product of the rest.
std::vector<Tensor> vjp_prod(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  if (!differentiable(x)) return {Tensor()};
  const auto axes = as_int64(vjp_axes(a));
  Tensor zero = scalar_like(0.0, x), one_ = scalar_like(1.0, x);
  Tensor is_zero = eq(x, zero);
  Tensor x_safe = where(is_zero, one_, x);
  Tensor nonzero_prod = prod(x_safe, axes, true);
  Tensor zeros = sum(cast(is_zero, x.dtype()), axes, true);
  Tensor others = where(is_zero, where(eq(zeros, one_), nonzero_prod, zero),
                        where(eq(zeros, zero), nonzero_prod / x_safe, zero));
  return {mul(others, keep_reduced(a.grads[0], a))};
}

std::vector<Tensor> vjp_var(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  if (!differentiable(x)) return {Tensor()};
  Tensor centered = x - mean(x, as_int64(vjp_axes(a)), true);
  return {mul(centered * 2.0, keep_reduced(a.grads[0], a) / group_divisor(a, a.ctx.i("ddof")))};
}

std::vector<Tensor> vjp_std(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  if (!differentiable(x)) return {Tensor()};
  Tensor centered = x - mean(x, as_int64(vjp_axes(a)), true);
  Tensor scale = mul(group_divisor(a, a.ctx.i("ddof")), keep_reduced(a.outputs[0], a));
  return {mul(centered, keep_reduced(a.grads[0], a) / scale)};
}

std::vector<Tensor> vjp_logsumexp(const VjpArgs& a) {
  const Tensor& x = a.inputs[0];
  if (!differentiable(x)) return {Tensor()};
  return {mul(exp(x - keep_reduced(a.outputs[0], a)), keep_reduced(a.grads[0], a))};
}

// ---- the axes/keepdims family
using Fold = double (*)(const std::vector<double>&, const OpContext&);

struct ReduceDef {
  const char* name;
  DType (*result)(DType);
  Fold fold;
  VjpFn vjp;
  bool needs_values;  // no identity: reducing zero elements is an error
  bool has_ddof;
  const char* onnx;
  bool has_dtype = false;  // attribute `dtype`: the result type asked for (sum)
};

DType widen_integral(DType t) { return is_floating(t) ? t : DType::Int64; }  // numpy's sum/prod
DType same_type(DType t) { return t; }

std::vector<ReduceDef> reduce_defs() {
  using V = const std::vector<double>&;
  using C = const OpContext&;
  return {
      {"sum", widen_integral, [](V v, C) { return fold_sum(v); }, vjp_sum, false, false,
       "ReduceSum", true},
      {"mean", float_result, [](V v, C) { return fold_mean(v); }, vjp_mean, false, false,
       "ReduceMean"},
      {"prod", widen_integral, [](V v, C) { return fold_prod(v); }, vjp_prod, false, false,
       "ReduceProd"},
      {"max", same_type, [](V v, C) { return fold_max(v); }, vjp_extremum, true, false,
       "ReduceMax"},
      {"min", same_type, [](V v, C) { return fold_min(v); }, vjp_extremum, true, false,
       "ReduceMin"},
      {"var", float_result, [](V v, C c) { return fold_var(v, c.i("ddof")); }, vjp_var, false,
       true, ""},
      {"std", float_result, [](V v, C c) { return std::sqrt(fold_var(v, c.i("ddof"))); }, vjp_std,
       false, true, ""},
      {"logsumexp", float_result, [](V v, C) { return fold_logsumexp(v); }, vjp_logsumexp, false,
       false, "ReduceLogSumExp"},
  };
}

// The result type `dtype` names for input type `in`: a float type at least as wide
// as the float input (bfloat16/float16 -> float32, float32 -> float64, or the same),
// so no value is rounded to a narrower type than the input's.
DType requested_result(const OpContext& c, DType in) {
  const std::string& name = c.s("dtype");
  DType out;
  try {
    out = dtype_from_name(name);
  } catch (const TypeError& e) {
    throw TypeError(c.where() + "dtype: " + e.what());
  }
  DS_CHECK(is_floating(in) && is_floating(out) &&
               (out == in || dtype_size(out) > dtype_size(in)),
           TypeError, c.where(), "cannot sum ", dtype_name(in), " values into ", dtype_name(out),
           ": dtype must be a float type at least as wide as a float input (bfloat16/float16 -> "
           "float32/float64, float32 -> float64)");
  return out;
}

Cost reduction_cost(const OpContext& c, double flops_per_element) {
  const auto& in = c.inputs[0];
  const double n = static_cast<double>(std::max<int64_t>(numel(in.shape), 0));
  return {n * flops_per_element, n * static_cast<double>(dtype_size(in.dtype))};
}

void register_reduction(const ReduceDef& d) {
  std::vector<AttrSpec> attrs = {{"axes", AttrKind::Ints, std::vector<int64_t>{}},
                                 {"keepdims", AttrKind::Bool, false}};
  if (d.has_ddof) attrs.push_back({"ddof", AttrKind::Int, int64_t{0}});
  if (d.has_dtype) attrs.push_back({"dtype", AttrKind::String, std::string()});
  const auto result = d.result;
  const bool needs_values = d.needs_values;
  const Fold fold = d.fold;
  const std::string name = d.name;
  register_op({
      .name = name,
      .traits = kReduction | kFusible,
      .num_inputs = 1,
      .attrs = attrs,
      .infer =
          [result, needs_values, name](const OpContext& c) {
            const auto& in = c.inputs[0];
            const auto axes = reduce_axes(c.ints("axes"), static_cast<int>(in.shape.size()),
                                          c.where());
            DS_CHECK(!needs_values || static_group_size(in.shape, axes) != 0, ValueError,
                     c.where(), "zero-size reduction: ", name, " of no elements has no value (input ",
                     shape_str(in.shape), ")");
            if (c.has("ddof"))
              DS_CHECK(c.i("ddof") >= 0, ValueError, c.where(), "ddof must be >= 0, got ",
                       c.i("ddof"));
            const DType out = c.has("dtype") && !c.s("dtype").empty()
                                  ? requested_result(c, in.dtype)
                                  : result(in.dtype);
            return one(out, reduced_shape(in.shape, axes, c.b("keepdims")));
          },
      .cost = [](const OpContext& c) { return reduction_cost(c, 1); },
      .reference =
          [fold](const KernelCall& k) {
            const auto axes = reduce_axes(k.ctx.ints("axes"), k.inputs[0].ndim(), k.ctx.where());
            const auto x = to_f64(k.inputs[0]);
            std::vector<double> r(static_cast<size_t>(k.outputs[0].numel()));
            for_each_group(x, k.inputs[0].shape(), axes,
                           [&](int64_t o, const std::vector<double>& v) { r[o] = fold(v, k.ctx); });
            from_f64(r, k.outputs[0]);
          },
      .vjp = d.vjp,
      .onnx = d.onnx,
  });
}

// ---- argmax/argmin: the first index of the extremum along one axis (the first NaN
// if there is one, like numpy).
void register_arg_extremum(const std::string& name, bool is_max) {
  register_op({
      .name = name,
      .traits = kReduction,
      .num_inputs = 1,
      .attrs = {{"axis", AttrKind::Int, std::nullopt}, {"keepdims", AttrKind::Bool, false}},
      .infer =
          [name](const OpContext& c) {
            const auto& in = c.inputs[0];
            const int rank = static_cast<int>(in.shape.size());
            const auto axis = reduce_axes({c.i("axis")}, rank, c.where());
            DS_CHECK(axis.empty() || in.shape[axis[0]] != 0, ValueError, c.where(), name,
                     " of an empty sequence: axis ", c.i("axis"), " of ", shape_str(in.shape),
                     " has extent 0");
            return one(DType::Int64, reduced_shape(in.shape, axis, c.b("keepdims")));
          },
      .cost = [](const OpContext& c) { return reduction_cost(c, 1); },
      .reference =
          [is_max](const KernelCall& k) {
            const auto axis = reduce_axes({k.ctx.i("axis")}, k.inputs[0].ndim(), k.ctx.where());
            const auto x = to_f64(k.inputs[0]);
            std::vector<double> r(static_cast<size_t>(k.outputs[0].numel()));
            for_each_group(x, k.inputs[0].shape(), axis,
                           [&](int64_t o, const std::vector<double>& v) {
                             size_t best = 0;
                             for (size_t i = 0; i < v.size() && !std::isnan(v[best]); ++i)
                               if (std::isnan(v[i]) || (is_max ? v[i] > v[best] : v[i] < v[best]))
                                 best = i;
                             r[o] = static_cast<double>(best);
                           });
            from_f64(r, k.outputs[0]);
          },
      .onnx = is_max ? "ArgMax" : "ArgMin",
  });
}

// ---- softmax/log_softmax along one axis: exp(x - max) / sum(exp(x - max)).
void register_softmax(const std::string& name, bool log_form) {
  register_op({
      .name = name,
      .traits = kReduction | kFusible,
      .num_inputs = 1,
      .attrs = {{"axis", AttrKind::Int, int64_t{-1}}},
      .infer =
          [](const OpContext& c) {
            const auto& in = c.inputs[0];
            normalize_axis(c.i("axis"), static_cast<int>(in.shape.size()), c.where());
            return one(float_result(in.dtype), in.shape);
          },
      .cost = [](const OpContext& c) { return reduction_cost(c, 4); },
      .reference =
          [log_form](const KernelCall& k) {
            const Shape& shape = k.inputs[0].shape();
            const int axis = normalize_axis(k.ctx.i("axis"), k.inputs[0].ndim(), k.ctx.where());
            int64_t outer = 1, inner = 1;
            for (int d = 0; d < axis; ++d) outer *= shape[d];
            for (int d = axis + 1; d < k.inputs[0].ndim(); ++d) inner *= shape[d];
            const int64_t n = shape[axis];
            auto x = to_f64(k.inputs[0]);
            std::vector<double> lane(static_cast<size_t>(n));
            for (int64_t o = 0; o < outer; ++o)
              for (int64_t i = 0; i < inner; ++i) {
                const int64_t base = o * n * inner + i;
                for (int64_t j = 0; j < n; ++j) lane[j] = x[base + j * inner];
                const double m = fold_max(lane);
                double s = 0;
                for (double v : lane) s += std::exp(v - m);
                for (int64_t j = 0; j < n; ++j) {
                  double& v = x[base + j * inner];
                  v = log_form ? v - m - std::log(s) : std::exp(v - m) / s;
                }
              }
            from_f64(x, k.outputs[0]);
          },
      .vjp =
          [log_form](const VjpArgs& a) -> std::vector<Tensor> {
            if (!differentiable(a.inputs[0])) return {Tensor()};
            const Tensor &g = a.grads[0], &y = a.outputs[0];
            const Axes axis = {a.ctx.i("axis")};
            if (log_form) return {g - mul(exp(y), sum(g, axis, true))};
            return {mul(y, g - sum(mul(g, y), axis, true))};
          },
      .onnx = log_form ? "LogSoftmax" : "Softmax",
  });
}

const OpRegistrar reg([] {
  for (const auto& d : reduce_defs()) register_reduction(d);
  register_arg_extremum("argmax", true);
  register_arg_extremum("argmin", false);
  register_softmax("softmax", false);
  register_softmax("log_softmax", true);
});

}  // namespace
}  // namespace ops

namespace {
AttrMap reduce_attrs(const Axes& axes, bool keepdims) {
  return {{"axes", axes}, {"keepdims", keepdims}};
}
}  // namespace

Tensor sum(const Tensor& x, const Axes& axes, bool keepdims) {
  return apply1("sum", {x}, reduce_attrs(axes, keepdims));
}
Tensor mean(const Tensor& x, const Axes& axes, bool keepdims) {
  return apply1("mean", {x}, reduce_attrs(axes, keepdims));
}
Tensor max(const Tensor& x, const Axes& axes, bool keepdims) {
  return apply1("max", {x}, reduce_attrs(axes, keepdims));
}
Tensor min(const Tensor& x, const Axes& axes, bool keepdims) {
  return apply1("min", {x}, reduce_attrs(axes, keepdims));
}
Tensor prod(const Tensor& x, const Axes& axes, bool keepdims) {
  return apply1("prod", {x}, reduce_attrs(axes, keepdims));
}
Tensor var(const Tensor& x, const Axes& axes, bool keepdims, int64_t ddof) {
  AttrMap attrs = reduce_attrs(axes, keepdims);
  attrs["ddof"] = ddof;
  return apply1("var", {x}, attrs);
}
Tensor std(const Tensor& x, const Axes& axes, bool keepdims, int64_t ddof) {
  AttrMap attrs = reduce_attrs(axes, keepdims);
  attrs["ddof"] = ddof;
  return apply1("std", {x}, attrs);
}
Tensor logsumexp(const Tensor& x, const Axes& axes, bool keepdims) {
  return apply1("logsumexp", {x}, reduce_attrs(axes, keepdims));
}
Tensor argmax(const Tensor& x, int64_t axis, bool keepdims) {
  return apply1("argmax", {x}, {{"axis", axis}, {"keepdims", keepdims}});
}
Tensor argmin(const Tensor& x, int64_t axis, bool keepdims) {
  return apply1("argmin", {x}, {{"axis", axis}, {"keepdims", keepdims}});
}
Tensor softmax(const Tensor& x, int64_t axis) { return apply1("softmax", {x}, {{"axis", axis}}); }
Tensor log_softmax(const Tensor& x, int64_t axis) {
  return apply1("log_softmax", {x}, {{"axis", axis}});
}

}  // namespace ds
