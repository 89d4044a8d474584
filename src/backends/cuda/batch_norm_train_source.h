// Device code of the CUDA batch_norm_train kernels (batch_norm_train_kernels.cpp),
// in a header so the tests can compile it with NVRTC where no GPU is present.
//
// x [N, C, H*W] is read as packs of V values (16 bytes where H*W allows). Each
// pass runs on a grid of (channel, chunk) blocks, a chunk being a range of the
// channel's N*H*W/V packs, so a channel of 256*56*56 values spreads over many
// SMs and 2048 channels of 256*7*7 still fill the device:
//   ds_bnt_stats         per block: sum(x - k) and sum((x - k)^2), k = the channel's
//                        first value (a shift that keeps the float32 sums small)
//   ds_bnt_normalize     per block: combines its channel's partial sums in float64,
//                        chunk 0 writes mean and var; then y = (x - mean) * scale + shift
//   ds_bnt_grad_stats    per block: sum(dy) and sum(dy * (x - mean))
//   ds_bnt_grad_input    combines them; chunk 0 writes dweight and dbias; then dx
// Partial sums are [C, chunks, 2] in the accumulator type A.
#pragma once

#include <string>

namespace ds::cuda {

// `type`: the device type of x ("float", "double", "ds_half", "ds_bf16"); `vec`:
// values per pack (H*W and the pointers' alignment allow it).
// Device code of both batch-norm sources (after their T, IO, A, V and Pack): the
// forward's epilogue, y rounded to T, plus the residual, rounded again, then relu
// (NaN stays NaN, like the relu op).
inline const char* batch_norm_epilogue_source() {
  return R"(
__device__ __forceinline__ void ds_bn_epilogue(Pack* o, const Pack& r, bool residual, int relu) {
#pragma unroll
  for (int e = 0; e < V; ++e) {
    A v = IO::load(o->v[e]);
    if (residual) v = IO::load(IO::store(v + IO::load(r.v[e])));
    if (relu && v <= A(0)) v = A(0);
    o->v[e] = IO::store(v);
  }
}
)";
}

inline std::string batch_norm_train_source(const std::string& type, int vec) {
  return "typedef " + type + " T;\ntypedef ds_io<T> IO;\ntypedef IO::acc A;\n#define V " +
         std::to_string(vec) + "\nstruct __align__(V * sizeof(T)) Pack { T v[V]; };\n" +
         batch_norm_epilogue_source() + R"(
struct ds_bnt_add { template <typename X> __device__ X operator()(X a, X b) const { return a + b; } };

// Walks a block's packs j = begin + threadIdx.x, += stride through (plane n, offset
// s) without a division per step.
struct PackWalk {
  unsigned j, n, s, dn, ds, plane;
  __device__ PackWalk(unsigned begin, unsigned stride, unsigned plane_packs) : plane(plane_packs) {
    j = begin + threadIdx.x;
    n = j / plane;
    s = j - n * plane;
    dn = stride / plane;
    ds = stride - dn * plane;
  }
  __device__ long long at(long long channels, long long c) const {
    return ((long long)n * channels + c) * plane + s;
  }
  __device__ void next(unsigned stride) {
    j += stride;
    n += dn;
    s += ds;
    if (s >= plane) { s -= plane; ++n; }
  }
};

// Packs loaded per thread before their values are used (memory-level
// parallelism): the statistics passes keep about 64 bytes per tensor in flight,
// so narrow packs (odd H*W, 14x14 bf16) move as many bytes as 16-byte ones; in
// the elementwise passes registers grow with the unroll (ptxas keeps the store
// addresses) and occupancy falls, so more than 8 narrow packs gains nothing.
#define DS_BNT_UNROLL (V * sizeof(T) >= 16 ? 4 : 64 / (V * sizeof(T)))
#define DS_BNT_MAP_UNROLL (V * sizeof(T) >= 8 ? 4 : 8)

// A block's two sums over its packs: sum(a - center) and sum((a - center)^2), or
// with kGrad (a = dy, b = x) sum(dy) and sum(dy * (x - center)).
template <bool kGrad>
__device__ void ds_bnt_partial(const Pack* __restrict__ a, const Pack* __restrict__ b, A* partial,
                               long long channels, unsigned plane_packs, unsigned packs,
                               unsigned per_block, A center) {
  const long long c = blockIdx.x;
  const unsigned begin = blockIdx.y * per_block;
  const unsigned end = min(packs, begin + per_block);
  const unsigned stride = blockDim.x;
  PackWalk w(begin, stride, plane_packs);
  A s1 = 0, s2 = 0;
  while (w.j < end) {
    Pack pa[DS_BNT_UNROLL], pb[DS_BNT_UNROLL];
    bool ok[DS_BNT_UNROLL];
#pragma unroll
    for (int u = 0; u < DS_BNT_UNROLL; ++u) {
      ok[u] = w.j < end;
      if (ok[u]) {
        const long long i = w.at(channels, c);
        pa[u] = a[i];
        if (kGrad) pb[u] = b[i];
      }
      w.next(stride);
    }
#pragma unroll
    for (int u = 0; u < DS_BNT_UNROLL; ++u) {
      if (!ok[u]) continue;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        if (kGrad) {  // a = dy, b = x
          const A dy = IO::load(pa[u].v[e]);
          s1 += dy;
          s2 += dy * (IO::load(pb[u].v[e]) - center);
        } else {
          const A d = IO::load(pa[u].v[e]) - center;
          s1 += d;
          s2 += d * d;
        }
      }
    }
  }
  s1 = ds_block_reduce(s1, ds_bnt_add(), A(0));
  s2 = ds_block_reduce(s2, ds_bnt_add(), A(0));
  if (threadIdx.x == 0) {
    A* p = partial + (c * gridDim.y + blockIdx.y) * 2;
    p[0] = s1;
    p[1] = s2;
  }
}

