// CPU kernels of softmax_cross_entropy and its backward over contiguous logits
// [N, C] (float32/float64, float16/bfloat16 widened to float32 per element): rows
// run in parallel; the forward reads a row for its max and once more for the sum
// of exponentials (8 float32 lanes, accumulated in float64) and the label-smoothing
// sum; the backward reads it once and writes the gradient, computed in float32 and
// rounded once to the logits' type, so a bfloat16 gradient equals the float32 one cast.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cpu/vec_exp.h"

#include "core/thread_pool.h"
#include "ds/op.h"
#include "ir/ops/softmax_cross_entropy.h"

namespace ds {
namespace {

template <typename T> using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T> Acc<T> load(T v) { return static_cast<Acc<T>>(v); }

// Rows per task: enough elements that a task outweighs its scheduling.
int64_t row_grain(int64_t classes) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(classes, 1)); }

// The rows' targets as int64, checked serially before the parallel loops (which
// must not throw): -1 marks an ignored row.
template <typename I> std::vector<int64_t> checked_targets(const KernelCall& k, int64_t classes) {
  const I* t = k.inputs[1].data<I>();
  const int64_t n = k.inputs[1].numel(), ignore = k.ctx.i("ignore_index");
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const auto v = static_cast<int64_t>(t[r]);
    if (v == ignore) {
      out[r] = -1;
      continue;
    }
    if (v < 0 || v >= classes) ops::throw_bad_target(k.ctx, r, v, classes);
    out[r] = v;
  }
  return out;
}

std::vector<int64_t> targets_of(const KernelCall& k, int64_t classes) {
  return k.inputs[1].dtype() == DType::Int32 ? checked_targets<int32_t>(k, classes)
                                             : checked_targets<int64_t>(k, classes);
}

// A row's statistics: its max m (NaN skipped: a NaN reaches the sum), the sum of
// exp(x - m) and the plain sum (for label smoothing), both accumulated in double.
struct RowStats {
  double max, exp_sum, sum;
};

// float32 rows, 8 lanes at a time; the tail is padded with -inf (exp gives 0).
RowStats row_stats(const float* x, int64_t n, bool want_sum) {
  using f64x8 = double __attribute__((vector_size(64)));
  const float ninf = -std::numeric_limits<float>::infinity();
  const auto lanes_of = [&](int64_t i) {
    cpu::f32x8 v = cpu::f32x8{} + ninf;
    std::memcpy(&v, x + i, sizeof(float) * static_cast<size_t>(std::min<int64_t>(8, n - i)));
    return v;
  };
  cpu::f32x8 mv = cpu::f32x8{} + ninf;
  for (int64_t i = 0; i < n; i += 8) {
    const cpu::f32x8 v = lanes_of(i);
    mv = v > mv ? v : mv;
  }
  float m = ninf;
  for (int j = 0; j < 8; ++j) m = std::max(m, mv[j]);
  RowStats st{m, 0, 0};
  f64x8 s{};
  if (std::isfinite(m))
    for (int64_t i = 0; i < n; i += 8)
      s += __builtin_convertvector(cpu::exp_nonpositive(lanes_of(i) - m), f64x8);
  for (int j = 0; j < 8; ++j) st.exp_sum += s[j];
  if (want_sum)
    for (int64_t j = 0; j < n; ++j) st.sum += static_cast<double>(x[j]);
  return st;
}

RowStats row_stats(const double* x, int64_t n, bool want_sum) {
  RowStats st{-std::numeric_limits<double>::infinity(), 0, 0};
  for (int64_t j = 0; j < n; ++j) st.max = std::max(st.max, x[j]);
  for (int64_t j = 0; j < n; ++j) {
    if (std::isfinite(st.max)) st.exp_sum += std::exp(x[j] - st.max);
    if (want_sum) st.sum += x[j];
  }
  return st;
}

// The row in the accumulator type: itself, or widened into `buf`.
template <typename T> const Acc<T>* widened(const T* row, int64_t n, std::vector<Acc<T>>& buf) {
  if constexpr (std::is_same_v<T, Acc<T>>) {
    return row;
  } else {
    buf.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) buf[j] = load(row[j]);
    return buf.data();
  }
}

