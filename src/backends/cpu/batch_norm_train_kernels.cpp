// CPU kernels of batch_norm_train and batch_norm_train_backward over a contiguous
// x [N, C, ...]. With a spatial extent, channels run in parallel and each channel
// is N contiguous runs ("planes") of H*W values, summed in independent lanes;
// without one ([rows, C], channels-last), blocks of channels run in parallel
// over the rows, the inner loop along the contiguous channels. Sums accumulate
// in the accumulator type (float32 for float32/float16/bfloat16 data, so the
// loops vectorize; float64 for float64) over a plane or a block of rows, and
// those partial sums add up in float64, so a channel of millions of values keeps
// float32-rounding accuracy.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/thread_pool.h"
#include "ds/op.h"

namespace ds {
namespace {

constexpr int kLanes = 16;

template <typename T> using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T> Acc<T> load(T v) { return static_cast<Acc<T>>(v); }

struct Geometry {
  int64_t n, ch, inner;
  int64_t plane(int64_t b, int64_t c) const { return (b * ch + c) * inner; }
};
Geometry geometry_of(const Tensor& x) {
  const int64_t n = x.shape()[0], ch = x.shape()[1];
  return {n, ch, n * ch > 0 ? x.numel() / (n * ch) : 0};
}

// Channels per task: enough values that a task outweighs its scheduling.
int64_t channel_grain(const Geometry& g) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(g.n * g.inner, 1));
}

// sum(f(i)) over one plane, f returning the accumulator type, in kLanes lanes.
template <typename A, typename F> double lane_sum(int64_t len, F f) {
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += f(i + j);
  double s = 0;
  for (A l : lanes) s += static_cast<double>(l);
  for (; i < len; ++i) s += static_cast<double>(f(i));
  return s;
}

// A channel's normalize map from its statistics: y = (x - mu) * scale + offset,
// mu the mean rounded to A. (x - mu) * scale, not x * scale + offset': no
// cancellation when the mean is large against the spread.
template <typename A> struct NormalizeMap {
  double var;
  A scale, offset;
};
// `centred` is sum((x - mu)^2) over the channel's m values.
template <typename A>
NormalizeMap<A> normalize_map(double mean, A mu, double centred, double m, double eps, double w,
                              double b) {
  // The centred sum is about mu, not the mean: correct it by the rounding.
  const double shift = mean - static_cast<double>(mu);
  const double var = m > 0 ? std::max(centred / m - shift * shift, 0.0)
                           : std::numeric_limits<double>::quiet_NaN();
  const A scale = static_cast<A>(w / std::sqrt(var + eps));
  return {var, scale, static_cast<A>(b - shift * static_cast<double>(scale))};
}

// dx = a_dy * dy + a_xc * (x - mean) + a_0 from sdy = sum(dy), sdyxc = sum(dy * (x - mean)):
//   dx = w * invstd * (dy - sdy / M - (x - mean) * invstd^2 * sdyxc / M)
template <typename A> struct GradMap {
  A dw, db, a_dy, a_xc, a_0;
};
template <typename A>
GradMap<A> grad_map(double sdy, double sdyxc, double var, double m, double eps, double w) {
  const double invstd = 1.0 / std::sqrt(var + eps), scale = w * invstd;
  return {static_cast<A>(sdyxc * invstd), static_cast<A>(sdy),
          static_cast<A>(scale), static_cast<A>(-scale * invstd * invstd * sdyxc / m),
          static_cast<A>(-scale * sdy / m)};
}

