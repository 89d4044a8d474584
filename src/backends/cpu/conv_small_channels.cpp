// conv2d and conv2d_backward_weight of a first layer: 3x3, stride 1, few input
// channels (grayscale or RGB images), against shifted copies of the zero-padded
// input (which stay in cache).
// Backward weights: oneDNN runs it as a GEMM whose reduction is the whole batch
// (N*OH*OW) but whose result is only C*9 values per filter: measured 5-15 GFLOP/s
// on 2 threads in the Fashion-MNIST step (bench/NOTES.md). Here each (output
// channel, input channel) pair keeps its nine tap sums in registers and streams
// the gradient planes once, 8 pixels at a time.
// Forward: oneDNN's plain-layout kernel is a GEMM over an im2col copy (1.05 ms
// CPU for Fashion-MNIST's 128x1x28x28 -> 32 channels), its blocked one needs a
// 12.8 MB reorder of the output; here each output plane is written once, 32
// pixels at a time from the nine taps' weights held in registers.
#if defined(__AVX2__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/cpu/avx2_lanes.h"
#include "core/thread_pool.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cpu {
namespace {

using ops::ConvGeom;

constexpr int64_t kMaxChannels = 4;

bool fits(const ConvGeom& g) {
  return g.groups == 1 && g.kh == 3 && g.kw == 3 && g.stride.h == 1 && g.stride.w == 1 &&
         g.dil.h == 1 && g.dil.w == 1 && g.c <= kMaxChannels && g.n > 0 && g.c > 0 && g.o > 0 &&
         g.oh > 0 && g.ow > 0;
}

// x[n, c] zero-padded and shifted left by kx = 0, 1, 2, in rows of ow floats:
// tap (ky, kx) of output pixel i = y * ow + x is then element i + ky * ow of copy
// kx, so each plane is one flat loop over oh * ow pixels (no per-row tails; a row
// of 28 is 3.5 vectors). 8 zeros end each copy for the loads of the last vector.
struct ShiftedInput {
  int64_t rows, ow, copy;  // copy: the floats of one shifted copy with its slack
  Tensor data;             // [n * c][3][copy], from the pooled allocator
  const float* base;       // data's floats (read in the inner loops)
  const float* shifted(int64_t plane, int64_t kx) const { return base + (plane * 3 + kx) * copy; }
};

// Every float of the copies is written here (zeros included), in parallel: a
// zero-filled std::vector was a fresh 1.3 MB mapping per call for Fashion-MNIST
// (page faults, then a serial fill before the parallel copy).
ShiftedInput shift_input(const ConvGeom& g, const float* x) {
  const int64_t rows = g.oh + 2;
  const int64_t copy = rows * g.ow + 8;
  Tensor data = Tensor::empty({g.n * g.c * 3 * copy}, DType::Float32);
  float* base = data.data<float>();
  ShiftedInput s{rows, g.ow, copy, data, base};
  parallel_for(g.n * g.c, 16, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      for (int64_t kx = 0; kx < 3; ++kx) {
        float* dst = base + (p * 3 + kx) * s.copy;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t iy = r - g.pad.h;
          float* out = dst + r * g.ow;
          if (iy < 0 || iy >= g.h) {
            std::fill(out, out + g.ow, 0.0f);
            continue;
          }
          const float* src = x + (p * g.h + iy) * g.w;
          for (int64_t ox = 0; ox < g.ow; ++ox) {
            const int64_t ix = ox + kx - g.pad.w;
            out[ox] = ix >= 0 && ix < g.w ? src[ix] : 0.0f;
          }
        }
        std::fill(dst + rows * g.ow, dst + s.copy, 0.0f);
      }
  });
  return s;
}

// Lanes [0, k) set: the last, partial vector of a gradient plane.
// gw[o, c, ky, kx] = sum over n, y, x of gy[n, o, y, x] * xpad[n, c, y + ky, x + kx]
// for the (o, c) pairs [first, last), image by image: an image's shifted input
// stays in L1 while its filters' gradient planes stream through once (looping over
// the batch per filter re-read the whole 1.3 MB shifted input from L3 32 times).
void filter_grads(const ConvGeom& g, const ShiftedInput& xs, const float* gy, int64_t first,
                  int64_t last, float* gw) {
  // float32 sums per image, totalled in float64: one float32 sum over a batch of
  // 128 28x28 planes measured 2e-4 relative error against the reference.
  std::vector<double> total(static_cast<size_t>((last - first) * 9), 0.0);
  const int64_t pixels = g.oh * g.ow, full = pixels / 8 * 8;
  const __m256i tail = first_lanes(pixels - full);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oc = first; oc < last; ++oc) {
      const int64_t o = oc / g.c, c = oc % g.c;
      __m256 acc[9];
      for (auto& a : acc) a = _mm256_setzero_ps();
      const float* gp = gy + (n * g.o + o) * pixels;
      const float* x0 = xs.shifted(n * g.c + c, 0);
      const float* x1 = xs.shifted(n * g.c + c, 1);
      const float* x2 = xs.shifted(n * g.c + c, 2);
      auto taps = [&](__m256 gv, int64_t i) {
        for (int ky = 0; ky < 3; ++ky) {
          const int64_t at = i + ky * g.ow;
          acc[ky * 3] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(x0 + at), acc[ky * 3]);
          acc[ky * 3 + 1] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(x1 + at), acc[ky * 3 + 1]);
          acc[ky * 3 + 2] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(x2 + at), acc[ky * 3 + 2]);
        }
      };
      for (int64_t i = 0; i < full; i += 8) taps(_mm256_loadu_ps(gp + i), i);
      if (full < pixels) taps(_mm256_maskload_ps(gp + full, tail), full);
      double* t9 = total.data() + (oc - first) * 9;
      for (int t = 0; t < 9; ++t) t9[t] += horizontal_sum(acc[t]);
    }
  for (int64_t i = 0; i < (last - first) * 9; ++i) gw[first * 9 + i] = static_cast<float>(total[i]);
}