template <typename T> void forward(const KernelCall& k) {
  using A = Acc<T>;
  const int64_t n = k.inputs[0].shape()[0], classes = k.inputs[0].shape()[1];
  const auto target = targets_of(k, classes);
  const T* x = k.inputs[0].data<T>();
  A* loss = k.outputs[0].data<A>();
  A* lse_out = k.outputs[1].data<A>();
  const double ls = k.ctx.f("label_smoothing");
  parallel_for(n, row_grain(classes), [&](int64_t rb, int64_t re) {
    std::vector<A> buf;
    for (int64_t r = rb; r < re; ++r) {
      const A* row = widened(x + r * classes, classes, buf);
      const RowStats st = row_stats(row, classes, ls > 0);
      // A NaN logit makes the sum NaN; a max of +-inf stays.
      const double lse = std::isfinite(st.max) ? st.max + std::log(st.exp_sum) : st.max;
      lse_out[r] = static_cast<A>(lse);
      if (target[r] < 0) {
        loss[r] = 0;
        continue;
      }
      double l = lse - (1 - ls) * static_cast<double>(row[target[r]]);
      if (ls > 0) l -= ls * st.sum / static_cast<double>(classes);
      loss[r] = static_cast<A>(l);
    }
  });
}

// out[j] = (exp(x[j] - lse) - uniform) * d over a float32 row, 8 lanes at a time.
void scaled_softmax(const float* x, float* out, int64_t n, float lse, float uniform, float d) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    cpu::f32x8 v;
    std::memcpy(&v, x + i, sizeof v);
    v = (cpu::exp_nonpositive(v - lse) - uniform) * d;
    std::memcpy(out + i, &v, sizeof v);
  }
  if (i < n) {
    cpu::f32x8 v = cpu::f32x8{} + lse;
    std::memcpy(&v, x + i, sizeof(float) * static_cast<size_t>(n - i));
    v = (cpu::exp_nonpositive(v - lse) - uniform) * d;
    std::memcpy(out + i, &v, sizeof(float) * static_cast<size_t>(n - i));
  }
}

void scaled_softmax(const double* x, double* out, int64_t n, double lse, double uniform,
                    double d) {
  for (int64_t j = 0; j < n; ++j) out[j] = (std::exp(x[j] - lse) - uniform) * d;
}

template <typename T> void backward(const KernelCall& k) {
  using A = Acc<T>;
  const int64_t n = k.inputs[0].shape()[0], classes = k.inputs[0].shape()[1];
  const auto target = targets_of(k, classes);
  const T* x = k.inputs[0].data<T>();
  const A* lse = k.inputs[2].data<A>();
  const A* dloss = k.inputs[3].data<A>();
  T* dx = k.outputs[0].data<T>();
  const double ls = k.ctx.f("label_smoothing");
  const A uniform = classes > 0 ? static_cast<A>(ls / static_cast<double>(classes)) : A(0);
  const A hit = static_cast<A>(1 - ls);
  parallel_for(n, row_grain(classes), [&](int64_t rb, int64_t re) {
    std::vector<A> buf, grad(std::is_same_v<T, A> ? 0 : static_cast<size_t>(classes));
    for (int64_t r = rb; r < re; ++r) {
      T* out = dx + r * classes;
      if (target[r] < 0) {
        for (int64_t j = 0; j < classes; ++j) out[j] = static_cast<T>(A(0));
        continue;
      }
      const A* row = widened(x + r * classes, classes, buf);
      const A l = lse[r], d = dloss[r];
      // Computed in A, then rounded once to T (the float32 gradient, cast).
      A* g = std::is_same_v<T, A> ? reinterpret_cast<A*>(out) : grad.data();
      scaled_softmax(row, g, classes, l, uniform, d);
      const int64_t t = target[r];
      g[t] = (std::exp(row[t] - l) - hit - uniform) * d;
      if constexpr (!std::is_same_v<T, A>)
        for (int64_t j = 0; j < classes; ++j) out[j] = static_cast<T>(g[j]);
    }
  });
}

template <template <typename> class Fn> void by_dtype(const KernelCall& k) {
  switch (k.inputs[0].dtype()) {
    case DType::Float32: return Fn<float>::run(k);
    case DType::Float64: return Fn<double>::run(k);
    case DType::BFloat16: return Fn<BFloat16>::run(k);
    case DType::Float16: return Fn<Half>::run(k);
    default:
      throw TypeError(detail::cat(k.ctx.where(), "no CPU kernel for ",
                                  dtype_name(k.inputs[0].dtype())));
  }
}
template <typename T> struct Forward {
  static void run(const KernelCall& k) { forward<T>(k); }
};
template <typename T> struct Backward {
  static void run(const KernelCall& k) { backward<T>(k); }
};

const OpRegistrar reg([] {
  register_kernel("softmax_cross_entropy", DeviceKind::CPU,
                  {[](const KernelCall& k) { by_dtype<Forward>(k); }, {}, "rows", 10});
  register_kernel("softmax_cross_entropy_backward", DeviceKind::CPU,
                  {[](const KernelCall& k) { by_dtype<Backward>(k); }, {}, "rows", 10});
});

}  // namespace
}  // namespace ds