// The operands of both layouts' kernels: x [, weight [, bias]] -> y, mean, var;
// dy, x, mean, var [, weight] -> dx, dweight, dbias (statistics and parameters in A).
template <typename T> struct ForwardOperands {
  const T* x;
  const Acc<T> *w, *b;
  T* y;
  Acc<T> *mean, *var;
  const T* residual;  // the epilogue's (or null)
  bool relu;
};
template <typename T> ForwardOperands<T> forward_operands(const KernelCall& k) {
  using A = Acc<T>;
  return {k.inputs[0].data<T>(), k.inputs.size() > 1 ? k.inputs[1].data<A>() : nullptr,
          k.inputs.size() > 2 ? k.inputs[2].data<A>() : nullptr, k.outputs[0].data<T>(),
          k.outputs[1].data<A>(), k.outputs[2].data<A>(),
          k.inputs.size() > 3 ? k.inputs[3].data<T>() : nullptr, k.ctx.b("relu")};
}

// The epilogue in place over y[begin, end): y + residual (y already rounded to T,
// as a separate add reads it), then relu (NaN stays NaN, like the relu op).
template <typename T> void epilogue(const ForwardOperands<T>& o, int64_t begin, int64_t end) {
  if (o.residual)
    for (int64_t j = begin; j < end; ++j) o.y[j] = static_cast<T>(load(o.y[j]) + load(o.residual[j]));
  if (o.relu)
    for (int64_t j = begin; j < end; ++j)
      if (load(o.y[j]) <= Acc<T>(0)) o.y[j] = T(0);
}
template <typename T> struct BackwardOperands {
  const T *dy, *x;
  const Acc<T> *mean, *var, *w;
  T* dx;
  Acc<T> *dw, *db;
};
template <typename T> BackwardOperands<T> backward_operands(const KernelCall& k) {
  using A = Acc<T>;
  return {k.inputs[0].data<T>(), k.inputs[1].data<T>(), k.inputs[2].data<A>(),
          k.inputs[3].data<A>(), k.inputs.size() > 4 ? k.inputs[4].data<A>() : nullptr,
          k.outputs[0].data<T>(), k.outputs[1].data<A>(), k.outputs[2].data<A>()};
}

// ---- [N, C, H*W]: per channel, N contiguous planes of H*W values.
// Two-pass statistics (mean, then the centred sum of squares), then one
// normalize pass.
template <typename T> void forward_planes(const KernelCall& k) {
  using A = Acc<T>;
  const Geometry g = geometry_of(k.inputs[0]);
  const ForwardOperands<T> o = forward_operands<T>(k);
  const auto [x, w, b, y, mean_out, var_out, residual, relu] = o;
  const double eps = k.ctx.f("eps"), m = static_cast<double>(g.n * g.inner);
  parallel_for(g.ch, channel_grain(g), [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      double s = 0;
      for (int64_t b0 = 0; b0 < g.n; ++b0) {
        const T* xp = x + g.plane(b0, c);
        s += lane_sum<A>(g.inner, [&](int64_t i) { return load(xp[i]); });
      }
      const double mean = s / m;  // NaN for a channel without values, like 0/0
      const A mu = static_cast<A>(mean);
      double ss = 0;
      for (int64_t b0 = 0; b0 < g.n; ++b0) {
        const T* xp = x + g.plane(b0, c);
        ss += lane_sum<A>(g.inner, [&](int64_t i) {
          const A d = load(xp[i]) - mu;
          return d * d;
        });
      }
      const auto map = normalize_map<A>(mean, mu, ss, m, eps, w ? w[c] : 1.0, b ? b[c] : 0.0);
      mean_out[c] = static_cast<A>(mean);
      var_out[c] = static_cast<A>(map.var);
      for (int64_t b0 = 0; b0 < g.n; ++b0) {
        const T* xp = x + g.plane(b0, c);
        T* yp = y + g.plane(b0, c);
        for (int64_t i = 0; i < g.inner; ++i)
          yp[i] = static_cast<T>((load(xp[i]) - mu) * map.scale + map.offset);
        epilogue(o, g.plane(b0, c), g.plane(b0, c) + g.inner);
      }
    }
  });
}

