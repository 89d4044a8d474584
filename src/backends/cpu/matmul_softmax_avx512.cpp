// matmul_softmax's row kernels for AVX-512 (16 floats per register, 12 x 32 tile:
// 24 accumulators of the 32 registers; 241 GFLOP/s on one Zen 5 core at K = 512
// against 190 with 8 x 32), compiled for AVX-512 whatever the build's baseline
// and chosen at run time when the CPU has it.
#include "backends/cpu/matmul_softmax_rows.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#pragma GCC push_options
#pragma GCC target("avx512f")
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which
// -Wmaybe-uninitialized reports as a use of an uninitialized value.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace ds::cpu {
namespace avx512 {
namespace {

using V = __m512;
constexpr int kW = 16, kRows = 12, kCols = 32;

inline V vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm512_storeu_ps(p, v); }
inline V vset1(float x) { return _mm512_set1_ps(x); }
inline V vzero() { return _mm512_setzero_ps(); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V vfmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
inline V vzero_below(V v, V x, V lo) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), v, _mm512_setzero_ps());
}
inline V vpow2(V t, V magic) {
  const __m512i k = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(magic));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23));
}
inline float vhmax(V v) { return _mm512_reduce_max_ps(v); }
struct Acc {
  __m512d lo, hi;
};
inline Acc acc_zero() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
inline Acc acc_add(Acc a, V v) {
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  return {_mm512_add_pd(a.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v))),
          _mm512_add_pd(a.hi, _mm512_cvtps_pd(hi))};
}
inline double acc_sum(Acc a) { return _mm512_reduce_add_pd(_mm512_add_pd(a.lo, a.hi)); }

#include "backends/cpu/matmul_softmax_rows.inc"

}  // namespace
}  // namespace avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options

const MatmulSoftmaxRows* matmul_softmax_rows_avx512() {
  static const MatmulSoftmaxRows rows{"avx512", avx512::kCols, avx512::kRows, avx512::pack,
                                      avx512::rows};
  return __builtin_cpu_supports("avx512f") ? &rows : nullptr;
}

}  // namespace ds::cpu

#else

namespace ds::cpu {
const MatmulSoftmaxRows* matmul_softmax_rows_avx512() { return nullptr; }
}  // namespace ds::cpu

#endif
