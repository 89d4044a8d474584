// Register-width lane vectors (GCC/Clang vector extensions) for row reductions.
// The auto-vectorizer leaves selects such as a NaN-propagating max as branches,
// so the kernels spell their independent accumulators as vector values instead.
#pragma once

#include <cstdint>
#include <cstring>

namespace ds::cpu {

inline constexpr int kVecBytes = 32;  // one AVX2 register (two SSE registers elsewhere)

template <typename T, int N> struct VecOf {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};
// A register of T.
template <typename T> inline constexpr int kLanesOf = kVecBytes / static_cast<int>(sizeof(T));
template <typename T> using Vec = typename VecOf<T, kLanesOf<T>>::type;

template <typename T> Vec<T> splat(T v) { return Vec<T>{} + v; }

// kLanesOf<Acc> consecutive values of `x`, converted to Acc.
template <typename Acc, typename In> Vec<Acc> load_lanes(const In* x) {
  typename VecOf<In, kLanesOf<Acc>>::type v;
  std::memcpy(&v, x, sizeof v);
  return __builtin_convertvector(v, Vec<Acc>);
}

}  // namespace ds::cpu
