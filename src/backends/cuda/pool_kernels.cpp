// 2-D pooling on the GPU (NCHW): max/avg/adaptive-avg pooling and their backward
// ops, global average pooling. Forward: one thread per output. Max-pool backward:
// one thread per output adding its gradient at the window's argmax (atomics, like
// PyTorch). Average backward: one thread per input element gathering from the
// windows that contain it (no atomics, deterministic sums). Windows, divisors and the first-maximum
// rule (NaN counts as the maximum) are those of the reference kernels in
// src/ir/ops/pool.cpp.
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ir/ops/conv_geometry.h"
#include "ds/cuda.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

// The geometry as the kernels see it; the same layout in device code below.
struct PoolArgs {
  long long nc, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  int count_include_pad;
};

const char* const kPool = R"(
struct PoolArgs {
  long long nc, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  int count_include_pad;
};
#define DS_FOR(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
                          i += (long long)gridDim.x * blockDim.x)

// The input index of window (oy, ox)'s first maximum in plane p, or -1 without
// taps. In-plane positions are 32-bit (the host checks h * w < 2^31): 64-bit
// divisions and products made the kernel twice as slow.
__device__ int ds_window_argmax(const T* p, const PoolArgs& g, int oy, int ox) {
  const int h = (int)g.h, w = (int)g.w, kh = (int)g.kh, kw = (int)g.kw;
  const int y0 = oy * (int)g.sh - (int)g.ph, x0 = ox * (int)g.sw - (int)g.pw;
  const int dh = (int)g.dh, dw = (int)g.dw;
  int best = -1;
  A bv = A(0);
  for (int ky = 0; ky < kh; ++ky) {
    const int y = y0 + ky * dh;
    if (y < 0 || y >= h) continue;
    for (int kx = 0; kx < kw; ++kx) {
      const int x = x0 + kx * dw;
      if (x < 0 || x >= w) continue;
      const A v = IO::load(p[y * w + x]);
      if (best < 0 || v > bv || (v != v && bv == bv)) { best = y * w + x; bv = v; }
    }
  }
  return best;
}

// Output i as (plane, oy, ox): one 64-bit division, the rest in 32 bits.
__device__ __forceinline__ void ds_output_at(const PoolArgs& g, long long i, long long* plane,
                                             int* oy, int* ox) {
  const long long per_plane = g.oh * g.ow;
  *plane = i / per_plane;
  const int r = (int)(i - *plane * per_plane);
  *oy = r / (int)g.ow;
  *ox = r - *oy * (int)g.ow;
}

extern "C" __global__ void ds_max_pool(const T* __restrict__ x, T* __restrict__ y, PoolArgs g) {
  DS_FOR(i, g.nc * g.oh * g.ow) {
    long long plane;
    int oy, ox;
    ds_output_at(g, i, &plane, &oy, &ox);
    const T* p = x + plane * g.h * g.w;
    const int at = ds_window_argmax(p, g, oy, ox);
    y[i] = IO::store(at < 0 ? A(-DS_INF) : IO::load(p[at]));
  }
}

// The outputs along one axis whose window holds input position `in` (before the
// stride check): [lo, hi].
__device__ void ds_span(long long in, long long pad, long long k, long long s, long long d,
                        long long out, long long* lo, long long* hi) {
  const long long first = in + pad - (k - 1) * d;  // o * s >= first
  *lo = first <= 0 ? 0 : (first + s - 1) / s;
  *hi = (in + pad) / s;
  if (*hi > out - 1) *hi = out - 1;
}

// Each output adds its gradient at its window's first maximum (S: float, or double
// for float64; float16/bfloat16 accumulate in a float buffer rounded afterwards).
extern "C" __global__ void ds_max_pool_backward(const T* __restrict__ x, const T* __restrict__ gy,
                                                S* __restrict__ acc, PoolArgs g) {
  DS_FOR(i, g.nc * g.oh * g.ow) {
    long long plane;
    int oy, ox;
    ds_output_at(g, i, &plane, &oy, &ox);
    const int at = ds_window_argmax(x + plane * g.h * g.w, g, oy, ox);
    if (at >= 0) atomicAdd(acc + plane * g.h * g.w + at, (S)IO::load(gy[i]));
  }
}