// The elementwise passes take the blocks in the reverse order of the statistics
// pass, so they start on the values that pass read last (still in L2).
__device__ long long ds_bnt_rev_channel() { return gridDim.x - 1 - blockIdx.x; }
__device__ unsigned ds_bnt_rev_chunk() { return gridDim.y - 1 - blockIdx.y; }

// The channel's partial sums added in float64 by the whole block.
__device__ void ds_bnt_combine(const A* partial, long long c, unsigned chunks, double* t1,
                               double* t2) {
  const A* p = partial + c * chunks * 2;
  double s1 = 0, s2 = 0;
  for (unsigned i = threadIdx.x; i < chunks; i += blockDim.x) {
    s1 += (double)p[2 * i];
    s2 += (double)p[2 * i + 1];
  }
  *t1 = ds_block_reduce(s1, ds_bnt_add(), 0.0);
  *t2 = ds_block_reduce(s2, ds_bnt_add(), 0.0);
}

// The channel's shift: its first value (0 for a channel without values).
__device__ A ds_bnt_shift(const Pack* x, long long c, unsigned plane_packs, unsigned packs) {
  return packs > 0 ? IO::load(reinterpret_cast<const T*>(x)[c * plane_packs * V]) : A(0);
}

extern "C" __global__ void ds_bnt_stats(const Pack* __restrict__ x, A* __restrict__ partial,
                                        long long channels, unsigned plane_packs, unsigned packs,
                                        unsigned per_block) {
  const A k = ds_bnt_shift(x, blockIdx.x, plane_packs, packs);
  ds_bnt_partial<false>(x, x, partial, channels, plane_packs, packs, per_block, k);
}

