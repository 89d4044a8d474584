// Fast CPU kernels for the binary elementwise ops, `where` and `cast`:
// float32/float64/int32/int64 (bool for comparisons, logic, where and cast), NumPy
// broadcasting (src/backends/cpu/broadcast_loop.h), multi-threaded. The inner
// loops are plain so GCC vectorizes them. Mixed input dtypes are converted to the
// computation dtype first, as the OpDef's inference says; float16/bfloat16
// compute in float32 and round once; int8/uint8 fall back to the reference kernel.
#include <algorithm>
#include <cmath>
#include <type_traits>

#if defined(__AVX2__)
#include <immintrin.h>
extern "C" __m256 _ZGVdN8vv_powf(__m256, __m256);
extern "C" __m512 _ZGVeN16vv_powf(__m512, __m512);
#endif

#include "backends/cpu/broadcast_loop.h"
#include "backends/cpu/elementwise_common.h"
#include "core/thread_pool.h"

namespace ds::cpu {
namespace {

// Integer arithmetic wraps (two's complement) instead of overflowing, which is UB.
template <typename T, typename F>
T wrapping(T a, T b, F f) {
  using U = std::make_unsigned_t<T>;
  return static_cast<T>(f(static_cast<U>(a), static_cast<U>(b)));
}

struct AddOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping(a, b, [](auto x, auto y) { return x + y; });
    else
      return a + b;
  }
};
struct SubOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping(a, b, [](auto x, auto y) { return x - y; });
    else
      return a - b;
  }
};
struct MulOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping(a, b, [](auto x, auto y) { return x * y; });
    else
      return a * b;
  }
};
struct DivOp {
  template <typename T>
  T operator()(T a, T b) const {
    return a / b;
  }
};
// Like the reference (std::pow, then truncation toward zero for integers).
struct PowOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return std::pow(a, b);
    } else {
      if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
      T r = 1;
      for (T base = a; b > 0; b >>= 1) {
        if (b & 1) r = MulOp{}(r, base);
        base = MulOp{}(base, base);
      }
      return r;
    }
  }
};
// NaN-propagating, and otherwise std::max / std::min exactly (the sign of equal zeros).
struct MaximumOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>)
      if (a != a || b != b) return a + b;
    return a < b ? b : a;
  }
};
struct MinimumOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>)
      if (a != a || b != b) return a + b;
    return b < a ? b : a;
  }
};
// The sign of the divisor, like NumPy; x mod 0 is 0 for integers (as the reference).
struct ModOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      T r = std::fmod(a, b);
      if (r != 0 && ((r < 0) != (b < 0))) r += b;
      return r;
    } else {
      if (b == 0 || b == -1) return 0;  // -1: INT_MIN % -1 traps
      T r = a % b;
      if (r != 0 && ((r < 0) != (b < 0))) r += b;
      return r;
    }
  }
};
struct EqOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a == b;
  }
};
struct NeOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a != b;
  }
};
struct LtOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a < b;
  }
};
struct LeOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a <= b;
  }
};
struct GtOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a > b;
  }
};
struct GeOp {
  template <typename T>
  bool operator()(T a, T b) const {
    return a >= b;
  }
};
struct AndOp {
  bool operator()(bool a, bool b) const { return a && b; }
};
struct OrOp {
  bool operator()(bool a, bool b) const { return a || b; }
};

// One run: operands advance by sa / sb in {0, 1}; each case is a separate
// loop so the compiler vectorizes it.
template <typename T, typename R, typename F>
void binary_run(const T* __restrict a, int64_t sa, const T* __restrict b, int64_t sb,
                R* __restrict o, int64_t n, F f) {
  if (sa && sb) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (sa) {
    const T bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (sb) {
    const T av = *a;
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    const R v = f(*a, *b);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  }
}

#if defined(__AVX2__)
// float32 pow in 16 AVX-512 lanes of libmvec's powf, the remainder under a mask.
__attribute__((target("avx512f"))) void pow_f32x16(const float* a, int64_t sa, const float* b,
                                                   int64_t sb, float* o, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m =
        n - i >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 va = sa ? _mm512_maskz_loadu_ps(m, a + i) : _mm512_set1_ps(*a);
    const __m512 vb = sb ? _mm512_maskz_loadu_ps(m, b + i) : _mm512_set1_ps(*b);
    _mm512_mask_storeu_ps(o + i, m, _ZGVeN16vv_powf(va, vb));
  }
}