extern "C" __global__ void ds_round_to(const S* __restrict__ acc, T* __restrict__ out, long long n) {
  DS_FOR(i, n) out[i] = IO::store(acc[i]);
}

// count_include_pad: the window clipped to the padded input; else the taps inside.
__device__ A ds_avg_divisor(const PoolArgs& g, long long oy, long long ox) {
  const long long ys = oy * g.sh - g.ph, xs = ox * g.sw - g.pw;
  if (g.count_include_pad) {
    const long long ye = min(ys + (g.kh - 1) * g.dh + 1, g.h + g.ph);
    const long long xe = min(xs + (g.kw - 1) * g.dw + 1, g.w + g.pw);
    return A((ye - ys) * (xe - xs));
  }
  long long ny = 0, nx = 0;
  for (long long k = 0; k < g.kh; ++k) ny += (ys + k * g.dh >= 0 && ys + k * g.dh < g.h);
  for (long long k = 0; k < g.kw; ++k) nx += (xs + k * g.dw >= 0 && xs + k * g.dw < g.w);
  return A(ny * nx);
}

extern "C" __global__ void ds_avg_pool(const T* __restrict__ x, T* __restrict__ y, PoolArgs g) {
  DS_FOR(i, g.nc * g.oh * g.ow) {
    const long long ox = i % g.ow, oy = i / g.ow % g.oh, plane = i / (g.oh * g.ow);
    const T* p = x + plane * g.h * g.w;
    A s = A(0);
    for (long long ky = 0; ky < g.kh; ++ky) {
      const long long yy = oy * g.sh - g.ph + ky * g.dh;
      if (yy < 0 || yy >= g.h) continue;
      for (long long kx = 0; kx < g.kw; ++kx) {
        const long long xx = ox * g.sw - g.pw + kx * g.dw;
        if (xx >= 0 && xx < g.w) s += IO::load(p[yy * g.w + xx]);
      }
    }
    y[i] = IO::store(s / ds_avg_divisor(g, oy, ox));
  }
}

extern "C" __global__ void ds_avg_pool_backward(const T* __restrict__ gy, T* __restrict__ gx,
                                                PoolArgs g) {
  DS_FOR(i, g.nc * g.h * g.w) {
    const long long ix = i % g.w, iy = i / g.w % g.h, plane = i / (g.h * g.w);
    long long y0, y1, x0, x1;
    ds_span(iy, g.ph, g.kh, g.sh, g.dh, g.oh, &y0, &y1);
    ds_span(ix, g.pw, g.kw, g.sw, g.dw, g.ow, &x0, &x1);
    A acc = A(0);
    for (long long oy = y0; oy <= y1; ++oy) {
      if ((iy + g.ph - oy * g.sh) % g.dh != 0) continue;
      for (long long ox = x0; ox <= x1; ++ox) {
        if ((ix + g.pw - ox * g.sw) % g.dw != 0) continue;
        acc += IO::load(gy[(plane * g.oh + oy) * g.ow + ox]) / ds_avg_divisor(g, oy, ox);
      }
    }
    gx[i] = IO::store(acc);
  }
}

// PyTorch's adaptive bins: [floor(i * in / out), ceil((i + 1) * in / out)).
__device__ long long ds_bin_start(long long i, long long in, long long out) { return i * in / out; }
__device__ long long ds_bin_end(long long i, long long in, long long out) {
  return ((i + 1) * in + out - 1) / out;
}

extern "C" __global__ void ds_adaptive_avg_pool(const T* __restrict__ x, T* __restrict__ y,
                                                PoolArgs g) {
  DS_FOR(i, g.nc * g.oh * g.ow) {
    const long long ox = i % g.ow, oy = i / g.ow % g.oh, plane = i / (g.oh * g.ow);
    const T* p = x + plane * g.h * g.w;
    const long long y0 = ds_bin_start(oy, g.h, g.oh), y1 = ds_bin_end(oy, g.h, g.oh);
    const long long x0 = ds_bin_start(ox, g.w, g.ow), x1 = ds_bin_end(ox, g.w, g.ow);
    A s = A(0);
    for (long long yy = y0; yy < y1; ++yy)
      for (long long xx = x0; xx < x1; ++xx) s += IO::load(p[yy * g.w + xx]);
    y[i] = IO::store(s / A((y1 - y0) * (x1 - x0)));
  }
}

