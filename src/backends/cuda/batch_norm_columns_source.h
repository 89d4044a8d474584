// Device code of batch_norm_train / batch_norm_train_backward over x [M, C]
// (no spatial extent: channels-last activations [N, H, W, C] reshaped to
// [N*H*W, C]), in a header so the tests can compile it with NVRTC where no GPU
// is present (kernels: batch_norm_columns_kernels.cpp).
//
// A channel is a column with stride C, so the [N, C, H*W] kernels (one block
// per channel walking its values) would read one element per row. Here a block
// is 32 channels x 8 rows: a warp reads 32 neighbouring channels of a row.
//   ds_bnc_partial      per (row chunk, channel): sum(x - k), sum((x - k)^2) with
//                       k = the channel's first value (forward), or sum(dy) and
//                       sum(dy * (x - mean)) (backward); partial [chunks, C, 2]
//   ds_bnc_finalize     a warp per channel adds the chunks in float64: the
//                       statistics (or dweight, dbias) and the per-channel
//                       coefficients of the elementwise pass, coef [C, 4]
//   ds_bnc_normalize    y = (x - mu) * scale + shift
//   ds_bnc_grad_input   dx = a_dy * dy + a_xc * (x - mu) + a_0
// The elementwise passes move packs of V values (16 bytes where C and the
// pointers allow; a pack never crosses a row since V divides C).
// The arithmetic (shifted sums, float64 combination, the rounding of mu folded
// into the shift) is that of batch_norm_train_source.h.
#pragma once

#include <string>

namespace ds::cuda {

// `type`: the device type of x ("float", "double", "ds_half", "ds_bf16"); `vec`:
// values per pack of the elementwise passes.
inline std::string batch_norm_columns_source(const std::string& type, int vec) {
  return "typedef " + type + " T;\ntypedef ds_io<T> IO;\ntypedef IO::acc A;\n#define V " +
         std::to_string(vec) + R"(
struct __align__(V * sizeof(T)) Pack { T v[V]; };
// Block (32, 8) over channels [32 * blockIdx.x, +32) and rows [begin, end) of chunk
// blockIdx.y. grad: `a` is dy and the shift is mean[c]; else `a` is x and the
// shift is x[0, c].
template <bool grad>
__device__ void ds_bnc_sums(const T* __restrict__ a, const T* __restrict__ x,
                            const A* __restrict__ mean, A* __restrict__ partial, long long rows,
                            long long channels, long long rows_per_chunk) {
  __shared__ A s1[8][33], s2[8][33];
  const long long c = blockIdx.x * 32LL + threadIdx.x;
  const long long begin = blockIdx.y * rows_per_chunk;
  const long long end = min(rows, begin + rows_per_chunk);
  A t1 = A(0), t2 = A(0);
  if (c < channels) {
    const A k = grad ? mean[c] : (rows > 0 ? IO::load(x[c]) : A(0));
#pragma unroll 4
    for (long long r = begin + threadIdx.y; r < end; r += 8) {
      const long long i = r * channels + c;
      if (grad) {
        const A g = IO::load(a[i]);
        t1 += g;
        t2 += g * (IO::load(x[i]) - k);
      } else {
        const A v = IO::load(a[i]) - k;
        t1 += v;
        t2 += v * v;
      }
    }
  }
  s1[threadIdx.y][threadIdx.x] = t1;
  s2[threadIdx.y][threadIdx.x] = t2;
  __syncthreads();
  if (threadIdx.y == 0 && c < channels) {
    for (int j = 1; j < 8; ++j) {
      t1 += s1[j][threadIdx.x];
      t2 += s2[j][threadIdx.x];
    }
    A* p = partial + (blockIdx.y * channels + c) * 2;
    p[0] = t1;
    p[1] = t2;
  }
}

extern "C" __global__ void ds_bnc_stats(const T* __restrict__ x, A* __restrict__ partial,
                                        long long rows, long long channels,
                                        long long rows_per_chunk) {
  ds_bnc_sums<false>(x, x, nullptr, partial, rows, channels, rows_per_chunk);
}

extern "C" __global__ void ds_bnc_grad_stats(const T* __restrict__ dy, const T* __restrict__ x,
                                             const A* __restrict__ mean, A* __restrict__ partial,
                                             long long rows, long long channels,
                                             long long rows_per_chunk) {
  ds_bnc_sums<true>(dy, x, mean, partial, rows, channels, rows_per_chunk);
}

// Channel c's two partial sums added over the chunks by one warp, in float64.
__device__ bool ds_bnc_combine(const A* partial, long long channels, unsigned chunks,
                               long long* c, double* t1, double* t2) {
  const int lane = threadIdx.x & 31;
  *c = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32;
  if (*c >= channels) return false;
  double a = 0, b = 0;
  for (unsigned i = lane; i < chunks; i += 32) {
    const A* p = partial + (i * channels + *c) * 2;
    a += (double)p[0];
    b += (double)p[1];
  }
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
  }
  *t1 = a;
  *t2 = b;
  return lane == 0;
}

// The channel of element i: 32-bit arithmetic where n allows (a 64-bit modulo
// per element slows the elementwise passes down).
__device__ __forceinline__ long long ds_bnc_channel(long long i, long long n, long long channels) {
  return n <= 0xffffffffLL ? (long long)((unsigned)i % (unsigned)channels) : i % channels;
}

// coef[c] = {mu, scale, shift, unused}.
extern "C" __global__ void ds_bnc_finalize(const T* __restrict__ x, const A* __restrict__ partial,
                                           const A* __restrict__ w, const A* __restrict__ b,
                                           A* __restrict__ mean_out, A* __restrict__ var_out,
                                           A* __restrict__ coef, long long rows, long long channels,
                                           unsigned chunks, double eps) {
  long long c;
  double s1, s2;
  if (!ds_bnc_combine(partial, channels, chunks, &c, &s1, &s2)) return;
  const double m = (double)rows;
  const double k = rows > 0 ? (double)IO::load(x[c]) : 0.0;
  const double dm = s1 / m;                                    // mean - k (NaN without rows)
  const double var = fmax(s2 / m - dm * dm, 0.0) + 0.0 * dm;  // NaN stays NaN
  const double mean = k + dm;
  mean_out[c] = (A)mean;
  var_out[c] = (A)var;
  const A mu = (A)mean;
  const double scale = (w ? (double)w[c] : 1.0) / sqrt(var + eps);
  coef[c * 4] = mu;
  coef[c * 4 + 1] = (A)scale;
  coef[c * 4 + 2] = (A)((b ? (double)b[c] : 0.0) - (mean - (double)mu) * scale);
}

extern "C" __global__ void ds_bnc_normalize(const Pack* __restrict__ x,
                                            const A* __restrict__ coef, Pack* __restrict__ y,
                                            long long packs, long long channels) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < packs;
       i += (long long)gridDim.x * blockDim.x) {
    const A* k = coef + ds_bnc_channel(i * V, packs * V, channels) * 4;
    const Pack p = x[i];
    Pack o;
#pragma unroll
    for (int e = 0; e < V; ++e)
      o.v[e] = IO::store((IO::load(p.v[e]) - k[4 * e]) * k[4 * e + 1] + k[4 * e + 2]);
    y[i] = o;
  }
}

