// Device code of the channels-last max pooling kernels (pool_nhwc_kernels.cpp), in
// a header so the tests can compile it with NVRTC where no GPU is present.
//
// x [N, H, W, C]: one thread per output element (or per 16-byte pack of channels,
// the _vec kernels), the channel fastest, so a warp reads neighbouring channels of
// one pixel. Indices are 32-bit (the host checks
// the element counts): 64-bit divisions per element made these kernels several
// times slower. The backward over channel packs runs in two passes (see
// ds_max_pool_nhwc_taps_vec); otherwise it adds each output's gradient at its window's
// first maximum with atomics (like pool_kernels.cpp's NCHW kernel): into the zeroed
// output (float32/float64) or a zeroed float buffer rounded afterwards. Windows and
// the first-maximum rule (NaN counts as the maximum) are those of src/ir/ops/pool.cpp.
#pragma once

#include <string>

namespace ds::cuda {

// `type`: the device type of x ("float", "double", "ds_half", "ds_bf16").
inline std::string max_pool_nhwc_source(const std::string& type) {
  return "typedef " + type + " T;\ntypedef ds_io<T> IO;\ntypedef IO::acc A;\ntypedef " +
         (type == "double" ? "double" : "float") + " S;\n" + R"(
struct PoolNhwcArgs {
  int n, h, w, c, oh, ow;
  int kh, kw, sh, sw, ph, pw, dh, dw;
};
#define DS_FOR(i, count) for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (count); \
                              i += gridDim.x * blockDim.x)

// Output i as its image n, window (oy, ox) and channel c.
__device__ __forceinline__ void ds_nhwc_output(const PoolNhwcArgs& g, int i, int* n, int* oy,
                                               int* ox, int* c) {
  const int pixel = i / g.c;
  *c = i - pixel * g.c;
  const int per_image = g.oh * g.ow;
  *n = pixel / per_image;
  const int r = pixel - *n * per_image;
  *oy = r / g.ow;
  *ox = r - *oy * g.ow;
}

// The element index of window (oy, ox)'s first maximum in channel c of image n,
// or -1 without taps.
__device__ int ds_nhwc_argmax(const T* x, const PoolNhwcArgs& g, int n, int oy, int ox, int c) {
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  const int base = n * g.h * g.w;
  int best = -1;
  A bv = A(0);
  for (int ky = 0; ky < g.kh; ++ky) {
    const int y = y0 + ky * g.dh;
    if (y < 0 || y >= g.h) continue;
    for (int kx = 0; kx < g.kw; ++kx) {
      const int xx = x0 + kx * g.dw;
      if (xx < 0 || xx >= g.w) continue;
      const int at = (base + y * g.w + xx) * g.c + c;
      const A v = IO::load(x[at]);
      if (best < 0 || v > bv || (v != v && bv == bv)) { best = at; bv = v; }
    }
  }
  return best;
}

extern "C" __global__ void ds_max_pool_nhwc(const T* __restrict__ x, T* __restrict__ y,
                                            PoolNhwcArgs g) {
  DS_FOR(i, g.n * g.oh * g.ow * g.c) {
    int n, oy, ox, c;
    ds_nhwc_output(g, i, &n, &oy, &ox, &c);
    const int at = ds_nhwc_argmax(x, g, n, oy, ox, c);
    y[i] = IO::store(at < 0 ? A(-DS_INF) : IO::load(x[at]));
  }
}

// acc: gx itself (S = T) or a float buffer of gx's size, zeroed by the host.
extern "C" __global__ void ds_max_pool_nhwc_backward(const T* __restrict__ x,
                                                     const T* __restrict__ gy,
                                                     S* __restrict__ acc, PoolNhwcArgs g) {
  DS_FOR(i, g.n * g.oh * g.ow * g.c) {
    int n, oy, ox, c;
    ds_nhwc_output(g, i, &n, &oy, &ox, &c);
    const int at = ds_nhwc_argmax(x, g, n, oy, ox, c);
    if (at >= 0) atomicAdd(acc + at, (S)IO::load(gy[i]));
  }
}

extern "C" __global__ void ds_max_pool_nhwc_round(const S* __restrict__ acc, T* __restrict__ out,
                                                  int n) {
  DS_FOR(i, n) out[i] = IO::store(acc[i]);
}

// Over packs of V channels (16 bytes) where C is a multiple
// of V and the tensors are 16-byte aligned (the host checks): one pack load per
// tap and the index arithmetic once per pack (the scalar kernels ran at ~480 GB/s
// on ResNet-50's bf16 stem pooling). Per channel the same first-maximum rule.
#define V (16 / (int)sizeof(T))
union PoolPack {
  uint4 bits;
  T v[V];
};

// Pack i's image n, window (oy, ox) and first channel c; its taps' element
// indices are (base + y * w + x) * c + c0.
__device__ __forceinline__ void ds_nhwc_pack(const PoolNhwcArgs& g, int i, int* n, int* oy,
                                             int* ox, int* c0) {
  PoolNhwcArgs packs = g;
  packs.c = g.c / V;
  ds_nhwc_output(packs, i, n, oy, ox, c0);
  *c0 *= V;
}

// Pack i's window: per channel its first maximum m[e] and the element index
// best[e] (and, with `tap`, its tap ky * kw + kx); false without taps.
__device__ __forceinline__ bool ds_nhwc_pack_argmax(const T* x, const PoolNhwcArgs& g, int i,
                                                    A* m, int* best, int* tap = nullptr) {
  int n, oy, ox, c0;
  ds_nhwc_pack(g, i, &n, &oy, &ox, &c0);
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw, base = n * g.h * g.w;
  bool any = false;
  for (int ky = 0; ky < g.kh; ++ky) {
    const int yy = y0 + ky * g.dh;
    if (yy < 0 || yy >= g.h) continue;
    for (int kx = 0; kx < g.kw; ++kx) {
      const int xx = x0 + kx * g.dw;
      if (xx < 0 || xx >= g.w) continue;
      const int at = (base + yy * g.w + xx) * g.c + c0;
      PoolPack p;
      p.bits = *(const uint4*)(x + at);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const A v = IO::load(p.v[e]);
        if (!any || v > m[e] || (v != v && m[e] == m[e])) {
          m[e] = v;
          best[e] = at + e;
          if (tap) tap[e] = ky * g.kw + kx;
        }
      }
      any = true;
    }
  }
  return any;
}