// float32 pow: libmvec's powf in 16 (AVX-512) or 8 (AVX2) lanes (the scalar powf
// is several times slower); an AVX2 remainder goes through the same code in a
// padded buffer, so a value does not depend on where a thread's chunk starts.
void binary_run(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n,
                PowOp) {
  if (wide_lanes()) return pow_f32x16(a, sa, b, sb, o, n);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 va = sa ? _mm256_loadu_ps(a + i) : _mm256_set1_ps(*a);
    const __m256 vb = sb ? _mm256_loadu_ps(b + i) : _mm256_set1_ps(*b);
    _mm256_storeu_ps(o + i, _ZGVdN8vv_powf(va, vb));
  }
  if (i == n) return;
  alignas(32) float pa[8] = {}, pb[8] = {}, po[8];
  for (int64_t j = i; j < n; ++j) {
    pa[j - i] = a[sa * j];
    pb[j - i] = b[sb * j];
  }
  _mm256_store_ps(po, _ZGVdN8vv_powf(_mm256_load_ps(pa), _mm256_load_ps(pb)));
  std::copy(po, po + (n - i), o + i);
}
#endif

template <typename T, typename R, typename F>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  if (out.numel() == 0) return;
  const auto plan = plan_broadcast<2>(out.shape(), {&a.shape(), &b.shape()});
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  R* po = out.data<R>();
  const int64_t sa = plan.strides[0].back(), sb = plan.strides[1].back();
  parallel_for(out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for_each_run<2>(plan, begin, end,
                    [&](const std::array<int64_t, 2>& off, int64_t at, int64_t n) {
                      binary_run(pa + off[0], sa, pb + off[1], sb, po + at, n, f);
                    });
  });
}

enum class Kind { Arith, Div, Compare, Logical };

template <Kind K, typename F>
KernelFn binary_kernel(F f) {
  return [f](const KernelCall& k) {
    Tensor& out = k.outputs[0];
    const DType compute =
        K == Kind::Logical ? DType::Bool
        : K == Kind::Compare
            ? compute_dtype(promote_types(k.inputs[0].dtype(), k.inputs[1].dtype()))
            : compute_dtype(out.dtype());
    const Tensor a = as_dtype(k.inputs[0], compute), b = as_dtype(k.inputs[1], compute);
    if constexpr (K == Kind::Logical) {
      binary_loop<bool, bool>(a, b, out, f);
    } else {
      // float16/bfloat16 results are computed in float32, then rounded once.
      Tensor result =
          K == Kind::Compare || compute == out.dtype() ? out : Tensor::empty(out.shape(), compute);
      visit_fast(compute, [&](auto zero) {
        using T = decltype(zero);
        if constexpr (K == Kind::Compare)
          binary_loop<T, bool>(a, b, result, f);
        else
          binary_loop<T, T>(a, b, result, f);
      });
      if (!result.same(out)) copy_into(result, out);
    }
  };
}

std::function<bool(const OpContext&)> binary_supports(Kind kind) {
  return [kind](const OpContext& c) {
    for (const auto& t : c.inputs)
      if (!is_fast_or_bool(t.dtype) && !is_half(t.dtype)) return false;
    const DType p = promote_types(c.inputs[0].dtype, c.inputs[1].dtype);
    switch (kind) {
      case Kind::Arith:
      case Kind::Compare:
        return is_fast(p) || is_half(p);
      case Kind::Div:  // integer and bool operands divide in float32
      case Kind::Logical:
        return true;
    }
    return false;
  };
}

// where(cond, a, b) with cond as bool and a, b in the output dtype.
template <typename T>
void where_loop(const Tensor& c, const Tensor& a, const Tensor& b, Tensor& out) {
  if (out.numel() == 0) return;
  const auto plan = plan_broadcast<3>(out.shape(), {&c.shape(), &a.shape(), &b.shape()});
  const bool* pc = c.data<bool>();
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const int64_t sc = plan.strides[0].back(), sa = plan.strides[1].back(),
                sb = plan.strides[2].back();
  parallel_for(out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for_each_run<3>(plan, begin, end,
                    [&](const std::array<int64_t, 3>& off, int64_t at, int64_t n) {
                      const bool* __restrict rc = pc + off[0];
                      const T* __restrict ra = pa + off[1];
                      const T* __restrict rb = pb + off[2];
                      T* __restrict ro = po + at;
                      if (sc && sa && sb) {
                        // Bitwise select: branch-free (random conditions would mispredict)
                        // and vectorizable; exact for every value, NaN included.
                        using U = std::conditional_t<
                            sizeof(T) == 8, uint64_t,
                            std::conditional_t<sizeof(T) == 4, uint32_t,
                                               std::conditional_t<sizeof(T) == 2, uint16_t, uint8_t>>>;
                        const U* __restrict ua = reinterpret_cast<const U*>(ra);
                        const U* __restrict ub = reinterpret_cast<const U*>(rb);
                        const uint8_t* __restrict uc = reinterpret_cast<const uint8_t*>(rc);
                        U* __restrict uo = reinterpret_cast<U*>(ro);
                        for (int64_t i = 0; i < n; ++i) {
                          const U mask = static_cast<U>(0) - static_cast<U>(uc[i] != 0);
                          uo[i] = static_cast<U>((ua[i] & mask) | (ub[i] & static_cast<U>(~mask)));
                        }
                      } else {
                        for (int64_t i = 0; i < n; ++i)
                          ro[i] = rc[i * sc] ? ra[i * sa] : rb[i * sb];
                      }
                    });
  });
}

