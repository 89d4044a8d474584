// exp on 8 floats at once for the CPU row kernels (softmax, log_softmax,
// softmax_cross_entropy), whose arguments x - max are <= 0.
#pragma once

#include <bit>
#include <cstdint>

namespace ds::cpu {

using f32x8 = float __attribute__((vector_size(32)));
using i32x8 = int32_t __attribute__((vector_size(32)));

// exp for x <= 0 (GCC/Clang vector extensions: the selects below would otherwise
// stay branches, since comparisons may trap): Cephes' expf polynomial after
// reducing x = k ln2 + r, about 1 ulp. Results below float's normal range flush
// to 0 (-inf gives 0); NaN stays NaN.
inline f32x8 exp_nonpositive(f32x8 x) {
  const auto splat = [](float v) { return f32x8{v, v, v, v, v, v, v, v}; };
  const f32x8 lowest = splat(-87.33654f), round = splat(12582912.0f);  // 1.5 * 2^23
  const i32x8 underflow = x < lowest;
  const f32x8 xc = underflow ? lowest : x;
  const f32x8 t = xc * 1.44269504088896341f + round;  // nearest integer k in t's low bits
  const f32x8 k = t - round;
  f32x8 r = xc - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  f32x8 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const i32x8 ki = std::bit_cast<i32x8>(t) - std::bit_cast<i32x8>(round);
  const i32x8 bits = (ki + 127) << 23;
  const f32x8 scale = std::bit_cast<f32x8>(bits);
  return underflow ? splat(0.0f) : p * scale;
}

}  // namespace ds::cpu
