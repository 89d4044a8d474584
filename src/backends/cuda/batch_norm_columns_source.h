// Device code of batch_norm_train / batch_norm_train_backward over x [M, C]
// (no spatial extent: channels-last activations [N, H, W, C] reshaped to
// [N*H*W, C]), in a header so the tests can compile it with NVRTC where no GPU
// is present (kernels: batch_norm_columns_kernels.cpp).
//
// A channel is a column with stride C, so the [N, C, H*W] kernels (one block
// per channel walking its values) would read one element per row. Here x is read
// as packs of V neighbouring channels (16 bytes where C and the pointers allow;
// a pack never crosses a row since V divides C): a block of 256 threads is PB
// pack columns x 256/PB rows, PB = 32 or, for rows of fewer packs, the whole row
// (then a warp reads whole consecutive rows).
//   ds_bnc_stats        per (row chunk, channel): sum(x - k), sum((x - k)^2), k =
//   ds_bnc_grad_stats   the channel's first value; or sum(dy), sum(dy * (x - mean));
//                       partial [chunks, C, 2]
//   ds_bnc_finalize     a warp per channel adds the chunks in float64: the
//   ds_bnc_grad_finalize  statistics (or dweight, dbias) and the coefficients of
//                       the elementwise pass, coef [4, C]
//   ds_bnc_normalize    y = (x - mu) * scale + shift
//   ds_bnc_grad_input   dx = a_dy * dy + a_xc * (x - mu) + a_0
// The arithmetic (shifted sums, float64 combination, the rounding of mu folded
// into the shift) is that of batch_norm_train_source.h.
#pragma once

#include <string>

#include "backends/cuda/batch_norm_train_source.h"

namespace ds::cuda {

// `type`: the device type of x ("float", "double", "ds_half", "ds_bf16"); `vec`:
// values per pack.
inline std::string batch_norm_columns_source(const std::string& type, int vec) {
  return "typedef " + type + " T;\ntypedef ds_io<T> IO;\ntypedef IO::acc A;\n#define V " +
         std::to_string(vec) + "\nstruct __align__(V * sizeof(T)) Pack { T v[V]; };\n" +
         batch_norm_epilogue_source() + R"(
struct __align__(V * sizeof(A)) APack { A v[V]; };

// Pack column p (channels p*V ..) of block column blockIdx.x, rows [begin, end) of
// chunk blockIdx.y; the block's threads are pb pack columns x (256 / pb) rows.
// grad: `a` is dy and the shift is mean; else `a` is x and the shift x[0, c].
template <bool grad>
__device__ void ds_bnc_sums(const Pack* __restrict__ a, const Pack* __restrict__ x,
                            const A* __restrict__ mean, A* __restrict__ partial, long long rows,
                            long long packs_per_row, int pb, long long rows_per_chunk) {
  __shared__ A sh[256 * 2 * V];
  const int t = threadIdx.x, col = t % pb, lane_row = t / pb, lanes = 256 / pb;
  const long long p = (long long)blockIdx.x * pb + col;
  const long long begin = blockIdx.y * rows_per_chunk;
  const long long end = min(rows, begin + rows_per_chunk);
  A s1[V], s2[V], k[V];
#pragma unroll
  for (int e = 0; e < V; ++e) s1[e] = s2[e] = k[e] = A(0);
  if (p < packs_per_row) {
    if (grad) {
#pragma unroll
      for (int e = 0; e < V; ++e) k[e] = mean[p * V + e];
    } else if (rows > 0) {
      const Pack first = x[p];
#pragma unroll
      for (int e = 0; e < V; ++e) k[e] = IO::load(first.v[e]);
    }
#pragma unroll 4
    for (long long r = begin + lane_row; r < end; r += lanes) {
      const long long i = r * packs_per_row + p;
      const Pack va = a[i];
      if (grad) {
        const Pack vx = x[i];
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const A g = IO::load(va.v[e]);
          s1[e] += g;
          s2[e] += g * (IO::load(vx.v[e]) - k[e]);
        }
      } else {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const A v = IO::load(va.v[e]) - k[e];
          s1[e] += v;
          s2[e] += v * v;
        }
      }
    }
  }
#pragma unroll
  for (int e = 0; e < V; ++e) {
    sh[(t * V + e) * 2] = s1[e];
    sh[(t * V + e) * 2 + 1] = s2[e];
  }
  __syncthreads();
  if (lane_row == 0 && p < packs_per_row) {
    for (int j = 1; j < lanes; ++j)
#pragma unroll
      for (int e = 0; e < V; ++e) {
        s1[e] += sh[((j * pb + col) * V + e) * 2];
        s2[e] += sh[((j * pb + col) * V + e) * 2 + 1];
      }
    const long long channels = packs_per_row * V;
#pragma unroll
    for (int e = 0; e < V; ++e) {
      A* out = partial + (blockIdx.y * channels + p * V + e) * 2;
      out[0] = s1[e];
      out[1] = s2[e];
    }
  }
}

