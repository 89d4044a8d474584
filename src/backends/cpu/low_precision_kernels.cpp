// bfloat16/float16 matmul, linear, gemm and convolutions on the CPU, emulated with
// the float32 kernels: the low-precision inputs widen to float32 exactly, the
// float32 kernel accumulates, and the result rounds to the low precision once.
// That is the semantics of a low-precision op with float32 accumulation (what
// hardware bf16/fp16 units do), so the answer does not depend on the CPU.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "backends/cpu/low_precision.h"
#include "core/thread_pool.h"
#include "ds/op.h"

namespace ds::cpu {
namespace {

std::atomic<bool>& native_bf16_flag() {
  static std::atomic<bool> on = [] {
    const char* env = std::getenv("DS_BF16");
    return !(env && std::strcmp(env, "emulate") == 0);
  }();
  return on;
}

constexpr std::array kLowPrecisionOps = {"matmul",
                                         "linear",
                                         "gemm",
                                         "conv2d",
                                         "conv2d_backward_input",
                                         "conv2d_backward_weight",
                                         "conv_transpose2d"};

bool is_low(DType t) { return t == DType::BFloat16 || t == DType::Float16; }

// Every input in one low-precision dtype (mixed calls are promoted by the op first).
bool all_low_precision(const OpContext& c) {
  if (c.inputs.empty() || !is_low(c.inputs[0].dtype)) return false;
  return std::all_of(c.inputs.begin(), c.inputs.end(),
                     [&](const TensorType& t) { return t.dtype == c.inputs[0].dtype; });
}

// float16 <-> float32 eight at a time with the F16C instructions (round to nearest
// even, as Half(float)); the scalar conversions finish the tail.
int64_t widen_f16c(const Half* s, float* d, int64_t n) {
  int64_t i = 0;
#ifdef __F16C__
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
#else
  (void)s, (void)d, (void)n;
#endif
  return i;
}

int64_t narrow_f16c(const float* s, Half* d, int64_t n) {
  int64_t i = 0;
#ifdef __F16C__
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
#else
  (void)s, (void)d, (void)n;
#endif
  return i;
}

// float32 -> bfloat16 eight at a time with AVX2 integer ops, bit-exact with
// BFloat16(float): round to nearest even, a NaN stays a quiet NaN.
int64_t narrow_bf16_avx2(const float* s, BFloat16* d, int64_t n) {
  int64_t i = 0;
#ifdef __AVX2__
  const __m256i half = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i magnitude = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(0x40);
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    const __m256i high = _mm256_srli_epi32(u, 16);
    const __m256i even = _mm256_add_epi32(half, _mm256_and_si256(high, one));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, even), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, magnitude), inf);
    const __m256i r = _mm256_blendv_epi8(rounded, _mm256_or_si256(high, quiet), nan);
    // Every lane is below 2^16, so the saturating pack keeps it.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
  }
#else
  (void)s, (void)d, (void)n;
#endif
  return i;
}

template <typename Low> void widen(const Tensor& src, Tensor& dst) {
  const Low* s = src.data<Low>();
  float* d = dst.data<float>();
  parallel_for(src.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
    int64_t i = lo;
    if constexpr (std::is_same_v<Low, Half>) i += widen_f16c(s + lo, d + lo, hi - lo);
    for (; i < hi; ++i) d[i] = static_cast<float>(s[i]);
  });
}

template <typename Low> void narrow(const Tensor& src, Tensor& dst) {
  const float* s = src.data<float>();
  Low* d = dst.data<Low>();
  parallel_for(src.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
    int64_t i = lo;
    if constexpr (std::is_same_v<Low, Half>) i += narrow_f16c(s + lo, d + lo, hi - lo);
    if constexpr (std::is_same_v<Low, BFloat16>) i += narrow_bf16_avx2(s + lo, d + lo, hi - lo);
    for (; i < hi; ++i) d[i] = Low(s[i]);
  });
}

void run_emulated(const KernelCall& kc) {
  const bool bf16 = kc.ctx.inputs[0].dtype == DType::BFloat16;
  std::vector<Tensor> wide_in;
  OpContext wide_ctx{kc.ctx.op, kc.ctx.attrs, kc.ctx.inputs, kc.ctx.node};
  for (size_t i = 0; i < kc.inputs.size(); ++i) {
    Tensor w = Tensor::empty(kc.inputs[i].shape(), DType::Float32);
    bf16 ? widen<BFloat16>(kc.inputs[i], w) : widen<Half>(kc.inputs[i], w);
    wide_in.push_back(w);
    wide_ctx.inputs[i].dtype = DType::Float32;
  }
  std::vector<Tensor> wide_out;
  for (const Tensor& y : kc.outputs) wide_out.push_back(Tensor::empty(y.shape(), DType::Float32));
  // Never this kernel again: the float32 context has no low-precision input.
  const KernelEntry& f32 = select_kernel(wide_ctx, DeviceKind::CPU);
  f32.fn(KernelCall{wide_ctx, wide_in, wide_out});
  for (size_t i = 0; i < kc.outputs.size(); ++i)
    bf16 ? narrow<BFloat16>(wide_out[i], kc.outputs[i]) : narrow<Half>(wide_out[i], kc.outputs[i]);
}

// The casts autocast puts around those ops: float32 <-> bfloat16/float16.
bool is_autocast_cast(const OpContext& c) {
  const DType from = c.inputs[0].dtype, to = c.dtype("dtype");
  return (from == DType::Float32 && is_low(to)) || (is_low(from) && to == DType::Float32);
}

void run_cast(const KernelCall& kc) {
  const DType from = kc.inputs[0].dtype(), to = kc.outputs[0].dtype();
  if (from == DType::Float32)
    to == DType::BFloat16 ? narrow<BFloat16>(kc.inputs[0], kc.outputs[0])
                          : narrow<Half>(kc.inputs[0], kc.outputs[0]);
  else
    from == DType::BFloat16 ? widen<BFloat16>(kc.inputs[0], kc.outputs[0])
                            : widen<Half>(kc.inputs[0], kc.outputs[0]);
}

OpRegistrar low_precision_kernels([] {
  for (const char* op : kLowPrecisionOps)
    register_kernel(op, DeviceKind::CPU, {run_emulated, all_low_precision, "f32-emulated", 5});
  register_kernel("cast", DeviceKind::CPU, {run_cast, is_autocast_cast, "low-precision", 5});
});

}  // namespace

bool native_bf16_allowed() { return native_bf16_flag().load(std::memory_order_relaxed); }
void allow_native_bf16(bool on) { native_bf16_flag().store(on, std::memory_order_relaxed); }

}  // namespace ds::cpu