extern "C" __global__ void ds_max_pool_nhwc_vec(const T* __restrict__ x, T* __restrict__ y,
                                                PoolNhwcArgs g) {
  DS_FOR(i, g.n * g.oh * g.ow * (g.c / V)) {
    A m[V];
    int best[V];  // unused here: the compiler drops it
    const bool any = ds_nhwc_pack_argmax(x, g, i, m, best);
    PoolPack o;
#pragma unroll
    for (int e = 0; e < V; ++e) o.v[e] = IO::store(any ? m[e] : A(-DS_INF));
    *(uint4*)(y + (long long)i * V) = o.bits;
  }
}

// The backward over packs in two passes, without atomics or a float buffer:
// 1. per output pack, each channel's first-maximum tap (ky * kw + kx; 255
//    without taps) as a byte;
// 2. per x pack, the gradients of the windows holding its pixel whose tap is
//    that pixel, summed in A (windows in order) and written once in T.
// Pass 2 reads a byte and a gradient per window instead of the window's taps
// (a gather that recomputed each window's argmax was 3x slower than atomics).
extern "C" __global__ void ds_max_pool_nhwc_taps_vec(const T* __restrict__ x,
                                                     unsigned char* __restrict__ taps,
                                                     PoolNhwcArgs g) {
  DS_FOR(i, g.n * g.oh * g.ow * (g.c / V)) {
    A m[V];
    int best[V], tap[V];
    const bool any = ds_nhwc_pack_argmax(x, g, i, m, best, tap);
#pragma unroll
    for (int e = 0; e < V; ++e) taps[(long long)i * V + e] = any ? (unsigned char)tap[e] : 255;
  }
}

extern "C" __global__ void ds_max_pool_nhwc_backward_taps_vec(
    const unsigned char* __restrict__ taps, const T* __restrict__ gy, T* __restrict__ gx,
    PoolNhwcArgs g) {
  const int packs = g.c / V;
  DS_FOR(i, g.n * g.h * g.w * packs) {
    const int pixel = i / packs, pack = i - pixel * packs;
    const int n = pixel / (g.h * g.w), r = pixel - n * g.h * g.w;
    const int y = r / g.w, xx = r - y * g.w;
    A sum[V];
#pragma unroll
    for (int e = 0; e < V; ++e) sum[e] = A(0);
    for (int ky = 0; ky < g.kh; ++ky) {
      const int ty = y + g.ph - ky * g.dh;  // oy * sh for the window whose tap ky is row y
      if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue;
      for (int kx = 0; kx < g.kw; ++kx) {
        const int tx = xx + g.pw - kx * g.dw;
        if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue;
        const long long window =
            ((long long)(n * g.oh + ty / g.sh) * g.ow + tx / g.sw) * packs + pack;
        const unsigned char want = (unsigned char)(ky * g.kw + kx);
        PoolPack d;
        d.bits = *(const uint4*)(gy + window * V);
#pragma unroll
        for (int e = 0; e < V; ++e)
          if (taps[window * V + e] == want) sum[e] += IO::load(d.v[e]);
      }
    }
    PoolPack o;
#pragma unroll
    for (int e = 0; e < V; ++e) o.v[e] = IO::store(sum[e]);
    *(uint4*)(gx + (long long)i * V) = o.bits;
  }
}
)";
}

}  // namespace ds::cuda