// One pass for sum(dy) and sum(dy * (x - mean)), one pass for dx.
template <typename T> void backward_planes(const KernelCall& k) {
  using A = Acc<T>;
  const Geometry g = geometry_of(k.inputs[1]);
  const auto [dy, x, mean, var, w, dx, dw, db] = backward_operands<T>(k);
  const double eps = k.ctx.f("eps"), m = static_cast<double>(g.n * g.inner);
  parallel_for(g.ch, channel_grain(g), [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const A mu = mean[c];
      double sdy = 0, sdyxc = 0;
      for (int64_t b0 = 0; b0 < g.n; ++b0) {
        const T* dyp = dy + g.plane(b0, c);
        const T* xp = x + g.plane(b0, c);
        sdy += lane_sum<A>(g.inner, [&](int64_t i) { return load(dyp[i]); });
        sdyxc += lane_sum<A>(g.inner, [&](int64_t i) { return load(dyp[i]) * (load(xp[i]) - mu); });
      }
      const auto map = grad_map<A>(sdy, sdyxc, var[c], m, eps, w ? w[c] : 1.0);
      db[c] = map.db;
      dw[c] = map.dw;
      for (int64_t b0 = 0; b0 < g.n; ++b0) {
        const T* dyp = dy + g.plane(b0, c);
        const T* xp = x + g.plane(b0, c);
        T* dxp = dx + g.plane(b0, c);
        for (int64_t i = 0; i < g.inner; ++i)
          dxp[i] = static_cast<T>(map.a_dy * load(dyp[i]) + map.a_xc * (load(xp[i]) - mu) + map.a_0);
      }
    }
  });
}

// ---- [rows, C] (no spatial extent, e.g. channels-last [N*H*W, C, 1, 1]): each
// channel is a column. A task takes a block of channels and walks the rows, its
// inner loop over contiguous channels (vectorized); the float sums of a block
// of rows add up in float64.
constexpr int64_t kRowBlock = 256;
constexpr int64_t kChannelBlock = 64;

template <typename A, typename F>
void column_sums(int64_t rows, int64_t width, F term, std::vector<double>& out) {
  std::vector<A> buffer(static_cast<size_t>(width));
  A* __restrict__ part = buffer.data();  // no alias of the data: the loop vectorizes
  out.assign(static_cast<size_t>(width), 0.0);
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    std::fill(part, part + width, A(0));
    for (int64_t r = r0; r < std::min(rows, r0 + kRowBlock); ++r)
      for (int64_t c = 0; c < width; ++c) part[c] += term(r, c);
    for (int64_t c = 0; c < width; ++c) out[c] += static_cast<double>(part[c]);
  }
}

template <typename T> void forward_columns(const KernelCall& k) {
  using A = Acc<T>;
  const int64_t rows = k.inputs[0].shape()[0], ch = k.inputs[0].shape()[1];
  const ForwardOperands<T> o = forward_operands<T>(k);
  const auto [x, w, b, y, mean_out, var_out, residual, relu] = o;
  const double eps = k.ctx.f("eps"), m = static_cast<double>(rows);
  parallel_for(ch, kChannelBlock, [&](int64_t cb, int64_t ce) {
    const int64_t width = ce - cb;
    const T* xc = x + cb;
    std::vector<double> s, ss;
    column_sums<A>(rows, width, [&](int64_t r, int64_t c) { return load(xc[r * ch + c]); }, s);
    std::vector<A> mu(static_cast<size_t>(width)), scale(mu.size()), offset(mu.size());
    for (int64_t c = 0; c < width; ++c) mu[c] = static_cast<A>(s[c] / m);
    column_sums<A>(rows, width, [&](int64_t r, int64_t c) {
      const A d = load(xc[r * ch + c]) - mu[c];
      return d * d;
    }, ss);
    for (int64_t c = 0; c < width; ++c) {
      const double mean = s[c] / m;
      const auto map = normalize_map<A>(mean, mu[c], ss[c], m, eps, w ? w[cb + c] : 1.0,
                                        b ? b[cb + c] : 0.0);
      mean_out[cb + c] = static_cast<A>(mean);
      var_out[cb + c] = static_cast<A>(map.var);
      scale[c] = map.scale;
      offset[c] = map.offset;
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < width; ++c)
        y[r * ch + cb + c] = static_cast<T>((load(xc[r * ch + c]) - mu[c]) * scale[c] + offset[c]);
      epilogue(o, r * ch + cb, r * ch + ce);
    }
  });
}