extern "C" __global__ void ds_adaptive_avg_pool_backward(const T* __restrict__ gy,
                                                         T* __restrict__ gx, PoolArgs g) {
  DS_FOR(i, g.nc * g.h * g.w) {
    const long long ix = i % g.w, iy = i / g.w % g.h, plane = i / (g.h * g.w);
    // Bins holding iy: floor(iy * oh / h) <= oy <= ceil((iy + 1) * oh / h) - 1.
    const long long y0 = iy * g.oh / g.h, y1 = min(((iy + 1) * g.oh + g.h - 1) / g.h, g.oh);
    const long long x0 = ix * g.ow / g.w, x1 = min(((ix + 1) * g.ow + g.w - 1) / g.w, g.ow);
    A acc = A(0);
    for (long long oy = y0; oy < y1; ++oy) {
      const long long by0 = ds_bin_start(oy, g.h, g.oh), by1 = ds_bin_end(oy, g.h, g.oh);
      if (iy < by0 || iy >= by1) continue;
      for (long long ox = x0; ox < x1; ++ox) {
        const long long bx0 = ds_bin_start(ox, g.w, g.ow), bx1 = ds_bin_end(ox, g.w, g.ow);
        if (ix < bx0 || ix >= bx1) continue;
        acc += IO::load(gy[(plane * g.oh + oy) * g.ow + ox]) / A((by1 - by0) * (bx1 - bx0));
      }
    }
    gx[i] = IO::store(acc);
  }
}

// One warp per (n, c) plane (ResNet's 7x7 planes would leave most of a block idle).
extern "C" __global__ void ds_global_avg_pool(const T* __restrict__ x, T* __restrict__ y,
                                              long long planes, long long plane) {
  const long long w = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= planes) return;  // whole warps leave together
  const T* p = x + w * plane;
  A s = A(0);
  for (long long j = lane; j < plane; j += 32) s += IO::load(p[j]);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) y[w] = IO::store(plane ? s / A(plane) : A(0));  // empty plane: 0 like the CPU
}
)";

std::string source(DType t) {
  return "typedef " + device_type(t) + " T;\ntypedef ds_io<T> IO;\ntypedef IO::acc A;\ntypedef " +
         (t == DType::Float64 ? "double" : "float") + " S;\n" + kPool;
}

PoolArgs args_of(const ops::PoolGeom& g, bool count_include_pad) {
  return {g.n * g.c, g.h,       g.w,       g.oh,      g.ow,      g.kh, g.kw, g.stride.h,
          g.stride.w, g.pad.h, g.pad.w, g.dil.h, g.dil.w, count_include_pad ? 1 : 0};
}

// Grid-stride launch over n items of kernel `name` with args (in, out, geometry).
void run(const KernelCall& kc, const char* name, int64_t n, PoolArgs g) {
  if (n == 0) return;
  const int dev = call_device(kc);
  const void* in = kc.inputs[0].raw_data();
  void* out = kc.outputs[0].raw_data();
  void* args[] = {&in, &out, &g};
  launch(dev, get_kernel(dev, source(kc.outputs[0].dtype()), name), grid_for(n, dev), 256, args,
         0, kc.ctx.op.name.c_str());
}

// Scatter of each output's gradient to its argmax: into the zeroed output
// (float32/float64) or a zeroed float buffer rounded into the output.
void max_pool_backward(const KernelCall& kc) {
  Tensor& gx = kc.outputs[0];
  if (gx.numel() == 0) return;
  const int dev = call_device(kc);
  const DType t = gx.dtype();
  const bool direct = t == DType::Float32 || t == DType::Float64;
  std::shared_ptr<void> scratch;
  void* acc = gx.raw_data();
  if (!direct) {
    scratch = allocate(static_cast<size_t>(gx.numel()) * sizeof(float), dev);
    acc = scratch.get();
  }
  set_device(dev);
  DS_CUDA_CHECK(cudaMemsetAsync(acc, 0, static_cast<size_t>(gx.numel()) *
                                            (direct ? dtype_size(t) : sizeof(float)),
                                stream_of(dev)));
  PoolArgs g = args_of(ops::pool_geom(kc.ctx, kc.inputs[0].shape()), false);
  const void* xp = kc.inputs[0].raw_data();
  const void* gp = kc.inputs[1].raw_data();
  const std::string src = source(t);
  const int64_t outputs = kc.inputs[1].numel();
  if (outputs > 0) {
    void* args[] = {&xp, &gp, &acc, &g};
    launch(dev, get_kernel(dev, src, "ds_max_pool_backward"), grid_for(outputs, dev), 256, args,
           0, "max_pool2d_backward");
  }
  if (!direct) {
    const void* ap = acc;
    void* op = gx.raw_data();
    long long n = gx.numel();
    void* args[] = {&ap, &op, &n};
    launch(dev, get_kernel(dev, src, "ds_round_to"), grid_for(n, dev), 256, args, 0,
           "max_pool2d_backward");
  }
}