template <typename D, typename S>
void cast_loop(const Tensor& in, Tensor& out) {
  const S* __restrict s = in.data<S>();
  D* __restrict d = out.data<D>();
  parallel_for(in.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if constexpr (std::is_same_v<D, bool>)
        d[i] = s[i] != S{};
      else
        d[i] = static_cast<D>(s[i]);
    }
  });
}

void register_binary(const char* op, Kind kind, KernelFn fn) {
  register_kernel(op, DeviceKind::CPU, {std::move(fn), binary_supports(kind), "vectorized", 10});
}

const OpRegistrar reg([] {
  register_binary("add", Kind::Arith, binary_kernel<Kind::Arith>(AddOp{}));
  register_binary("sub", Kind::Arith, binary_kernel<Kind::Arith>(SubOp{}));
  register_binary("mul", Kind::Arith, binary_kernel<Kind::Arith>(MulOp{}));
  register_binary("div", Kind::Div, binary_kernel<Kind::Div>(DivOp{}));
  register_binary("pow", Kind::Arith, binary_kernel<Kind::Arith>(PowOp{}));
  register_binary("maximum", Kind::Arith, binary_kernel<Kind::Arith>(MaximumOp{}));
  register_binary("minimum", Kind::Arith, binary_kernel<Kind::Arith>(MinimumOp{}));
  register_binary("mod", Kind::Arith, binary_kernel<Kind::Arith>(ModOp{}));
  register_binary("eq", Kind::Compare, binary_kernel<Kind::Compare>(EqOp{}));
  register_binary("ne", Kind::Compare, binary_kernel<Kind::Compare>(NeOp{}));
  register_binary("lt", Kind::Compare, binary_kernel<Kind::Compare>(LtOp{}));
  register_binary("le", Kind::Compare, binary_kernel<Kind::Compare>(LeOp{}));
  register_binary("gt", Kind::Compare, binary_kernel<Kind::Compare>(GtOp{}));
  register_binary("ge", Kind::Compare, binary_kernel<Kind::Compare>(GeOp{}));
  register_binary("logical_and", Kind::Logical, binary_kernel<Kind::Logical>(AndOp{}));
  register_binary("logical_or", Kind::Logical, binary_kernel<Kind::Logical>(OrOp{}));

  register_kernel("where", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     Tensor& out = k.outputs[0];
                     const Tensor c = as_dtype(k.inputs[0], DType::Bool);
                     const Tensor a = as_dtype(k.inputs[1], out.dtype());
                     const Tensor b = as_dtype(k.inputs[2], out.dtype());
                     if (is_half(out.dtype()))  // selection moves the 16-bit patterns
                       where_loop<uint16_t>(c, a, b, out);
                     else
                       visit_fast_or_bool(out.dtype(), [&](auto zero) {
                         where_loop<decltype(zero)>(c, a, b, out);
                       });
                   },
                   [](const OpContext& c) {
                     for (const auto& t : c.inputs)
                       if (!is_fast_or_bool(t.dtype) && !is_half(t.dtype)) return false;
                     return true;
                   },
                   "vectorized", 10});

  register_kernel("cast", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     visit_fast_or_bool(k.outputs[0].dtype(), [&](auto d) {
                       visit_fast_or_bool(k.inputs[0].dtype(), [&](auto s) {
                         cast_loop<decltype(d), decltype(s)>(k.inputs[0], k.outputs[0]);
                       });
                     });
                   },
                   [](const OpContext& c) {
                     return is_fast_or_bool(c.inputs[0].dtype) && is_fast_or_bool(c.dtype("dtype"));
                   },
                   "vectorized", 10});
});

}  // namespace
}  // namespace ds::cpu
