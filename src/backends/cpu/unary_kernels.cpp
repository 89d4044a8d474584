// Fast CPU kernels for the unary elementwise ops, multi-threaded.
// float32: 8 lanes of AVX2; transcendentals from glibc's libmvec (_ZGVdN8v_expf
// and friends, a few ulps). softplus would amplify the rounding of an inner step
// in its tail, so its lanes run in float64 and round once; gelu carries its inner
// argument in extra precision and silu takes rare extreme lanes to float64. A remainder shorter
// than 8 goes through the same vector code in a padded buffer, so a value never
// depends on where a thread's chunk starts.
// float64 and the integer types: the reference formulas, element by element.
// float16/bfloat16: computed in float32, rounded once into the output.
// Integer inputs of float-result ops (exp of int32) compute in float32.
#include "backends/cpu/elementwise_common.h"
#include "core/thread_pool.h"

#if defined(__AVX2__)

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

extern "C" {
__m256 _ZGVdN8v_expf(__m256);
__m256 _ZGVdN8v_logf(__m256);
__m256 _ZGVdN8v_log1pf(__m256);
__m256 _ZGVdN8v_expm1f(__m256);
__m256 _ZGVdN8v_sinf(__m256);
__m256 _ZGVdN8v_cosf(__m256);
__m256 _ZGVdN8v_tanhf(__m256);
__m256 _ZGVdN8v_erff(__m256);
__m256 _ZGVdN8v_erfcf(__m256);
__m256d _ZGVdN4v_exp(__m256d);
__m256d _ZGVdN4v_log1p(__m256d);
__m256d _ZGVdN4v_erfc(__m256d);
// 16-lane AVX-512 variants, used when the CPU has AVX-512F (see wide_lanes()).
__m512 _ZGVeN16v_expf(__m512);
__m512 _ZGVeN16v_logf(__m512);
__m512 _ZGVeN16v_log1pf(__m512);
__m512 _ZGVeN16v_expm1f(__m512);
__m512 _ZGVeN16v_sinf(__m512);
__m512 _ZGVeN16v_cosf(__m512);
__m512 _ZGVeN16v_tanhf(__m512);
__m512 _ZGVeN16v_erff(__m512);
}

