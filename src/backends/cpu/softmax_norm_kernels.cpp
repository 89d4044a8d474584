// Fast CPU kernels for row-wise ops on contiguous rows, float32 and float64:
// softmax/log_softmax, var/std/logsumexp and argmax/argmin over the last axis,
// layer_norm/rms_norm over trailing dims, batch_norm (inference) and group_norm
// over [N, C, ...].
// Rows run in parallel; row statistics accumulate in double with independent
// lanes (vectorized), so results stay within a few ulps of the float64 reference.
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "backends/cpu/vec_exp.h"
#include "backends/cpu/vec_lanes.h"
#include "core/thread_pool.h"
#include "ds/op.h"

namespace ds {
namespace {

constexpr int kLanes = 16;

template <typename T> double row_sum(const T* x, int64_t n) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += static_cast<double>(x[i + j]);
  double s = 0;
  for (double l : lanes) s += l;
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  return s;
}

// sum((x - c)^2): the second pass of a two-pass variance (c = mean), or sum(x^2).
template <typename T> double row_sum_sq(const T* x, int64_t n, double c) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double d = static_cast<double>(x[i + j]) - c;
      lanes[j] += d * d;
    }
  double s = 0;
  for (double l : lanes) s += l;
  for (; i < n; ++i) s += (static_cast<double>(x[i]) - c) * (static_cast<double>(x[i]) - c);
  return s;
}

// The row maximum; NaN if the row has one (then the whole softmax row is NaN, as in
// the reference).
template <typename T> T row_max(const T* x, int64_t n) {
  constexpr int kWidth = cpu::kLanesOf<T>, kUnroll = 4, kStep = kWidth * kUnroll;
  auto pick = [](auto a, auto v) { return ((v > a) | (v != v)) ? v : a; };
  const T lowest = -std::numeric_limits<T>::infinity();
  cpu::Vec<T> lanes[kUnroll];
  for (auto& l : lanes) l = cpu::splat(lowest);
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep)
    for (int u = 0; u < kUnroll; ++u) lanes[u] = pick(lanes[u], cpu::load_lanes<T>(x + i + u * kWidth));
  T m = lowest;
  for (const auto& l : lanes)
    for (int j = 0; j < kWidth; ++j) m = pick(m, static_cast<T>(l[j]));
  for (; i < n; ++i) m = pick(m, x[i]);
  return m;
}

using cpu::exp_nonpositive;
using cpu::f32x8;

inline f32x8 splat(float v) { return f32x8{v, v, v, v, v, v, v, v}; }

// y = exp(x - max) and returns sum(y), accumulated in double.
double exp_shifted(const float* x, float* y, int64_t n, float m) {
  int64_t i = 0;
  f32x8 v;
  for (; i + 8 <= n; i += 8) {
    std::memcpy(&v, x + i, sizeof v);
    v = exp_nonpositive(v - m);
    std::memcpy(y + i, &v, sizeof v);
  }
  if (i < n) {  // the tail, padded
    v = splat(m);
    std::memcpy(&v, x + i, sizeof(float) * static_cast<size_t>(n - i));
    v = exp_nonpositive(v - m);
    std::memcpy(y + i, &v, sizeof(float) * static_cast<size_t>(n - i));
  }
  return row_sum(y, n);
}
double exp_shifted(const double* x, double* y, int64_t n, double m) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - m);
  return row_sum(y, n);
}

template <typename T> void softmax_rows(const KernelCall& k, bool log_form) {
  const Tensor& in = k.inputs[0];
  const int64_t n = in.ndim() ? in.shape().back() : 1;
  const int64_t rows = n ? in.numel() / n : 0;
  const T* x = in.data<T>();
  T* y = k.outputs[0].data<T>();
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * n;
      T* yr = y + r * n;
      const T m = row_max(xr, n);
      const double s = exp_shifted(xr, yr, n, m);
      if (log_form) {
        // One rounding: x - shift in float would lose x's low bits to the shift's ulp.
        const double shift = static_cast<double>(m) + std::log(s);
        for (int64_t i = 0; i < n; ++i) yr[i] = static_cast<T>(static_cast<double>(xr[i]) - shift);
      } else {
        const T inv = static_cast<T>(1.0 / s);
        for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
      }
    }
  });
}

