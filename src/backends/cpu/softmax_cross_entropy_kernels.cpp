// CPU kernels of softmax_cross_entropy and its backward over contiguous logits
// [N, C] (float32/float64, float16/bfloat16 widened to float32 per element): rows
// run in parallel; the forward reads a row for its max and once more for the sum
// of exponentials (accumulated in float64) and the label-smoothing sum; the
// backward reads it once and writes the gradient rounded once to the logits' type.
#include <cmath>
#include <limits>
#include <type_traits>

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

template <typename T> void forward(const KernelCall& k) {
  using A = Acc<T>;
  const int64_t n = k.inputs[0].shape()[0], classes = k.inputs[0].shape()[1];
  const auto target = targets_of(k, classes);
  const T* x = k.inputs[0].data<T>();
  A* loss = k.outputs[0].data<A>();
  A* lse_out = k.outputs[1].data<A>();
  const double ls = k.ctx.f("label_smoothing");
  parallel_for(n, row_grain(classes), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* row = x + r * classes;
      A m = -std::numeric_limits<A>::infinity();
      for (int64_t j = 0; j < classes; ++j) {
        const A v = load(row[j]);
        m = (v > m || v != v) ? v : m;
      }
      double lse = m;  // -inf, +inf or NaN stays
      if (std::isfinite(m)) {
        double s = 0;
        for (int64_t j = 0; j < classes; ++j) s += static_cast<double>(std::exp(load(row[j]) - m));
        lse = static_cast<double>(m) + std::log(s);
      }
      lse_out[r] = static_cast<A>(lse);
      if (target[r] < 0) {
        loss[r] = 0;
        continue;
      }
      double l = lse - (1 - ls) * static_cast<double>(load(row[target[r]]));
      if (ls > 0) {
        double s = 0;
        for (int64_t j = 0; j < classes; ++j) s += static_cast<double>(load(row[j]));
        l -= ls * s / static_cast<double>(classes);
      }
      loss[r] = static_cast<A>(l);
    }
  });
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
    for (int64_t r = rb; r < re; ++r) {
      const T* row = x + r * classes;
      T* out = dx + r * classes;
      if (target[r] < 0) {
        for (int64_t j = 0; j < classes; ++j) out[j] = static_cast<T>(A(0));
        continue;
      }
      const A l = lse[r], d = dloss[r];
      for (int64_t j = 0; j < classes; ++j)
        out[j] = static_cast<T>((std::exp(load(row[j]) - l) - uniform) * d);
      const int64_t t = target[r];
      out[t] = static_cast<T>((std::exp(load(row[t]) - l) - hit - uniform) * d);
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