template <typename T> void backward_columns(const KernelCall& k) {
  using A = Acc<T>;
  const int64_t rows = k.inputs[1].shape()[0], ch = k.inputs[1].shape()[1];
  const auto [dy, x, mean, var, w, dx, dw, db] = backward_operands<T>(k);
  const double eps = k.ctx.f("eps"), m = static_cast<double>(rows);
  parallel_for(ch, kChannelBlock, [&](int64_t cb, int64_t ce) {
    const int64_t width = ce - cb;
    const T *dyc = dy + cb, *xc = x + cb;
    const A* mu = mean + cb;
    std::vector<double> sdy, sdyxc;
    column_sums<A>(rows, width, [&](int64_t r, int64_t c) { return load(dyc[r * ch + c]); }, sdy);
    column_sums<A>(rows, width, [&](int64_t r, int64_t c) {
      return load(dyc[r * ch + c]) * (load(xc[r * ch + c]) - mu[c]);
    }, sdyxc);
    std::vector<A> a_dy(static_cast<size_t>(width)), a_xc(a_dy.size()), a_0(a_dy.size());
    for (int64_t c = 0; c < width; ++c) {
      const auto map = grad_map<A>(sdy[c], sdyxc[c], var[cb + c], m, eps, w ? w[cb + c] : 1.0);
      db[cb + c] = map.db;
      dw[cb + c] = map.dw;
      a_dy[c] = map.a_dy;
      a_xc[c] = map.a_xc;
      a_0[c] = map.a_0;
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < width; ++c)
        dx[r * ch + cb + c] = static_cast<T>(a_dy[c] * load(dyc[r * ch + c]) +
                                             a_xc[c] * (load(xc[r * ch + c]) - mu[c]) + a_0[c]);
  });
}

// Planes of one value are columns: the column kernels keep the reads contiguous.
template <typename T> void forward(const KernelCall& k) {
  const Geometry g = geometry_of(k.inputs[0]);
  if (g.inner == 1) return forward_columns<T>(k);
  forward_planes<T>(k);
}
template <typename T> void backward(const KernelCall& k) {
  const Geometry g = geometry_of(k.inputs[1]);
  if (g.inner == 1) return backward_columns<T>(k);
  backward_planes<T>(k);
}

template <template <typename> class Fn> void by_dtype(const KernelCall& k, DType t) {
  switch (t) {
    case DType::Float32: return Fn<float>::run(k);
    case DType::Float64: return Fn<double>::run(k);
    case DType::BFloat16: return Fn<BFloat16>::run(k);
    case DType::Float16: return Fn<Half>::run(k);
    default: throw TypeError(detail::cat(k.ctx.where(), "no CPU kernel for ", dtype_name(t)));
  }
}
template <typename T> struct Forward {
  static void run(const KernelCall& k) { forward<T>(k); }
};
template <typename T> struct Backward {
  static void run(const KernelCall& k) { backward<T>(k); }
};

const OpRegistrar reg([] {
  register_kernel("batch_norm_train", DeviceKind::CPU,
                  {[](const KernelCall& k) { by_dtype<Forward>(k, k.inputs[0].dtype()); }, {},
                   "vectorized", 10});
  register_kernel("batch_norm_train_backward", DeviceKind::CPU,
                  {[](const KernelCall& k) { by_dtype<Backward>(k, k.inputs[1].dtype()); }, {},
                   "vectorized", 10});
});

}  // namespace
}  // namespace ds