// layer_norm (centered) or rms_norm over rows of `len` = numel(normalized_shape).
template <typename T> void norm_rows(const KernelCall& k, bool centered) {
  const Tensor& in = k.inputs[0];
  int64_t len = 1;
  for (int64_t e : k.ctx.ints("normalized_shape")) len *= e;
  const int64_t rows = len ? in.numel() / len : 0;
  const double eps = k.ctx.f("eps");
  const T* x = in.data<T>();
  const T* w = k.inputs.size() > 1 ? k.inputs[1].data<T>() : nullptr;
  const T* b = k.inputs.size() > 2 ? k.inputs[2].data<T>() : nullptr;
  T* y = k.outputs[0].data<T>();
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(len, 1)), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* xr = x + r * len;
      T* yr = y + r * len;
      const double mu = centered ? row_sum(xr, len) / static_cast<double>(len) : 0.0;
      const double rstd = 1.0 / std::sqrt(row_sum_sq(xr, len, mu) / static_cast<double>(len) + eps);
      // In double with one final rounding: a float mean would cost |mean| * 2^-24.
      auto xhat = [&](int64_t i) { return (static_cast<double>(xr[i]) - mu) * rstd; };
      if (w && b)
        for (int64_t i = 0; i < len; ++i) yr[i] = static_cast<T>(xhat(i) * w[i] + b[i]);
      else if (w)
        for (int64_t i = 0; i < len; ++i) yr[i] = static_cast<T>(xhat(i) * w[i]);
      else
        for (int64_t i = 0; i < len; ++i) yr[i] = static_cast<T>(xhat(i));
    }
  });
}

// batch_norm (inference) over [N, C, ...]: each (n, c) plane is a contiguous run of
// `spatial` values with one affine map, computed in double and rounded once.
template <typename T> void batch_norm_planes(const KernelCall& k) {
  const Tensor& in = k.inputs[0];
  const int64_t n = in.shape()[0], ch = in.shape()[1];
  const int64_t planes = n * ch, spatial = planes ? in.numel() / planes : 0;
  const T *x = in.data<T>(), *mean = k.inputs[1].data<T>(), *var = k.inputs[2].data<T>();
  const T* w = k.inputs.size() > 3 ? k.inputs[3].data<T>() : nullptr;
  const T* b = k.inputs.size() > 4 ? k.inputs[4].data<T>() : nullptr;
  const double eps = k.ctx.f("eps");
  T* y = k.outputs[0].data<T>();
  parallel_for(planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(spatial, 1)), [&](int64_t pb, int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) {
      const int64_t c = p % ch;
      const double mu = static_cast<double>(mean[c]);
      const double scale = (w ? static_cast<double>(w[c]) : 1.0) / std::sqrt(static_cast<double>(var[c]) + eps);
      const double shift = b ? static_cast<double>(b[c]) : 0.0;
      const T* xp = x + p * spatial;
      T* yp = y + p * spatial;
      for (int64_t i = 0; i < spatial; ++i)
        yp[i] = static_cast<T>((static_cast<double>(xp[i]) - mu) * scale + shift);
    }
  });
}

// group_norm over [N, C, ...]: each (n, group) is a contiguous row of C/G planes.
template <typename T> void group_norm_rows(const KernelCall& k) {
  const Tensor& in = k.inputs[0];
  const int64_t n = in.shape()[0], ch = in.shape()[1], groups = k.ctx.i("num_groups");
  const int64_t spatial = n * ch > 0 ? in.numel() / (n * ch) : 0;
  const int64_t per_group = ch / groups, len = per_group * spatial;
  const double eps = k.ctx.f("eps");
  const T* x = in.data<T>();
  const T* w = k.inputs.size() > 1 ? k.inputs[1].data<T>() : nullptr;
  const T* b = k.inputs.size() > 2 ? k.inputs[2].data<T>() : nullptr;
  T* y = k.outputs[0].data<T>();
  parallel_for(n * groups, std::max<int64_t>(1, 16384 / std::max<int64_t>(len, 1)), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* xr = x + r * len;
      T* yr = y + r * len;
      const double mu = row_sum(xr, len) / static_cast<double>(len);
      const double rstd = 1.0 / std::sqrt(row_sum_sq(xr, len, mu) / static_cast<double>(len) + eps);
      for (int64_t j = 0; j < per_group; ++j) {
        const int64_t c = r % groups * per_group + j;
        const double scale = rstd * (w ? static_cast<double>(w[c]) : 1.0);
        const double shift = b ? static_cast<double>(b[c]) : 0.0;
        const T* xp = xr + j * spatial;
        T* yp = yr + j * spatial;
        for (int64_t i = 0; i < spatial; ++i)
          yp[i] = static_cast<T>((static_cast<double>(xp[i]) - mu) * scale + shift);
      }
    }
  });
}

// Row reductions over the last axis: var/std (two-pass, double), logsumexp (the
// softmax's max and shifted exp sum) and argmax/argmin (first extremum, first NaN).
enum class RowStat { Var, Std, LogSumExp };

