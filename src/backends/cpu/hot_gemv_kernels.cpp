// linear and fused_linear (base linear, relu/leaky_relu/no activation) at batch 1
// in float32: a GEMV whose rows split over a hot run's workers (core/hot_run.h)
// for weights from kMinSplitBytes up to the serial-op limit
// (runtime/serial_ops.h); smaller ones gain nothing from a second core and run
// whole; larger ones keep the threaded BLAS kernels (bench/NOTES.md, issue 3,
// "Hot runs"; bench/cpp/hot_gemv_lab.cpp).
// Outside a hot run (eager ops) the kernel runs on the caller alone, as fast as
// the BLAS GEMV it replaces: both stream the weights at one core's bandwidth.
#include <algorithm>

#include "backends/cpu/avx2_lanes.h"
#include "backends/cpu/hot_gemv.h"
#include "core/hot_run.h"
#include "ds/op.h"
#include "runtime/serial_ops.h"

namespace ds::cpu {
namespace {

// Below this many bytes of weights one core finishes before a split pays off.
constexpr int64_t kMinSplitBytes = 256 * 1024;
// A chunk of rows per task: small enough that a worker arriving late still
// takes a share, large enough that claiming it (one atomic) is noise.
constexpr int64_t kGemvChunkBytes = 64 * 1024;

float finish(float dot, int64_t r, const GemvEpilogue& ep) {
  if (ep.bias) dot += ep.bias[r];
  if (ep.residual) dot += ep.residual[r];
  switch (ep.act) {
    case ops::Act::Relu:
      return dot > 0.0f || dot != dot ? dot : 0.0f;
    case ops::Act::LeakyRelu:
      return dot > 0.0f ? dot : dot * ep.alpha;
    default:
      return dot;
  }
}

#if defined(__AVX2__) && defined(__FMA__)
// R rows at once (x loaded once for all); every row is summed in the same order
// for any R: two 8-wide accumulators over 16 columns, then 8, then a masked tail.
template <int R>
void dot_rows(const float* w, const float* x, int64_t in, float* dots) {
  __m256 a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= in; k += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
    for (int r = 0; r < R; ++r) {
      a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * in + k), x0, a0[r]);
      a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * in + k + 8), x1, a1[r]);
    }
  }
  if (k + 8 <= in) {
    const __m256 x0 = _mm256_loadu_ps(x + k);
    for (int r = 0; r < R; ++r) a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * in + k), x0, a0[r]);
    k += 8;
  }
  if (k < in) {
    const __m256i mask = first_lanes(in - k);
    const __m256 x0 = _mm256_maskload_ps(x + k, mask);
    for (int r = 0; r < R; ++r)
      a1[r] = _mm256_fmadd_ps(_mm256_maskload_ps(w + r * in + k, mask), x0, a1[r]);
  }
  for (int r = 0; r < R; ++r) dots[r] = horizontal_sum(_mm256_add_ps(a0[r], a1[r]));
}
#else
template <int R>
void dot_rows(const float* w, const float* x, int64_t in, float* dots) {
  for (int r = 0; r < R; ++r) {
    float s = 0.0f;
    for (int64_t k = 0; k < in; ++k) s += w[r * in + k] * x[k];
    dots[r] = s;
  }
}
#endif

// Rows [b, e) of the GEMV.
void gemv_block(const float* w, const float* x, float* y, int64_t b, int64_t e, int64_t in,
                const GemvEpilogue& ep) {
  float dots[4];
  int64_t r = b;
  for (; r + 4 <= e; r += 4) {
    dot_rows<4>(w + r * in, x, in, dots);
    for (int i = 0; i < 4; ++i) y[r + i] = finish(dots[i], r + i, ep);
  }
  for (; r < e; ++r) {
    dot_rows<1>(w + r * in, x, in, dots);
    y[r] = finish(dots[0], r, ep);
  }
}

// The weight bytes of a batch-1 float32 linear layer this kernel can run (one
// row of x, an epilogue it applies), or -1.
double gemv_weight_bytes(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != DType::Float32) return -1;
  if (c.op.name == "fused_linear") {
    if (c.s("base") != "linear") return -1;
    const ops::Act act = ops::parse_activation(c.s("activation"));
    if (act != ops::Act::None && act != ops::Act::Relu && act != ops::Act::LeakyRelu) return -1;
  }
  const Shape &x = c.inputs[0].shape, &w = c.inputs[1].shape;
  if (w.size() != 2 || x.empty() || x.back() != w[1]) return -1;
  for (size_t i = 0; i + 1 < x.size(); ++i)
    if (x[i] != 1) return -1;
  return static_cast<double>(w[0]) * static_cast<double>(w[1]) * sizeof(float);
}

// Small layers: one block on the caller. The BLAS libraries' fixed cost per call
// dominates there (OpenBLAS sgemm, 1x512 -> 10: ~2 us; this loop: ~0.2 us).
bool runs_whole(const OpContext& c) {
  const double bytes = gemv_weight_bytes(c);
  return bytes >= 0 && bytes < kMinSplitBytes;
}

// Up to the serial-op limit (larger layers keep the threaded BLAS kernels).
bool splits(const OpContext& c) {
  const double bytes = gemv_weight_bytes(c);
  return bytes >= kMinSplitBytes && bytes / 2 < kSerialMaxFlops && bytes < kSerialMaxBytes;
}

void run(const KernelCall& kc, bool split) {
  const OpContext& c = kc.ctx;
  const Tensor &x = kc.inputs[0], &w = kc.inputs[1];
  const bool fused = c.op.name == "fused_linear";
  const bool has_bias = fused ? c.b("has_bias") : kc.inputs.size() > 2;
  GemvEpilogue ep;
  ep.bias = has_bias ? kc.inputs[2].data<float>() : nullptr;
  if (fused) {
    if (c.b("has_residual")) ep.residual = kc.inputs.back().data<float>();
    ep.act = ops::parse_activation(c.s("activation"));
    ep.alpha = static_cast<float>(c.f("alpha"));
  }
  gemv_rows(w.data<float>(), x.data<float>(), kc.outputs[0].data<float>(), w.dim(0), w.dim(1), ep,
            split ? gemv_chunk_rows(w.dim(1)) : w.dim(0));
}

const OpRegistrar reg([] {
  // Above oneDNN (20) and OpenBLAS (10), which keep every other size.
  const std::string split_impl = std::string("gemv") + kHotSplitSuffix;
  auto whole = [](const KernelCall& k) { run(k, false); };
  auto split = [](const KernelCall& k) { run(k, true); };
  for (const char* op : {"linear", "fused_linear"}) {
    register_kernel(op, DeviceKind::CPU, {whole, runs_whole, "gemv", 30});
    register_kernel(op, DeviceKind::CPU, {split, splits, split_impl, 30});
  }
});

}  // namespace

int64_t gemv_chunk_rows(int64_t in) {
  const int64_t rows = kGemvChunkBytes / (std::max<int64_t>(in, 1) * 4);
  return std::max<int64_t>(4, (rows + 3) / 4 * 4);
}

void gemv_rows(const float* w, const float* x, float* y, int64_t rows, int64_t in,
               const GemvEpilogue& ep, int64_t chunk_rows) {
  hot_split(rows, chunk_rows, [&](int64_t b, int64_t e) { gemv_block(w, x, y, b, e, in, ep); });
}

}  // namespace ds::cpu
