// matmul_softmax's row kernels for AVX2 + FMA (8 floats per register, 6 x 16 tile:
// 12 accumulators of the 16 registers), the x86-64-v3 baseline.
#include "backends/cpu/matmul_softmax_rows.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cstring>

namespace ds::cpu {
namespace avx2 {
namespace {

using V = __m256;
constexpr int kW = 8, kRows = 6, kCols = 16;

inline V vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V vset1(float x) { return _mm256_set1_ps(x); }
inline V vzero() { return _mm256_setzero_ps(); }
inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V vfmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
inline V vzero_below(V v, V x, V lo) {
  return _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
}
inline V vpow2(V t, V magic) {
  const __m256i k = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}
inline float vhmax(V v) {
  float lanes[kW];
  _mm256_storeu_ps(lanes, v);
  float m = lanes[0];
  for (float l : lanes) m = l > m ? l : m;
  return m;
}
struct Acc {
  __m256d lo, hi;
};
inline Acc acc_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
inline Acc acc_add(Acc a, V v) {
  return {_mm256_add_pd(a.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v))),
          _mm256_add_pd(a.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)))};
}
inline double acc_sum(Acc a) {
  double lanes[4];
  _mm256_storeu_pd(lanes, _mm256_add_pd(a.lo, a.hi));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

#include "backends/cpu/matmul_softmax_rows.inc"

}  // namespace
}  // namespace avx2

const MatmulSoftmaxRows* matmul_softmax_rows_avx2() {
  static const MatmulSoftmaxRows rows{"avx2", avx2::kCols, avx2::kRows, avx2::pack, avx2::rows};
  return &rows;
}

}  // namespace ds::cpu

#else

namespace ds::cpu {
const MatmulSoftmaxRows* matmul_softmax_rows_avx2() { return nullptr; }
}  // namespace ds::cpu

#endif
