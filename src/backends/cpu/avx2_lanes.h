// Small AVX2 helpers the hand-written CPU kernels share.
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

#include <cstdint>

namespace ds::cpu {

// A mask of the first k of 8 float lanes (for maskload / maskstore tails).
inline __m256i first_lanes(int64_t k) {
  alignas(32) int32_t m[8];
  for (int i = 0; i < 8; ++i) m[i] = i < k ? -1 : 0;
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}

// The sum of the 8 lanes, always in the same order.
inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

}  // namespace ds::cpu
#endif
