// CPU kernels of batch_norm_train and batch_norm_train_backward over a contiguous
// x [N, C, ...]: channels run in parallel; each channel is N contiguous runs
// ("planes") of H*W values. Within a plane the sums go to independent lanes of
// the accumulator type (float32 for float32/float16/bfloat16 data, so the loops
// vectorize; float64 for float64), and planes add up in float64, so a channel of
// millions of values keeps float32-rounding accuracy.
#include <cmath>
#include <limits>

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

// Two-pass statistics (mean, then the centred sum of squares), then one
// normalize pass with the per-channel affine map folded into scale and shift.
template <typename T> void forward(const KernelCall& k) {
  using A = Acc<T>;
  const Geometry g = geometry_of(k.inputs[0]);
  const T* x = k.inputs[0].data<T>();
  const A* w = k.inputs.size() > 1 ? k.inputs[1].data<A>() : nullptr;
  const A* b = k.inputs.size() > 2 ? k.inputs[2].data<A>() : nullptr;
  T* y = k.outputs[0].data<T>();
  A* mean_out = k.outputs[1].data<A>();
  A* var_out = k.outputs[2].data<A>();
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
      // The centred sum is of x - mu with mu rounded: correct it by the rounding.
      const double shift = mean - static_cast<double>(mu);
      const double var = std::max(ss / m - shift * shift, 0.0);
      mean_out[c] = static_cast<A>(mean);
      var_out[c] = static_cast<A>(m > 0 ? var : std::numeric_limits<double>::quiet_NaN());
      const double inv = 1.0 / std::sqrt(var + eps);
      const A scale = static_cast<A>((w ? static_cast<double>(w[c]) : 1.0) * inv);
      // (x - mu) * scale + offset, not x * scale + offset': no cancellation when
      // the mean is large against the spread.
      const A offset =
          static_cast<A>((b ? static_cast<double>(b[c]) : 0.0) - shift * static_cast<double>(scale));
      for (int64_t b0 = 0; b0 < g.n; ++b0) {
        const T* xp = x + g.plane(b0, c);
        T* yp = y + g.plane(b0, c);
        for (int64_t i = 0; i < g.inner; ++i)
          yp[i] = static_cast<T>((load(xp[i]) - mu) * scale + offset);
      }
    }
  });
}

// One pass for sum(dy) and sum(dy * (x - mean)), one pass for dx.
template <typename T> void backward(const KernelCall& k) {
  using A = Acc<T>;
  const Geometry g = geometry_of(k.inputs[1]);
  const T* dy = k.inputs[0].data<T>();
  const T* x = k.inputs[1].data<T>();
  const A* mean = k.inputs[2].data<A>();
  const A* var = k.inputs[3].data<A>();
  const A* w = k.inputs.size() > 4 ? k.inputs[4].data<A>() : nullptr;
  T* dx = k.outputs[0].data<T>();
  A* dw = k.outputs[1].data<A>();
  A* db = k.outputs[2].data<A>();
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
      const double invstd = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
      db[c] = static_cast<A>(sdy);
      dw[c] = static_cast<A>(sdyxc * invstd);
      // dx = scale * (dy - sdy/M - (x - mean) * invstd^2 * sdyxc/M)
      const double scale = (w ? static_cast<double>(w[c]) : 1.0) * invstd;
      const A a_dy = static_cast<A>(scale);
      const A a_xc = static_cast<A>(-scale * invstd * invstd * sdyxc / m);
      const A a_0 = static_cast<A>(-scale * sdy / m);
      for (int64_t b0 = 0; b0 < g.n; ++b0) {
        const T* dyp = dy + g.plane(b0, c);
        const T* xp = x + g.plane(b0, c);
        T* dxp = dx + g.plane(b0, c);
        for (int64_t i = 0; i < g.inner; ++i)
          dxp[i] = static_cast<T>(a_dy * load(dyp[i]) + a_xc * (load(xp[i]) - mu) + a_0);
      }
    }
  });
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