extern "C" __global__ void ds_bnc_stats(const Pack* __restrict__ x, A* __restrict__ partial,
                                        long long rows, long long packs_per_row, int pb,
                                        long long rows_per_chunk) {
  ds_bnc_sums<false>(x, x, nullptr, partial, rows, packs_per_row, pb, rows_per_chunk);
}

extern "C" __global__ void ds_bnc_grad_stats(const Pack* __restrict__ dy,
                                             const Pack* __restrict__ x,
                                             const A* __restrict__ mean, A* __restrict__ partial,
                                             long long rows, long long packs_per_row, int pb,
                                             long long rows_per_chunk) {
  ds_bnc_sums<true>(dy, x, mean, partial, rows, packs_per_row, pb, rows_per_chunk);
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

// coef [4, C]: mu, scale, shift, (unused).
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
  coef[c] = mu;
  coef[channels + c] = (A)scale;
  coef[2 * channels + c] = (A)((b ? (double)b[c] : 0.0) - (mean - (double)mu) * scale);
}

// The coefficient packs of pack i's channels (component j of coef [4, C]).
__device__ __forceinline__ APack ds_bnc_coef(const A* coef, int j, long long channels,
                                             long long c0) {
  return reinterpret_cast<const APack*>(coef + j * channels)[c0 / V];
}

// The first channel of pack i: 32-bit arithmetic where the values allow (a 64-bit
// modulo per pack slows the elementwise passes down).
__device__ __forceinline__ long long ds_bnc_first_channel(long long i, long long packs,
                                                          long long channels) {
  const long long at = i * V, n = packs * V;
  return n <= 0xffffffffLL ? (long long)((unsigned)at % (unsigned)channels) : at % channels;
}

extern "C" __global__ void ds_bnc_normalize(const Pack* __restrict__ x,
                                            const A* __restrict__ coef, Pack* __restrict__ y,
                                            long long packs, long long channels,
                                            const Pack* __restrict__ res, int relu) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < packs;
       i += (long long)gridDim.x * blockDim.x) {
    const long long c0 = ds_bnc_first_channel(i, packs, channels);
    const APack mu = ds_bnc_coef(coef, 0, channels, c0), sc = ds_bnc_coef(coef, 1, channels, c0),
                sh = ds_bnc_coef(coef, 2, channels, c0);
    const Pack p = x[i];
    Pack o;
#pragma unroll
    for (int e = 0; e < V; ++e) o.v[e] = IO::store((IO::load(p.v[e]) - mu.v[e]) * sc.v[e] + sh.v[e]);
    if (res || relu) ds_bn_epilogue(&o, res ? res[i] : p, res != 0, relu);
    y[i] = o;
  }
}

// coef [4, C]: mu, a_dy, a_xc, a_0.
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
  coef[c] = mean[c];
  coef[channels + c] = (A)scale;
  coef[2 * channels + c] = (A)(-scale * invstd * invstd * sdyxc / m);
  coef[3 * channels + c] = (A)(-scale * sdy / m);
}

extern "C" __global__ void ds_bnc_grad_input(const Pack* __restrict__ dy,
                                             const Pack* __restrict__ x,
                                             const A* __restrict__ coef, Pack* __restrict__ dx,
                                             long long packs, long long channels) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < packs;
       i += (long long)gridDim.x * blockDim.x) {
    const long long c0 = ds_bnc_first_channel(i, packs, channels);
    const APack mu = ds_bnc_coef(coef, 0, channels, c0), ady = ds_bnc_coef(coef, 1, channels, c0),
                axc = ds_bnc_coef(coef, 2, channels, c0), a0 = ds_bnc_coef(coef, 3, channels, c0);
    const Pack g = dy[i], p = x[i];
    Pack o;
#pragma unroll
    for (int e = 0; e < V; ++e)
      o.v[e] = IO::store(ady.v[e] * IO::load(g.v[e]) + axc.v[e] * (IO::load(p.v[e]) - mu.v[e]) +
                         a0.v[e]);
    dx[i] = o;
  }
}
)";
}

}  // namespace ds::cuda