// coef[c] = {mu, a_dy, a_xc, a_0}.
extern "C" __global__ void ds_bnc_grad_finalize(const A* __restrict__ partial,
                                                const A* __restrict__ mean,
                                                const A* __restrict__ var, const A* __restrict__ w,
                                                A* __restrict__ dw, A* __restrict__ db,
                                                A* __restrict__ coef, long long rows,
                                                long long channels, unsigned chunks, double eps) {
  long long c;
  double sdy, sdyxc;
  if (!ds_bnc_combine(partial, channels, chunks, &c, &sdy, &sdyxc)) return;
  const double m = (double)rows;
  const double invstd = 1.0 / sqrt((double)var[c] + eps);
  db[c] = (A)sdy;
  dw[c] = (A)(sdyxc * invstd);
  const double scale = (w ? (double)w[c] : 1.0) * invstd;
  coef[c * 4] = mean[c];
  coef[c * 4 + 1] = (A)scale;
  coef[c * 4 + 2] = (A)(-scale * invstd * invstd * sdyxc / m);
  coef[c * 4 + 3] = (A)(-scale * sdy / m);
}

extern "C" __global__ void ds_bnc_grad_input(const Pack* __restrict__ dy,
                                             const Pack* __restrict__ x,
                                             const A* __restrict__ coef, Pack* __restrict__ dx,
                                             long long packs, long long channels) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < packs;
       i += (long long)gridDim.x * blockDim.x) {
    const A* k = coef + ds_bnc_channel(i * V, packs * V, channels) * 4;
    const Pack g = dy[i], p = x[i];
    Pack o;
#pragma unroll
    for (int e = 0; e < V; ++e)
      o.v[e] = IO::store(k[4 * e + 1] * IO::load(g.v[e]) +
                         k[4 * e + 2] * (IO::load(p.v[e]) - k[4 * e]) + k[4 * e + 3]);
    dx[i] = o;
  }
}
)";
}

}  // namespace ds::cuda
