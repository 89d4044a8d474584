// Shared by the CPU elementwise kernels: the dtypes they serve and conversion of
// operands to the computation dtype.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ds/op.h"

namespace ds::cpu {

// ~32K elements per task: large enough to amortize scheduling, small enough to
// spread 10^6-element tensors over the threads.
constexpr int64_t kGrain = 1 << 15;

inline bool is_fast(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Int32 || t == DType::Int64;
}
inline bool is_fast_or_bool(DType t) {
  return is_fast(t) || t == DType::Bool;
}
// float16 and bfloat16 compute in float32 and round once into the output.
inline bool is_half(DType t) {
  return t == DType::Float16 || t == DType::BFloat16;
}
inline DType compute_dtype(DType t) {
  return is_half(t) ? DType::Float32 : t;
}

// libmvec's 16-lane AVX-512 functions where the CPU has AVX-512F, unless
// DS_CPU_ISA=avx2 (read on each call, so one process can compare both paths).
inline bool wide_lanes() {
  static const bool has_avx512 = __builtin_cpu_supports("avx512f");
  const char* isa = std::getenv("DS_CPU_ISA");
  return has_avx512 && !(isa && std::string_view(isa) == "avx2");
}

inline Tensor as_dtype(const Tensor& t, DType d) {
  if (t.dtype() == d) return t;
  Tensor out = Tensor::empty(t.shape(), d);
  copy_into(t, out);
  return out;
}

// visit_dtype restricted to the fast dtypes (callers check is_fast first).
template <typename F>
void visit_fast(DType t, F&& f) {
  switch (t) {
    case DType::Float32:
      f(float{});
      break;
    case DType::Float64:
      f(double{});
      break;
    case DType::Int32:
      f(int32_t{});
      break;
    case DType::Int64:
      f(int64_t{});
      break;
    default:
      throw TypeError(std::string("cpu elementwise kernel: unsupported dtype ") + dtype_name(t));
  }
}
template <typename F>
void visit_fast_or_bool(DType t, F&& f) {
  if (t == DType::Bool)
    f(bool{});
  else
    visit_fast(t, f);
}

}  // namespace ds::cpu