template <typename T> void row_stats(const KernelCall& k, RowStat stat) {
  const Tensor& in = k.inputs[0];
  const int64_t n = in.ndim() ? in.shape().back() : 1;
  const int64_t rows = k.outputs[0].numel();
  const int64_t ddof = stat == RowStat::LogSumExp ? 0 : k.ctx.i("ddof");
  const T* x = in.data<T>();
  T* y = k.outputs[0].data<T>();
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
    std::vector<T> scratch(stat == RowStat::LogSumExp ? static_cast<size_t>(n) : 0);
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * n;
      if (stat == RowStat::LogSumExp) {
        const T m = row_max(xr, n);
        const bool finite = std::isfinite(static_cast<double>(m));
        y[r] = finite ? static_cast<T>(m + std::log(exp_shifted(xr, scratch.data(), n, m))) : m;
        continue;
      }
      const double mu = row_sum(xr, n) / static_cast<double>(n);
      const double v = row_sum_sq(xr, n, mu) / static_cast<double>(std::max<int64_t>(n - ddof, 0));
      y[r] = static_cast<T>(stat == RowStat::Std ? std::sqrt(v) : v);
    }
  });
}

template <typename T> void row_arg_extremum(const KernelCall& k, bool is_max) {
  const Tensor& in = k.inputs[0];
  const int64_t n = in.ndim() ? in.shape().back() : 1;
  const int64_t rows = k.outputs[0].numel();
  const T* x = in.data<T>();
  int64_t* y = k.outputs[0].data<int64_t>();
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * n;
      int64_t best = 0;
      for (int64_t i = 1; i < n && !std::isnan(xr[best]); ++i)
        if (std::isnan(xr[i]) || (is_max ? xr[i] > xr[best] : xr[i] < xr[best])) best = i;
      y[r] = best;
    }
  });
}

// All inputs of one float type (float32 or float64).
bool same_float_inputs(const OpContext& c) {
  const DType t = c.inputs[0].dtype;
  if (t != DType::Float32 && t != DType::Float64) return false;
  for (const auto& i : c.inputs)
    if (i.dtype != t) return false;
  return true;
}

bool last_axis(const OpContext& c) {
  const int rank = static_cast<int>(c.inputs[0].shape.size());
  const int64_t a = c.i("axis");
  return same_float_inputs(c) && (rank == 0 || a == -1 || a == rank - 1);
}

// A reduction over exactly the last axis (so rows are contiguous), float input.
bool reduces_last_axis(const OpContext& c) {
  const int rank = static_cast<int>(c.inputs[0].shape.size());
  const auto& axes = c.ints("axes");
  const bool last = axes.size() == 1 ? (axes[0] == -1 || axes[0] == rank - 1)
                                     : axes.empty() && rank == 1;
  return rank > 0 && last && same_float_inputs(c);
}

bool arg_over_last_axis(const OpContext& c) {
  const int rank = static_cast<int>(c.inputs[0].shape.size());
  return rank > 0 && (c.i("axis") == -1 || c.i("axis") == rank - 1) && same_float_inputs(c);
}

template <typename Fn> KernelFn by_type(Fn fn) {
  return [fn](const KernelCall& k) {
    if (k.inputs[0].dtype() == DType::Float32)
      fn(k, float{});
    else
      fn(k, double{});
  };
}

const OpRegistrar reg([] {
  register_kernel("softmax", DeviceKind::CPU,
                  {by_type([](const KernelCall& k, auto t) { softmax_rows<decltype(t)>(k, false); }),
                   last_axis, "vectorized", 10});
  register_kernel("log_softmax", DeviceKind::CPU,
                  {by_type([](const KernelCall& k, auto t) { softmax_rows<decltype(t)>(k, true); }),
                   last_axis, "vectorized", 10});
  register_kernel("layer_norm", DeviceKind::CPU,
                  {by_type([](const KernelCall& k, auto t) { norm_rows<decltype(t)>(k, true); }),
                   same_float_inputs, "vectorized", 10});
  register_kernel("rms_norm", DeviceKind::CPU,
                  {by_type([](const KernelCall& k, auto t) { norm_rows<decltype(t)>(k, false); }),
                   same_float_inputs, "vectorized", 10});
  register_kernel("batch_norm", DeviceKind::CPU,
                  {by_type([](const KernelCall& k, auto t) { batch_norm_planes<decltype(t)>(k); }),
                   same_float_inputs, "vectorized", 10});
  const std::pair<const char*, RowStat> stats[] = {
      {"var", RowStat::Var}, {"std", RowStat::Std}, {"logsumexp", RowStat::LogSumExp}};
  for (const auto& [name, stat] : stats)
    register_kernel(name, DeviceKind::CPU,
                    {by_type([stat](const KernelCall& k, auto t) { row_stats<decltype(t)>(k, stat); }),
                     reduces_last_axis, "vectorized", 10});
  for (const bool is_max : {true, false})
    register_kernel(is_max ? "argmax" : "argmin", DeviceKind::CPU,
                    {by_type([is_max](const KernelCall& k, auto t) {
                       row_arg_extremum<decltype(t)>(k, is_max);
                     }),
                     arg_over_last_axis, "vectorized", 10});
  register_kernel("group_norm", DeviceKind::CPU,
                  {by_type([](const KernelCall& k, auto t) { group_norm_rows<decltype(t)>(k); }),
                   same_float_inputs, "vectorized", 10});
});

}  // namespace
}  // namespace ds
