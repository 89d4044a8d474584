// Device code of the channels-last max pooling kernels (pool_nhwc_kernels.cpp), in
// a header so the tests can compile it with NVRTC where no GPU is present.
//
// x [N, H, W, C]: one thread per output (forward) or input (backward) element,
// the channel fastest, so a warp reads 32 neighbouring channels of one pixel.
// The backward gathers: each input adds the gradients of the windows whose first
// maximum it is (found again per window), in output order like the reference
// kernel, with no atomics and no float scratch buffer. Windows and the
// first-maximum rule (NaN counts as the maximum) are those of src/ir/ops/pool.cpp.
#pragma once

#include <string>

namespace ds::cuda {

// `type`: the device type of x ("float", "double", "ds_half", "ds_bf16").
inline std::string max_pool_nhwc_source(const std::string& type) {
  return "typedef " + type + " T;\ntypedef ds_io<T> IO;\ntypedef IO::acc A;\n" + R"(
struct PoolNhwcArgs {
  long long n, h, w, c, oh, ow;
  int kh, kw, sh, sw, ph, pw, dh, dw;
};
#define DS_FOR(i, count) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; \
                              i < (count); i += (long long)gridDim.x * blockDim.x)

// The in-image position y * w + x of window (oy, ox)'s first maximum in channel c
// of image `img`, or -1 without taps (positions are 32-bit: the host checks h * w).
__device__ int ds_nhwc_argmax(const T* img, const PoolNhwcArgs& g, int oy, int ox, long long c) {
  const int h = (int)g.h, w = (int)g.w;
  const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  int best = -1;
  A bv = A(0);
  for (int ky = 0; ky < g.kh; ++ky) {
    const int y = y0 + ky * g.dh;
    if (y < 0 || y >= h) continue;
    for (int kx = 0; kx < g.kw; ++kx) {
      const int x = x0 + kx * g.dw;
      if (x < 0 || x >= w) continue;
      const A v = IO::load(img[(long long)(y * w + x) * g.c + c]);
      if (best < 0 || v > bv || (v != v && bv == bv)) { best = y * w + x; bv = v; }
    }
  }
  return best;
}

extern "C" __global__ void ds_max_pool_nhwc(const T* __restrict__ x, T* __restrict__ y,
                                            PoolNhwcArgs g) {
  DS_FOR(i, g.n * g.oh * g.ow * g.c) {
    const long long c = i % g.c, pixel = i / g.c, n = pixel / (g.oh * g.ow);
    const int r = (int)(pixel - n * g.oh * g.ow);
    const int oy = r / (int)g.ow, ox = r - oy * (int)g.ow;
    const T* img = x + n * g.h * g.w * g.c;
    const int at = ds_nhwc_argmax(img, g, oy, ox, c);
    y[i] = IO::store(at < 0 ? A(-DS_INF) : IO::load(img[(long long)at * g.c + c]));
  }
}

// The outputs along one axis whose window can hold input position `in`: [lo, hi].
__device__ void ds_nhwc_span(int in, int pad, int k, int s, int d, long long out, int* lo,
                             int* hi) {
  const int first = in + pad - (k - 1) * d;  // o * s >= first
  *lo = first <= 0 ? 0 : (first + s - 1) / s;
  *hi = (in + pad) / s;
  if (*hi > out - 1) *hi = (int)(out - 1);
}

extern "C" __global__ void ds_max_pool_nhwc_backward(const T* __restrict__ x,
                                                     const T* __restrict__ gy,
                                                     T* __restrict__ gx, PoolNhwcArgs g) {
  DS_FOR(i, g.n * g.h * g.w * g.c) {
    const long long c = i % g.c, pixel = i / g.c, n = pixel / (g.h * g.w);
    const int pos = (int)(pixel - n * g.h * g.w);
    const int iy = pos / (int)g.w, ix = pos - iy * (int)g.w;
    int ylo, yhi, xlo, xhi;
    ds_nhwc_span(iy, g.ph, g.kh, g.sh, g.dh, g.oh, &ylo, &yhi);
    ds_nhwc_span(ix, g.pw, g.kw, g.sw, g.dw, g.ow, &xlo, &xhi);
    const T* img = x + n * g.h * g.w * g.c;
    const T* grad = gy + n * g.oh * g.ow * g.c;
    A s = A(0);
    for (int oy = ylo; oy <= yhi; ++oy) {
      if ((iy + g.ph - oy * g.sh) % g.dh != 0) continue;  // between two dilated taps
      for (int ox = xlo; ox <= xhi; ++ox) {
        if ((ix + g.pw - ox * g.sw) % g.dw != 0) continue;
        if (ds_nhwc_argmax(img, g, oy, ox, c) == pos)
          s += IO::load(grad[((long long)oy * g.ow + ox) * g.c + c]);
      }
    }
    gx[i] = IO::store(s);
  }
}
)";
}

}  // namespace ds::cuda