namespace ds::cpu {
namespace {

const double kSqrtHalf = 1.0 / std::sqrt(2.0);
const double kSqrt2OverPi = std::sqrt(2.0 / M_PI);

inline __m256 splat(float v) {
  return _mm256_set1_ps(v);
}
inline __m256 negate(__m256 x) {
  return _mm256_xor_ps(x, splat(-0.0f));
}
inline __m256 gt_zero(__m256 x) {
  return _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);
}

// All-ones lanes where x is finite.
inline __m256 finite(__m256 x) {
  return _mm256_cmp_ps(_mm256_andnot_ps(splat(-0.0f), x), splat(INFINITY), _CMP_LT_OQ);
}

// Runs a float64 lane function on 8 float32 lanes and rounds the results once.
template <typename D>
__m256 in_f64(__m256 x, D d) {
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
  const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
  return _mm256_set_m128(_mm256_cvtpd_ps(d(hi)), _mm256_cvtpd_ps(d(lo)));
}

// Computes d (a float64 lane function) for 8 float32 lanes as float32 hi + lo,
// with lo = 0 where hi is not finite.
template <typename D>
void split_f64(__m256 x, __m256& hi, __m256& lo, D d) {
  __m128 h[2], l[2];
  for (int half = 0; half < 2; ++half) {
    const __m256d v =
        _mm256_cvtps_pd(half ? _mm256_extractf128_ps(x, 1) : _mm256_castps256_ps128(x));
    const __m256d r = d(v);
    h[half] = _mm256_cvtpd_ps(r);
    l[half] = _mm256_cvtpd_ps(_mm256_sub_pd(r, _mm256_cvtps_pd(h[half])));
  }
  hi = _mm256_set_m128(h[1], h[0]);
  lo = _mm256_set_m128(l[1], l[0]);
  lo = _mm256_and_ps(lo, finite(hi));
}

// The float64 formulas (bit-identical to the reference kernels).
double sigmoid64(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
double gelu_erf64(double x) {
  return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
}
double gelu_tanh64(double x) {
  return x / (1.0 + std::exp(-2.0 * std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

// ---- the ops. f32(ctx): __m256 -> __m256; f64(ctx): double -> double;
// ints(ctx) (ops whose result keeps an integer dtype): T -> T.
struct FloatOnly {
  static constexpr bool kKeepsInts = false;
};
struct KeepsInts {
  static constexpr bool kKeepsInts = true;
};

struct Neg : KeepsInts {
  static auto f32(const OpContext&) {
    return [](__m256 x) { return negate(x); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return -x; };
  }
  static auto ints(const OpContext&) {
    return [](auto x) {
      using T = decltype(x);
      return static_cast<T>(0 - static_cast<std::make_unsigned_t<T>>(x));
    };
  }
};
struct Abs : KeepsInts {
  static auto f32(const OpContext&) {
    return [](__m256 x) { return _mm256_andnot_ps(splat(-0.0f), x); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return std::abs(x); };
  }
  static auto ints(const OpContext&) {
    return [](auto x) {
      using T = decltype(x);
      return x < 0 ? static_cast<T>(0 - static_cast<std::make_unsigned_t<T>>(x)) : x;
    };
  }
};
// NaN propagates, like the reference.
struct Relu : KeepsInts {
  static auto f32(const OpContext&) {
    return [](__m256 x) {
      return _mm256_and_ps(x, _mm256_or_ps(gt_zero(x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
    };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return x > 0 || std::isnan(x) ? x : 0.0; };
  }
  static auto ints(const OpContext&) {
    return [](auto x) { return x > 0 ? x : decltype(x){0}; };
  }
};
struct Square : KeepsInts {
  static auto f32(const OpContext&) {
    return [](__m256 x) { return _mm256_mul_ps(x, x); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return x * x; };
  }
  static auto ints(const OpContext&) {
    return [](auto x) {
      using U = std::make_unsigned_t<decltype(x)>;
      return static_cast<decltype(x)>(static_cast<U>(x) * static_cast<U>(x));
    };
  }
};
struct Sign : KeepsInts {
  static auto f32(const OpContext&) {
    return [](__m256 x) {
      const __m256 one = splat(1.0f);
      const __m256 pos = _mm256_and_ps(gt_zero(x), one);
      const __m256 neg = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ), one);
      return _mm256_blendv_ps(_mm256_sub_ps(pos, neg), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return std::isnan(x) ? x : static_cast<double>((x > 0) - (x < 0)); };
  }
  static auto ints(const OpContext&) {
    return [](auto x) { return static_cast<decltype(x)>((x > 0) - (x < 0)); };
  }
};
// floor / ceil / round are the identity on integers.
template <int Mode, double (*F)(double)>
struct Rounding : KeepsInts {
  static auto f32(const OpContext&) {
    return [](__m256 x) { return _mm256_round_ps(x, Mode | _MM_FROUND_NO_EXC); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return F(x); };
  }
  static auto ints(const OpContext&) {
    return [](auto x) { return x; };
  }
};
// The float64 formulas are captureless lambdas: a standard library function's
// address may not be taken.
using Floor = Rounding<_MM_FROUND_TO_NEG_INF, +[](double x) { return std::floor(x); }>;
using Ceil = Rounding<_MM_FROUND_TO_POS_INF, +[](double x) { return std::ceil(x); }>;
using Round = Rounding<_MM_FROUND_TO_NEAREST_INT, +[](double x) { return std::nearbyint(x); }>;

// Float-result ops whose float32 lanes call one libmvec function.
template <__m256 (*V)(__m256), __m512 (*W)(__m512), double (*F)(double)>
struct Mvec : FloatOnly {
  static constexpr __m512 (*kWide)(__m512) = W;
  static auto f32(const OpContext&) {
    return [](__m256 x) { return V(x); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return F(x); };
  }
};
using Exp = Mvec<_ZGVdN8v_expf, _ZGVeN16v_expf, +[](double x) { return std::exp(x); }>;
using Log = Mvec<_ZGVdN8v_logf, _ZGVeN16v_logf, +[](double x) { return std::log(x); }>;
using Log1p = Mvec<_ZGVdN8v_log1pf, _ZGVeN16v_log1pf, +[](double x) { return std::log1p(x); }>;
using Expm1 = Mvec<_ZGVdN8v_expm1f, _ZGVeN16v_expm1f, +[](double x) { return std::expm1(x); }>;
using Sin = Mvec<_ZGVdN8v_sinf, _ZGVeN16v_sinf, +[](double x) { return std::sin(x); }>;
using Cos = Mvec<_ZGVdN8v_cosf, _ZGVeN16v_cosf, +[](double x) { return std::cos(x); }>;
using Tanh = Mvec<_ZGVdN8v_tanhf, _ZGVeN16v_tanhf, +[](double x) { return std::tanh(x); }>;
using Erf = Mvec<_ZGVdN8v_erff, _ZGVeN16v_erff, +[](double x) { return std::erf(x); }>;

struct Sqrt : FloatOnly {
  static auto f32(const OpContext&) {
    return [](__m256 x) { return _mm256_sqrt_ps(x); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return std::sqrt(x); };
  }
};
struct Rsqrt : FloatOnly {
  static auto f32(const OpContext&) {
    return [](__m256 x) { return _mm256_div_ps(splat(1.0f), _mm256_sqrt_ps(x)); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return 1.0 / std::sqrt(x); };
  }
};
struct Reciprocal : FloatOnly {
  static auto f32(const OpContext&) {
    return [](__m256 x) { return _mm256_div_ps(splat(1.0f), x); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return 1.0 / x; };
  }
};
// 1 / (1 + e^-|x|), times e^-|x| for x < 0: no overflow, accurate in both tails.
inline __m256 sigmoid_f32(__m256 x) {
  const __m256 e = _ZGVdN8v_expf(_mm256_or_ps(x, splat(-0.0f)));
  const __m256 r = _mm256_div_ps(splat(1.0f), _mm256_add_ps(splat(1.0f), e));
  return _mm256_blendv_ps(_mm256_mul_ps(e, r), r,
                          _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}
struct Sigmoid : FloatOnly {
  static auto f32(const OpContext&) {
    return [](__m256 x) { return sigmoid_f32(x); };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return sigmoid64(x); };
  }
};
// x / (1 + e^-x) for x >= 0 and x e^x / (1 + e^x) for x < 0, so e = e^-|x| never
// overflows. Below x = -80 e^x nears float32's subnormal range (losing bits)
// while x e^x does not, so those (rare) lanes run in float64.
struct Silu : FloatOnly {
  static auto f32(const OpContext&) {
    return [](__m256 x) {
      const __m256 e = _ZGVdN8v_expf(_mm256_or_ps(x, splat(-0.0f)));
      const __m256 one_plus_e = _mm256_add_ps(splat(1.0f), e);
      const __m256 r = _mm256_blendv_ps(_mm256_div_ps(_mm256_mul_ps(x, e), one_plus_e),
                                        _mm256_div_ps(x, one_plus_e),
                                        _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
      const __m256 far = _mm256_cmp_ps(x, splat(-80.0f), _CMP_LT_OQ);
      if (!_mm256_movemask_ps(far)) return r;
      return _mm256_blendv_ps(
          r,
          in_f64(x,
                 [](__m256d v) {
                   const __m256d ev = _ZGVdN4v_exp(_mm256_xor_pd(v, _mm256_set1_pd(-0.0)));
                   return _mm256_div_pd(v, _mm256_add_pd(_mm256_set1_pd(1.0), ev));
                 }),
          far);
    };
  }
  static auto f64(const OpContext&) {
    return [](double x) { return x * sigmoid64(x); };
  }
};
struct LeakyRelu : FloatOnly {
  static auto f32(const OpContext& c) {
    const __m256 slope = splat(static_cast<float>(c.f("negative_slope")));
    return [slope](__m256 x) { return _mm256_blendv_ps(_mm256_mul_ps(x, slope), x, gt_zero(x)); };
  }
  static auto f64(const OpContext& c) {
    const double slope = c.f("negative_slope");
    return [slope](double x) { return x > 0 ? x : x * slope; };
  }
};
struct Elu : FloatOnly {
  static auto f32(const OpContext& c) {
    const __m256 alpha = splat(static_cast<float>(c.f("alpha")));
    return [alpha](__m256 x) {
      return _mm256_blendv_ps(_mm256_mul_ps(alpha, _ZGVdN8v_expm1f(x)), x, gt_zero(x));
    };
  }
  static auto f64(const OpContext& c) {
    const double alpha = c.f("alpha");
    return [alpha](double x) { return x > 0 ? x : alpha * std::expm1(x); };
  }
};
// The tails would amplify the rounding of gelu's inner argument (erfc and exp
// have condition numbers ~2t^2 and |w|), so that argument is computed in float64
// and carried as float32 hi + lo; the lo part enters through a first-order
// correction: erfc(h + l) ~ erfc(h) - l 2/sqrt(pi) e^(-h^2), e^(h + l) ~ e^h (1 + l).
struct Gelu : FloatOnly {
  struct Lanes {
    bool tanh_form;
    __m256 operator()(__m256 x) const {
      __m256 hi, lo;
      if (tanh_form) {
        // x / (1 + e^w), w = -2k(x + 0.044715 x^3). With F = e^(-|w| + 32 ln 2) (never
        // overflows) and E = 2^-32 F = e^-|w|: x / (1 + E) for w <= 0, and
        // (x F / (1 + E)) 2^-32 for w > 0, which keeps x e^-w accurate down to subnormals.
        split_f64(x, hi, lo, [](__m256d v) {
          const __m256d v3 = _mm256_mul_pd(_mm256_mul_pd(v, v), v);
          const __m256d w = _mm256_mul_pd(_mm256_set1_pd(-2.0 * kSqrt2OverPi),
                                          _mm256_fmadd_pd(_mm256_set1_pd(0.044715), v3, v));
          const __m256d abs_w = _mm256_andnot_pd(_mm256_set1_pd(-0.0), w);
          return _mm256_sub_pd(_mm256_set1_pd(32 * M_LN2), abs_w);
        });
        const __m256 f0 = _ZGVdN8v_expf(hi);
        const __m256 f = _mm256_fmadd_ps(f0, lo, f0);
        const __m256 one_plus_e = _mm256_fmadd_ps(f, splat(0x1p-32f), splat(1.0f));
        const __m256 small_w = _mm256_div_ps(x, one_plus_e);
        const __m256 large_w =
            _mm256_mul_ps(_mm256_div_ps(_mm256_mul_ps(x, f), one_plus_e), splat(0x1p-32f));
        // w > 0 exactly where x < 0 (x + 0.044715 x^3 has the sign of x).
        return _mm256_blendv_ps(small_w, large_w,
                                _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
      }
      // t = -x / sqrt(2) as hi + lo: the product's rounding error is exact through
      // an FMA, and the constant's own error is c_lo.
      const float c_hi = static_cast<float>(-kSqrtHalf);
      const float c_lo = static_cast<float>(-kSqrtHalf - c_hi);
      hi = _mm256_mul_ps(x, splat(c_hi));
      lo = _mm256_fmadd_ps(x, splat(c_lo), _mm256_fmsub_ps(x, splat(c_hi), hi));
      lo = _mm256_and_ps(lo, finite(hi));
      const __m256 c = _ZGVdN8v_erfcf(hi);
      const __m256 d = _ZGVdN8v_expf(negate(_mm256_mul_ps(hi, hi)));
      const __m256 slope = _mm256_mul_ps(lo, splat(static_cast<float>(-2.0 / std::sqrt(M_PI))));
      const __m256 r = _mm256_mul_ps(_mm256_mul_ps(splat(0.5f), x), _mm256_fmadd_ps(slope, d, c));
      // Beyond t = 9 erfc(t) is subnormal in float32 and loses bits the product still
      // has: those (rare) lanes are computed in float64.
      const __m256 far = _mm256_cmp_ps(hi, splat(9.0f), _CMP_GT_OQ);
      if (!_mm256_movemask_ps(far)) return r;
      return _mm256_blendv_ps(
          r,
          in_f64(x,
                 [](__m256d v) {
                   const __m256d t = _mm256_mul_pd(v, _mm256_set1_pd(-kSqrtHalf));
                   return _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(0.5), v), _ZGVdN4v_erfc(t));
                 }),
          far);
    }
  };
  static Lanes f32(const OpContext& c) { return Lanes{c.s("approximate") == "tanh"}; }
  static auto f64(const OpContext& c) {
    return c.s("approximate") == "tanh" ? gelu_tanh64 : gelu_erf64;
  }
};
struct Softplus : FloatOnly {
  static auto f32(const OpContext& c) {
    const double beta = c.f("beta"), threshold = c.f("threshold");
    return [beta, threshold](__m256 x) {
      return in_f64(x, [beta, threshold](__m256d v) {
        const __m256d bx = _mm256_mul_pd(v, _mm256_set1_pd(beta));
        const __m256d soft = _mm256_div_pd(_ZGVdN4v_log1p(_ZGVdN4v_exp(bx)), _mm256_set1_pd(beta));
        return _mm256_blendv_pd(soft, v, _mm256_cmp_pd(bx, _mm256_set1_pd(threshold), _CMP_GT_OQ));
      });
    };
  }
  static auto f64(const OpContext& c) {
    const double beta = c.f("beta"), threshold = c.f("threshold");
    return [beta, threshold](double x) {
      return beta * x > threshold ? x : std::log1p(std::exp(beta * x)) / beta;
    };
  }
};

// ---- drivers

template <typename V>
void map_f32(const float* x, float* y, int64_t n, const V& v) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    int64_t i = b;
    for (; i + 8 <= e; i += 8) _mm256_storeu_ps(y + i, v(_mm256_loadu_ps(x + i)));
    if (i < e) {
      alignas(32) float buf[8] = {};
      std::copy(x + i, x + e, buf);
      _mm256_store_ps(buf, v(_mm256_load_ps(buf)));
      std::copy(buf, buf + (e - i), y + i);
    }
  });
}

// One chunk in 16 lanes; the remainder through the same function under a mask.
template <__m512 (*W)(__m512)>
__attribute__((target("avx512f"))) void chunk_f32x16(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, W(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, W(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

template <__m512 (*W)(__m512)>
void map_f32x16(const float* x, float* y, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) { chunk_f32x16<W>(x + b, y + b, e - b); });
}

template <typename T, typename R, typename F>
void map_scalar(const T* x, R* y, int64_t n, F f) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
  });
}

template <typename Op>
void unary_kernel(const KernelCall& k) {
  // float16/bfloat16 compute in float32 and round once into the output.
  const bool half = is_half(k.outputs[0].dtype());
  Tensor out = half ? Tensor::empty(k.outputs[0].shape(), DType::Float32) : k.outputs[0];
  const Tensor x = as_dtype(k.inputs[0], out.dtype());
  const int64_t n = out.numel();
  if (n == 0) return;
  switch (out.dtype()) {
    case DType::Float32:
      if constexpr (requires { Op::kWide; }) {
        if (wide_lanes()) {
          map_f32x16<Op::kWide>(x.data<float>(), out.data<float>(), n);
          break;
        }
      }
      map_f32(x.data<float>(), out.data<float>(), n, Op::f32(k.ctx));
      break;
    case DType::Float64:
      map_scalar(x.data<double>(), out.data<double>(), n, Op::f64(k.ctx));
      break;
    case DType::Int32:
    case DType::Int64:
      if constexpr (Op::kKeepsInts) {
        if (out.dtype() == DType::Int32)
          map_scalar(x.data<int32_t>(), out.data<int32_t>(), n, Op::ints(k.ctx));
        else
          map_scalar(x.data<int64_t>(), out.data<int64_t>(), n, Op::ints(k.ctx));
      }
      break;
    default:
      throw TypeError(k.ctx.where() + "no vectorized kernel for " + dtype_name(out.dtype()));
  }
  if (half) copy_into(out, k.outputs[0]);
}

template <typename Op>
void register_unary(const char* name) {
  register_kernel(name, DeviceKind::CPU,
                  {unary_kernel<Op>,
                   [](const OpContext& c) {
                     const DType in = c.inputs[0].dtype;
                     if (is_half(in)) return true;
                     if (Op::kKeepsInts) return is_fast(in);
                     return is_fast_or_bool(in);  // integers and bool compute in float32
                   },
                   "vectorized", 10});
}

// logical_not and isnan: any fast dtype in, bool out.
template <typename Pred>
void register_predicate(const char* name, Pred pred) {
  register_kernel(
      name, DeviceKind::CPU,
      {[pred](const KernelCall& k) {
         visit_fast_or_bool(k.inputs[0].dtype(), [&](auto zero) {
           using T = decltype(zero);
           map_scalar(k.inputs[0].data<T>(), k.outputs[0].data<bool>(), k.inputs[0].numel(),
                      [&](T v) { return pred(v); });
         });
       },
       [](const OpContext& c) { return is_fast_or_bool(c.inputs[0].dtype); }, "vectorized", 10});
}

const OpRegistrar reg([] {
  register_unary<Neg>("neg");
  register_unary<Abs>("abs");
  register_unary<Relu>("relu");
  register_unary<Square>("square");
  register_unary<Sign>("sign");
  register_unary<Floor>("floor");
  register_unary<Ceil>("ceil");
  register_unary<Round>("round");
  register_unary<Exp>("exp");
  register_unary<Log>("log");
  register_unary<Log1p>("log1p");
  register_unary<Expm1>("expm1");
  register_unary<Sin>("sin");
  register_unary<Cos>("cos");
  register_unary<Tanh>("tanh");
  register_unary<Erf>("erf");
  register_unary<Sqrt>("sqrt");
  register_unary<Rsqrt>("rsqrt");
  register_unary<Reciprocal>("reciprocal");
  register_unary<Sigmoid>("sigmoid");
  register_unary<Silu>("silu");
  register_unary<LeakyRelu>("leaky_relu");
  register_unary<Elu>("elu");
  register_unary<Gelu>("gelu");
  register_unary<Softplus>("softplus");
  register_predicate("logical_not", [](auto v) { return v == decltype(v){}; });
  register_predicate("isnan", [](auto v) { return v != v; });
});

}  // namespace
}  // namespace ds::cpu

#endif  // __AVX2__