bool float_io(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  return nvrtc_float(c.inputs[0].dtype);
}

bool avg_count_include_pad(const OpContext& c) { return c.b("count_include_pad"); }

// Max pooling indexes within a plane in 32 bits (input and output planes).
bool max_pool_ok(const OpContext& c) {
  if (!float_io(c) || ops::is_channels_last(c)) return false;  // NHWC: pool_nhwc_kernels.cpp
  const ops::PoolGeom g = ops::pool_geom(c, c.inputs[0].shape);
  return g.h * g.w < (int64_t{1} << 31) && g.oh * g.ow < (int64_t{1} << 31);
}

// Adaptive pooling: a geometry with only the extents set.
PoolArgs adaptive_args(const Shape& x, const Shape& y) {
  PoolArgs a{};
  a.nc = x[0] * x[1], a.h = x[2], a.w = x[3], a.oh = y[2], a.ow = y[3];
  return a;
}

const OpRegistrar reg([] {
  register_kernel("max_pool2d", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     const auto g = ops::pool_geom(kc.ctx, kc.inputs[0].shape());
                     run(kc, "ds_max_pool", kc.outputs[0].numel(), args_of(g, false));
                   },
                   max_pool_ok, "nvrtc", 10});
  register_kernel("max_pool2d_backward", DeviceKind::CUDA,
                  {max_pool_backward, max_pool_ok, "nvrtc", 10});
  register_kernel("avg_pool2d", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     const auto g = ops::pool_geom(kc.ctx, kc.inputs[0].shape());
                     run(kc, "ds_avg_pool", kc.outputs[0].numel(),
                         args_of(g, avg_count_include_pad(kc.ctx)));
                   },
                   float_io, "nvrtc", 10});
  register_kernel("avg_pool2d_backward", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     const auto g = ops::pool_geom(kc.ctx, kc.outputs[0].shape());
                     run(kc, "ds_avg_pool_backward", kc.outputs[0].numel(),
                         args_of(g, avg_count_include_pad(kc.ctx)));
                   },
                   float_io, "nvrtc", 10});
  register_kernel("adaptive_avg_pool2d", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     run(kc, "ds_adaptive_avg_pool", kc.outputs[0].numel(),
                         adaptive_args(kc.inputs[0].shape(), kc.outputs[0].shape()));
                   },
                   float_io, "nvrtc", 10});
  register_kernel("adaptive_avg_pool2d_backward", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     run(kc, "ds_adaptive_avg_pool_backward", kc.outputs[0].numel(),
                         adaptive_args(kc.outputs[0].shape(), kc.inputs[0].shape()));
                   },
                   float_io, "nvrtc", 10});
  register_kernel("global_avg_pool2d", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     const Tensor& x = kc.inputs[0];
                     long long planes = kc.outputs[0].numel(), plane = x.dim(2) * x.dim(3);
                     if (planes == 0) return;
                     const int dev = call_device(kc);
                     const void* xp = x.raw_data();
                     void* yp = kc.outputs[0].raw_data();
                     void* args[] = {&xp, &yp, &planes, &plane};
                     const int64_t blocks = (planes * 32 + 255) / 256;
                     DS_CHECK(blocks <= 0x7fffffff, ShapeError, kc.ctx.where(), planes,
                              " planes exceed the CUDA grid");
                     launch(dev, get_kernel(dev, source(x.dtype()), "ds_global_avg_pool"),
                            dim3(static_cast<unsigned>(blocks)), 256, args, 0, "global_avg_pool2d");
                   },
                   float_io, "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