extern "C" __global__ void ds_bnt_normalize(const Pack* __restrict__ x, const A* __restrict__ partial,
                                            const A* __restrict__ w, const A* __restrict__ b,
                                            Pack* __restrict__ y, A* __restrict__ mean_out,
                                            A* __restrict__ var_out, long long channels,
                                            unsigned plane_packs, unsigned packs, unsigned per_block,
                                            unsigned stat_chunks, double eps,
                                            const Pack* __restrict__ res, int relu) {
  const long long c = ds_bnt_rev_channel();
  const unsigned chunk = ds_bnt_rev_chunk();
  double s1, s2;
  ds_bnt_combine(partial, c, stat_chunks, &s1, &s2);
  const double m = (double)packs * V;
  const double k = (double)ds_bnt_shift(x, c, plane_packs, packs);
  const double dm = s1 / m;                       // mean - k (NaN without values)
  const double var = fmax(s2 / m - dm * dm, 0.0) + 0.0 * dm;  // NaN stays NaN
  const double mean = k + dm;
  if (chunk == 0 && threadIdx.x == 0) {
    mean_out[c] = (A)mean;
    var_out[c] = (A)var;
  }
  const A mu = (A)mean;
  const double scale = (w ? (double)w[c] : 1.0) / sqrt(var + eps);
  const A a_scale = (A)scale;
  // (x - mu) * scale + shift, the rounding of mu folded into the shift.
  const A a_shift = (A)((b ? (double)b[c] : 0.0) - (mean - (double)mu) * scale);
  const unsigned begin = chunk * per_block;
  const unsigned end = min(packs, begin + per_block);
  PackWalk walk(begin, blockDim.x, plane_packs);
  while (walk.j < end) {
    PackWalk store = walk;  // the stores walk the loaded packs again (no index array)
    Pack p[DS_BNT_MAP_UNROLL], r[DS_BNT_MAP_UNROLL];
#pragma unroll
    for (int u = 0; u < DS_BNT_MAP_UNROLL; ++u) {
      if (walk.j < end) {
        p[u] = x[walk.at(channels, c)];
        if (res) r[u] = res[walk.at(channels, c)];
      }
      walk.next(blockDim.x);
    }
#pragma unroll
    for (int u = 0; u < DS_BNT_MAP_UNROLL; ++u) {
      if (store.j < end) {
        Pack o;
#pragma unroll
        for (int e = 0; e < V; ++e) o.v[e] = IO::store((IO::load(p[u].v[e]) - mu) * a_scale + a_shift);
        if (res || relu) ds_bn_epilogue(&o, r[u], res != 0, relu);
        y[store.at(channels, c)] = o;
      }
      store.next(blockDim.x);
    }
  }
}

extern "C" __global__ void ds_bnt_grad_stats(const Pack* __restrict__ dy, const Pack* __restrict__ x,
                                             const A* __restrict__ mean, A* __restrict__ partial,
                                             long long channels, unsigned plane_packs, unsigned packs,
                                             unsigned per_block) {
  ds_bnt_partial<true>(dy, x, partial, channels, plane_packs, packs, per_block, mean[blockIdx.x]);
}

extern "C" __global__ void ds_bnt_grad_input(const Pack* __restrict__ dy, const Pack* __restrict__ x,
                                             const A* __restrict__ mean, const A* __restrict__ var,
                                             const A* __restrict__ w, const A* __restrict__ partial,
                                             Pack* __restrict__ dx, A* __restrict__ dw,
                                             A* __restrict__ db, long long channels,
                                             unsigned plane_packs, unsigned packs, unsigned per_block,
                                             unsigned stat_chunks, double eps) {
  const long long c = ds_bnt_rev_channel();
  const unsigned chunk = ds_bnt_rev_chunk();
  double sdy, sdyxc;
  ds_bnt_combine(partial, c, stat_chunks, &sdy, &sdyxc);
  const double m = (double)packs * V;
  const double invstd = 1.0 / sqrt((double)var[c] + eps);
  if (chunk == 0 && threadIdx.x == 0) {
    db[c] = (A)sdy;
    dw[c] = (A)(sdyxc * invstd);
  }
  // dx = scale * (dy - sdy / M - (x - mean) * invstd^2 * sdyxc / M)
  const double scale = (w ? (double)w[c] : 1.0) * invstd;
  const A a_dy = (A)scale;
  const A a_xc = (A)(-scale * invstd * invstd * sdyxc / m);
  const A a_0 = (A)(-scale * sdy / m);
  const A mu = mean[c];
  const unsigned begin = chunk * per_block;
  const unsigned end = min(packs, begin + per_block);
  PackWalk walk(begin, blockDim.x, plane_packs);
  while (walk.j < end) {
    PackWalk store = walk;
    Pack g[DS_BNT_MAP_UNROLL], p[DS_BNT_MAP_UNROLL];
#pragma unroll
    for (int u = 0; u < DS_BNT_MAP_UNROLL; ++u) {
      if (walk.j < end) {
        const long long i = walk.at(channels, c);
        g[u] = dy[i];
        p[u] = x[i];
      }
      walk.next(blockDim.x);
    }
#pragma unroll
    for (int u = 0; u < DS_BNT_MAP_UNROLL; ++u) {
      if (store.j < end) {
        Pack o;
#pragma unroll
        for (int e = 0; e < V; ++e)
          o.v[e] = IO::store(a_dy * IO::load(g[u].v[e]) + a_xc * (IO::load(p[u].v[e]) - mu) + a_0);
        dx[store.at(channels, c)] = o;
      }
      store.next(blockDim.x);
    }
  }
}
)";
}

}  // namespace ds::cuda