void backward_weight(const ConvGeom& g, const float* x, const float* gy, float* gw) {
  const ShiftedInput xs = shift_input(g, x);
  parallel_for(g.o * g.c, 1, [&](int64_t b, int64_t e) { filter_grads(g, xs, gy, b, e, gw); });
}

// V 8-pixel vectors of output plane (n, o) from pixel i: V independent FMA chains,
// the accumulators in registers (V is a constant so none spill to the stack).
template <int V>
void forward_vectors(const ConvGeom& g, const ShiftedInput& xs, const float* w, __m256 bias,
                     int64_t n, int64_t o, int64_t i, __m256 (&acc)[V]) {
  for (int v = 0; v < V; ++v) acc[v] = bias;
  for (int64_t c = 0; c < g.c; ++c) {
    const float* w9 = w + (o * g.c + c) * 9;
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx) {
        const __m256 wv = _mm256_set1_ps(w9[ky * 3 + kx]);
        const float* src = xs.shifted(n * g.c + c, kx) + i + ky * g.ow;
        for (int v = 0; v < V; ++v) acc[v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(src + 8 * v), acc[v]);
      }
  }
}

// y[n, o] = bias[o] + sum over c, ky, kx of w[o, c, ky, kx] * xpad[n, c, y + ky, x + kx]:
// one output plane, 32 pixels per step, then 8 at a time (the last one masked;
// its loads past the plane stay inside the copy's rows and slack).
void forward_plane(const ConvGeom& g, const ShiftedInput& xs, const float* w, float bias,
                   int64_t n, int64_t o, float* y) {
  const int64_t pixels = g.oh * g.ow;
  const __m256 b = _mm256_set1_ps(bias);
  int64_t i = 0;
  for (; i + 32 <= pixels; i += 32) {
    __m256 acc[4];
    forward_vectors<4>(g, xs, w, b, n, o, i, acc);
    for (int v = 0; v < 4; ++v) _mm256_storeu_ps(y + i + 8 * v, acc[v]);
  }
  for (; i < pixels; i += 8) {
    __m256 acc[1];
    forward_vectors<1>(g, xs, w, b, n, o, i, acc);
    if (i + 8 <= pixels)
      _mm256_storeu_ps(y + i, acc[0]);
    else
      _mm256_maskstore_ps(y + i, first_lanes(pixels - i), acc[0]);
  }
}

void forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y) {
  const ShiftedInput xs = shift_input(g, x);
  const int64_t pixels = g.oh * g.ow;
  parallel_for(g.n * g.o, std::max<int64_t>(1, 16384 / pixels), [&](int64_t b, int64_t e) {
    for (int64_t no = b; no < e; ++no) {
      const int64_t n = no / g.o, o = no % g.o;
      forward_plane(g, xs, w, bias ? bias[o] : 0.0f, n, o, y + no * pixels);
    }
  });
}

bool float32(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != DType::Float32) return false;
  return true;
}

const OpRegistrar reg([] {
  register_kernel("conv2d", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     forward(ops::conv2d_geom(k.ctx), k.inputs[0].data<float>(),
                             k.inputs[1].data<float>(),
                             k.inputs.size() > 2 ? k.inputs[2].data<float>() : nullptr,
                             k.outputs[0].data<float>());
                   },
                   [](const OpContext& c) { return float32(c) && fits(ops::conv2d_geom(c)); },
                   "direct-3x3-few-channels", 25});
  register_kernel(
      "conv2d_backward_weight", DeviceKind::CPU,
      {[](const KernelCall& k) {
         backward_weight(ops::conv2d_backward_weight_geom(k.ctx), k.inputs[0].data<float>(),
                         k.inputs[1].data<float>(), k.outputs[0].data<float>());
       },
       [](const OpContext& c) { return float32(c) && fits(ops::conv2d_backward_weight_geom(c)); },
       "direct-3x3-few-channels", 25});
});

}  // namespace
}  // namespace ds::cpu
#endif
