#include "ds/dtype.h"

#include <cmath>

#include "ds/error.h"

namespace ds {

Half::Half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) {  // NaN
    bits = static_cast<uint16_t>(sign | 0x7e00u);
  } else if (abs >= 0x477ff000u) {  // rounds to >= 65520: overflow to Inf
    bits = static_cast<uint16_t>(sign | 0x7c00u);
  } else if (abs < 0x38800000u) {  // subnormal or zero in half
    // value = abs_f * 2^24 rounded to nearest even gives the subnormal mantissa.
    float af;
    std::memcpy(&af, &abs, 4);
    float scaled = af * 16777216.0f;  // 2^24
    uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));
    bits = static_cast<uint16_t>(sign | m);
  } else {
    uint32_t e = (abs >> 23) - 112;  // rebias 127 -> 15
    uint32_t m = abs & 0x7fffffu;
    uint32_t h = (e << 10) | (m >> 13);
    uint32_t rest = m & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // nearest even
    bits = static_cast<uint16_t>(sign | h);
  }
}

Half::operator float() const {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t e = (bits >> 10) & 0x1fu;
  const uint32_t m = bits & 0x3ffu;
  uint32_t x;
  if (e == 0) {
    float f = static_cast<float>(m) * 5.9604644775390625e-8f;  // 2^-24
    return sign ? -f : f;
  } else if (e == 31) {
    x = sign | 0x7f800000u | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::Bool:
    case DType::UInt8:
    case DType::Int8: return 1;
    case DType::Float16:
    case DType::BFloat16: return 2;
    case DType::Int32:
    case DType::Float32: return 4;
    case DType::Int64:
    case DType::Float64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::UInt8: return "uint8";
    case DType::Int8: return "int8";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
  }
  return "?";
}

DType dtype_from_name(std::string_view n) {
  struct Alias { const char* name; DType t; };
  static const Alias aliases[] = {
      {"bool", DType::Bool},       {"uint8", DType::UInt8},     {"u8", DType::UInt8},
      {"int8", DType::Int8},       {"i8", DType::Int8},         {"int32", DType::Int32},
      {"i32", DType::Int32},       {"int64", DType::Int64},     {"i64", DType::Int64},
      {"int", DType::Int64},       {"float16", DType::Float16}, {"f16", DType::Float16},
      {"half", DType::Float16},    {"fp16", DType::Float16},    {"bfloat16", DType::BFloat16},
      {"bf16", DType::BFloat16},   {"float32", DType::Float32}, {"f32", DType::Float32},
      {"float", DType::Float32},   {"fp32", DType::Float32},    {"float64", DType::Float64},
      {"f64", DType::Float64},     {"double", DType::Float64},
  };
  for (const auto& a : aliases)
    if (n == a.name) return a.t;
  throw TypeError(detail::cat("unknown dtype '", n,
                              "'; expected one of bool, uint8, int8, int32, int64, float16, "
                              "bfloat16, float32, float64"));
}

bool is_floating(DType t) {
  return t == DType::Float16 || t == DType::BFloat16 || t == DType::Float32 ||
         t == DType::Float64;
}
bool is_integral(DType t) {
  return t == DType::UInt8 || t == DType::Int8 || t == DType::Int32 || t == DType::Int64;
}
bool is_signed(DType t) { return t != DType::Bool && t != DType::UInt8; }

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::Bool) return b;
  if (b == DType::Bool) return a;
  const bool fa = is_floating(a), fb = is_floating(b);
  if (fa && fb) {
    // float16 with bfloat16 has no common 16-bit type: float32.
    if ((a == DType::Float16 && b == DType::BFloat16) ||
        (a == DType::BFloat16 && b == DType::Float16))
      return DType::Float32;
    return dtype_size(a) >= dtype_size(b) ? a : b;
  }
  // Float with integer: the float type. NumPy widens float16/float32 with int32/int64
  // to float64; we keep the float, as PyTorch does, so low precision stays low.
  if (fa) return a;
  if (fb) return b;
  // Both integers.
  if (is_signed(a) == is_signed(b)) return dtype_size(a) >= dtype_size(b) ? a : b;
  // uint8 is the only unsigned type. uint8 with int8 needs int16, which we lack: int32.
  DType s = is_signed(a) ? a : b;
  return s == DType::Int8 ? DType::Int32 : s;
}

}  // namespace ds
