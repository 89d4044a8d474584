// Device code of the CUDA axis reductions (axis_reduce_kernels.cpp), in a header
// so the tests can compile it with NVRTC where no GPU is present.
//
// x is seen as merged dims (adjacent kept or reduced axes joined, size-1 dims
// dropped). Two shapes of pass 1, picked by the innermost merged dim:
//   ds_rows_*     innermost reduced (rows, NCHW over {0, 2, 3}, all axes): an
//                 output's reduced values are runs of `run_units` contiguous units;
//                 blockDim.x threads walk the flattened runs of one output (a
//                 (run, position) pair stepped without divisions), blockDim.y
//                 outputs per block, blockIdx.y a slice of `chunk` units;
//   ds_columns_*  innermost kept (bias gradients [B*T, D] over {0}): threads along
//                 the kept dim read consecutive units (coalesced), blockDim.y rows
//                 of the slice blockIdx.y interleave and are merged in shared memory.
// *_16, *_8, *_4 load that many bytes per unit, *_1 one value. With one slice pass 1
// stores the result; otherwise it writes [splits, outputs, parts] partials that
// ds_finish_* merge in order (a fixed order: results are deterministic). parts > 1
// where the host reduced NCHW over {0, 2, 3} as [N, C*HW] columns: a channel's
// partials are then its HW positions.
//
// The fold `Op` is typedef'd per module: sums, max/min, var (shifted sums per
// thread, merged as (count, mean, M2) with Chan's formula: one read of x) and
// logsumexp (a running max with the sum of exp rescaled on the fly: one read).
#pragma once

#include <string>

namespace ds::cuda {

// The folds the source defines; `op` of axis_reduce_source names one.
inline const char* const kAxisReduceOps[] = {"ds_sum", "ds_max", "ds_min", "ds_var", "ds_lse"};

// `in`, `out`: device types of x and of the result ("float", "double", "ds_half",
// "ds_bf16"; a sum's `dtype` may ask for a wider result than x, e.g. bfloat16 x
// into float); `op`: one of kAxisReduceOps. The fold runs in the wider of the two
// types' accumulators: float, or double where x or the result is double.
inline std::string axis_reduce_source(const std::string& in, const std::string& out,
                                      const std::string& op) {
  return "typedef " + in + " T;\ntypedef " + out + " O;\n" + R"(
template <typename X, typename Y> struct ds_wider { typedef X type; };
template <> struct ds_wider<float, double> { typedef double type; };
typedef ds_wider<ds_io<T>::acc, ds_io<O>::acc>::type A;

// The merged layout; the same struct on the host. Kept and reduced dims are
// listed outermost first.
struct RedArgs {
  long long ksize[8], kstride[8], rsize[8], rstride[8];
  long long outputs, reduced;  // reduced: values per output
  long long units;             // units (16-byte packs or elements) per output, rows only
  long long run_units;         // rows: units per run; columns: units across the innermost dim
  long long chunk;             // units (rows: of the flattened runs; columns: rows) per slice
  long long parts;             // partials per output and slice (> 1: see ds_finish_*)
  double divisor;              // mean: n; var/std: max(n - ddof, 0); else 1
  int nk, nr, splits, root;    // root: std's square root
};

// a / b, in 32 bits where both fit (a 64-bit division is a long instruction sequence).
__device__ __forceinline__ long long ds_div(long long a, long long b) {
  return ((a | b) >> 31) == 0 ? (long long)((unsigned)a / (unsigned)b) : a / b;
}
// The offset of kept index o over the outer `nk` kept dims.
__device__ __forceinline__ long long ds_kept_offset(const RedArgs& g, long long o, int nk) {
  long long off = 0;
  for (int d = nk - 1; d >= 0; --d) {
    const long long q = ds_div(o, g.ksize[d]);
    off += (o - q * g.ksize[d]) * g.kstride[d];
    o = q;
  }
  return off;
}
// Rows: the offset of run j (the reduced dims outside the innermost one).
__device__ __forceinline__ long long ds_run_offset(const RedArgs& g, long long j) {
  if (g.nr <= 2) return g.nr == 2 ? j * g.rstride[0] : 0;
  long long off = 0;
  for (int d = g.nr - 2; d >= 0; --d) { off += (j % g.rsize[d]) * g.rstride[d]; j /= g.rsize[d]; }
  return off;
}
// Columns: the offset of reduced row r (every reduced dim is outside the kept innermost one).
__device__ __forceinline__ long long ds_row_offset(const RedArgs& g, long long r) {
  if (g.nr == 1) return r * g.rstride[0];
  long long off = 0;
  for (int d = g.nr - 1; d >= 0; --d) { off += (r % g.rsize[d]) * g.rstride[d]; r /= g.rsize[d]; }
  return off;
}

// N values of x loaded by one 4-, 8- or 16-byte load (the host checked alignment).
template <int N> struct __align__(N * sizeof(T)) ds_pack { T v[N]; };
template <int N> __device__ __forceinline__ ds_pack<N> ds_load(const T* p) {
  ds_pack<N> r;
  if constexpr (N == 1) r.v[0] = p[0];
  else if constexpr (N * sizeof(T) == 16) *reinterpret_cast<uint4*>(r.v) = __ldg(reinterpret_cast<const uint4*>(p));
  else if constexpr (N * sizeof(T) == 8) *reinterpret_cast<uint2*>(r.v) = __ldg(reinterpret_cast<const uint2*>(p));
  else *reinterpret_cast<unsigned*>(r.v) = __ldg(reinterpret_cast<const unsigned*>(p));
  return r;
}

// NaN wins max/min, like the reference's fold_max/fold_min.
__device__ __forceinline__ A ds_max2(A a, A b) { return (a != a || b != b) ? a + b : (a > b ? a : b); }
__device__ __forceinline__ A ds_min2(A a, A b) { return (a != a || b != b) ? a + b : (a < b ? a : b); }

// A fold: Acc is what a thread accumulates (start(k) with k the output's first value),
// P what partial results are merged as; result() applies the divisor or root.
struct ds_sum {
  typedef A Acc; typedef A P;
  static const bool shifted = false;
  static __device__ __forceinline__ Acc start(A) { return A(0); }
  static __device__ __forceinline__ void fold(Acc& a, A v) { a += v; }
  static __device__ __forceinline__ P part(Acc a) { return a; }
  static __device__ __forceinline__ P empty() { return A(0); }
  static __device__ __forceinline__ P merge(P a, P b) { return a + b; }
  static __device__ __forceinline__ P down(P p, int o) { return __shfl_down_sync(~0u, p, o); }
  static __device__ __forceinline__ A result(P p, const RedArgs& g) {
    return g.divisor != 1.0 ? p / A(g.divisor) : p;
  }
};
struct ds_max {
  typedef A Acc; typedef A P;
  static const bool shifted = false;
  static __device__ __forceinline__ Acc start(A) { return A(-DS_INF); }
  static __device__ __forceinline__ void fold(Acc& a, A v) { a = ds_max2(a, v); }
  static __device__ __forceinline__ P part(Acc a) { return a; }
  static __device__ __forceinline__ P empty() { return A(-DS_INF); }
  static __device__ __forceinline__ P merge(P a, P b) { return ds_max2(a, b); }
  static __device__ __forceinline__ P down(P p, int o) { return __shfl_down_sync(~0u, p, o); }
  static __device__ __forceinline__ A result(P p, const RedArgs&) { return p; }
};
struct ds_min {
  typedef A Acc; typedef A P;
  static const bool shifted = false;
  static __device__ __forceinline__ Acc start(A) { return A(DS_INF); }
  static __device__ __forceinline__ void fold(Acc& a, A v) { a = ds_min2(a, v); }
  static __device__ __forceinline__ P part(Acc a) { return a; }
  static __device__ __forceinline__ P empty() { return A(DS_INF); }
  static __device__ __forceinline__ P merge(P a, P b) { return ds_min2(a, b); }
  static __device__ __forceinline__ P down(P p, int o) { return __shfl_down_sync(~0u, p, o); }
  static __device__ __forceinline__ A result(P p, const RedArgs&) { return p; }
};
// Per thread sum(x - k) and sum((x - k)^2), k the output's first value: cheap (no
// division per value) and, k lying within the data, free of the cancellation of
// plain sum/sumsq. Partials merge as (n, mean, M2).
struct ds_var {
  struct Acc { A n, s1, s2, k; };
  struct P { A n, mean, m2; };
  static const bool shifted = true;
  static __device__ __forceinline__ Acc start(A k) { Acc a; a.n = a.s1 = a.s2 = A(0); a.k = k; return a; }
  static __device__ __forceinline__ void fold(Acc& a, A v) {
    const A d = v - a.k;
    a.n += A(1); a.s1 += d; a.s2 += d * d;
  }
  static __device__ __forceinline__ P part(const Acc& a) {
    P p; p.n = a.n; p.mean = A(0); p.m2 = A(0);
    if (a.n > A(0)) {
      const A m2 = a.s2 - a.s1 * a.s1 / a.n;
      p.mean = a.k + a.s1 / a.n;
      p.m2 = m2 < A(0) ? A(0) : m2;  // rounding; NaN stays NaN
    }
    return p;
  }
  static __device__ __forceinline__ P empty() { P p; p.n = p.mean = p.m2 = A(0); return p; }
  static __device__ __forceinline__ P merge(P a, P b) {
    if (a.n == A(0)) return b;
    if (b.n == A(0)) return a;
    P r; r.n = a.n + b.n;
    const A d = b.mean - a.mean, w = b.n / r.n;
    r.mean = a.mean + d * w;
    r.m2 = a.m2 + b.m2 + d * d * a.n * w;
    return r;
  }
  static __device__ __forceinline__ P down(P p, int o) {
    P r;
    r.n = __shfl_down_sync(~0u, p.n, o);
    r.mean = __shfl_down_sync(~0u, p.mean, o);
    r.m2 = __shfl_down_sync(~0u, p.m2, o);
    return r;
  }
  static __device__ __forceinline__ A result(P p, const RedArgs& g) {
    const A v = p.m2 / A(g.divisor);  // n == 0: 0/0 = NaN, like the reference
    return g.root ? sqrt(v) : v;
  }
};
// log(sum(exp(x))) as (m, s): the running max m and sum(exp(x - m)). A NaN max is
// the result; +-inf maxima are the result too (the reference's rule).
struct ds_lse {
  struct P { A m, s; };
  typedef P Acc;
  static const bool shifted = false;
  static __device__ __forceinline__ Acc start(A) { return empty(); }
  static __device__ __forceinline__ void fold(Acc& a, A v) {
    if (v != v || a.m != a.m) { a.m = v + a.m; return; }
    if (v > a.m) { a.s = a.s * exp(a.m - v) + A(1); a.m = v; }
    else if (v != A(-DS_INF)) a.s += exp(v - a.m);
  }
  static __device__ __forceinline__ P part(Acc a) { return a; }
  static __device__ __forceinline__ P empty() { P p; p.m = A(-DS_INF); p.s = A(0); return p; }
  static __device__ __forceinline__ P merge(P a, P b) {
    if (a.m != a.m || b.m != b.m) { a.m = a.m + b.m; return a; }
    const A m = a.m > b.m ? a.m : b.m;
    if (m == A(-DS_INF)) return a;
    P r; r.m = m;
    r.s = (a.m == A(-DS_INF) ? A(0) : a.s * exp(a.m - m)) + (b.m == A(-DS_INF) ? A(0) : b.s * exp(b.m - m));
    return r;
  }
  static __device__ __forceinline__ P down(P p, int o) {
    P r;
    r.m = __shfl_down_sync(~0u, p.m, o);
    r.s = __shfl_down_sync(~0u, p.s, o);
    return r;
  }
  static __device__ __forceinline__ A result(P p, const RedArgs&) {
    return (p.m != p.m || p.m == A(DS_INF) || p.m == A(-DS_INF)) ? p.m : log(p.s) + p.m;
  }
};

typedef )" +
         op + R"( Op;
typedef Op::P P;

// Merges the n (a power of two) entries sm[base + k * stride + e], k < n, e < lanes,
// into k = 0 as a fixed tree. Every thread of the block calls it (it synchronizes).
__device__ __forceinline__ void ds_tree(P* sm, int base, int k, int n, int stride, int lanes) {
  __syncthreads();
  for (int h = n >> 1; h > 0; h >>= 1) {
    if (k < h)
      for (int e = 0; e < lanes; ++e)
        sm[base + k * stride + e] = Op::merge(sm[base + k * stride + e], sm[base + (k + h) * stride + e]);
    __syncthreads();
  }
}

__device__ __forceinline__ void ds_emit(P* partial, O* out, const RedArgs& g, long long o,
                                        long long s, P p) {
  if (g.splits == 1 && g.parts == 1) out[o] = ds_io<O>::store(Op::result(p, g));
  else partial[s * g.outputs + o] = p;
}

extern __shared__ double ds_smem[];

// Rows: walks units u, u + G, u + 2G, ... of one output as (run, pos) with the
// element offset `at`, stepped without divisions (with at most two reduced dims,
// the common case, without multiplications either).
template <int N> struct ds_walk {
  long long run, pos, at, lv, drun, dpos, dat, wrap;
  __device__ __forceinline__ ds_walk(const RedArgs& g, long long u, long long G) {
    lv = g.run_units;
    run = ds_div(u, lv); pos = u - run * lv;
    drun = G / lv; dpos = G - drun * lv;
    const long long rs = g.nr == 2 ? g.rstride[0] : 0;
    at = ds_run_offset(g, run) + pos * N;
    dat = drun * rs + dpos * N;
    wrap = rs - lv * N;
  }
  __device__ __forceinline__ void next(const RedArgs& g) {
    pos += dpos; run += drun; at += dat;
    if (pos >= lv) { pos -= lv; ++run; at += wrap; }
    if (g.nr > 2) at = ds_run_offset(g, run) + pos * N;
  }
};

// Innermost dim reduced. N values per unit, U units in flight per thread.
template <int N, int U>
__device__ __forceinline__ void ds_rows(const T* __restrict__ x, P* __restrict__ partial,
                                        O* __restrict__ out, const RedArgs& g) {
  P* sm = reinterpret_cast<P*>(ds_smem);
  const int G = blockDim.x, tx = threadIdx.x, ty = threadIdx.y;
  const long long o = (long long)blockIdx.x * blockDim.y + ty, s = blockIdx.y;
  P part = Op::empty();
  if (o < g.outputs) {
    const T* xo = x + ds_kept_offset(g, o, g.nk);
    Op::Acc acc = Op::start(Op::shifted ? ds_io<T>::load(xo[0]) : A(0));
    const long long u1 = min((s + 1) * g.chunk, g.units);
    long long u = s * g.chunk + tx;
    if (u < u1) {
      ds_walk<N> w(g, u, G);
      for (; u + (long long)(U - 1) * G < u1; u += (long long)U * G) {
        ds_pack<N> r[U];
#pragma unroll
        for (int k = 0; k < U; ++k) { r[k] = ds_load<N>(xo + w.at); w.next(g); }
#pragma unroll
        for (int k = 0; k < U; ++k)
#pragma unroll
          for (int e = 0; e < N; ++e) Op::fold(acc, ds_io<T>::load(r[k].v[e]));
      }
      if (u < u1) {  // the last, partial batch: its loads issued together too
        ds_pack<N> r[U];
#pragma unroll
        for (int k = 0; k < U; ++k) {
          if (u + (long long)k * G < u1) r[k] = ds_load<N>(xo + w.at);
          w.next(g);
        }
#pragma unroll
        for (int k = 0; k < U; ++k)
          if (u + (long long)k * G < u1)
#pragma unroll
            for (int e = 0; e < N; ++e) Op::fold(acc, ds_io<T>::load(r[k].v[e]));
      }
    }
    part = Op::part(acc);
  }
  // Lane 0 of each warp merges its warp (G is a multiple of 32), then thread 0 of
  // the row merges the row's warps: a fixed order.
  for (int d = 16; d > 0; d >>= 1) part = Op::merge(part, Op::down(part, d));
  const int warps = G >> 5;
  if (warps > 1) {
    if ((tx & 31) == 0) sm[ty * warps + (tx >> 5)] = part;
    __syncthreads();
    if (tx == 0)
      for (int w = 1; w < warps; ++w) part = Op::merge(part, sm[ty * warps + w]);
  }
  if (tx == 0 && o < g.outputs) ds_emit(partial, out, g, o, s, part);
}

// Innermost dim kept: thread (tx, ty) folds unit column c for rows ty, ty + blockDim.y, ...
template <int N, int U>
__device__ __forceinline__ void ds_columns(const T* __restrict__ x, P* __restrict__ partial,
                                           O* __restrict__ out, const RedArgs& g) {
  P* sm = reinterpret_cast<P*>(ds_smem);
  const int TX = blockDim.x, TY = blockDim.y, tx = threadIdx.x, ty = threadIdx.y;
  const long long col_blocks = (g.run_units + TX - 1) / TX;
  const long long outer = blockIdx.x / col_blocks, s = blockIdx.y;
  const long long c = (blockIdx.x % col_blocks) * TX + tx;
  const long long inner = g.ksize[g.nk - 1];
  const bool live = c < g.run_units;
  Op::Acc acc[N];
  if (live) {
    const long long base = ds_kept_offset(g, outer, g.nk - 1) + c * N;
    if (Op::shifted) {
      const ds_pack<N> first = ds_load<N>(x + base);
#pragma unroll
      for (int e = 0; e < N; ++e) acc[e] = Op::start(ds_io<T>::load(first.v[e]));
    } else {
#pragma unroll
      for (int e = 0; e < N; ++e) acc[e] = Op::start(A(0));
    }
    const long long r1 = min((s + 1) * g.chunk, g.reduced);
    long long r = s * g.chunk + ty;
    for (; r + (long long)(U - 1) * TY < r1; r += (long long)U * TY) {
      ds_pack<N> v[U];
#pragma unroll
      for (int k = 0; k < U; ++k) v[k] = ds_load<N>(x + base + ds_row_offset(g, r + (long long)k * TY));
#pragma unroll
      for (int k = 0; k < U; ++k)
#pragma unroll
        for (int e = 0; e < N; ++e) Op::fold(acc[e], ds_io<T>::load(v[k].v[e]));
    }
    if (r < r1) {  // the last, partial batch: its loads issued together too
      ds_pack<N> v[U];
#pragma unroll
      for (int k = 0; k < U; ++k)
        if (r + (long long)k * TY < r1) v[k] = ds_load<N>(x + base + ds_row_offset(g, r + (long long)k * TY));
#pragma unroll
      for (int k = 0; k < U; ++k)
        if (r + (long long)k * TY < r1)
#pragma unroll
          for (int e = 0; e < N; ++e) Op::fold(acc[e], ds_io<T>::load(v[k].v[e]));
    }
  }
#pragma unroll
  for (int e = 0; e < N; ++e) sm[(ty * TX + tx) * N + e] = live ? Op::part(acc[e]) : Op::empty();
  ds_tree(sm, tx * N, ty, TY, TX * N, N);
  if (ty == 0 && live)
    for (int e = 0; e < N; ++e) ds_emit(partial, out, g, outer * inner + c * N + e, s, sm[tx * N + e]);
}

// One kernel per load width: 16, 8 or 4 bytes (where that is at least two values)
// and single values.
#define DS_PER(B) ((B) / sizeof(T) > 1 ? (B) / sizeof(T) : 1)
#define DS_PASS1(name, shape, n, u)                                                         \
  extern "C" __global__ void __launch_bounds__(256)                                        \
      name(const T* __restrict__ x, P* __restrict__ partial, O* __restrict__ out, RedArgs g) { \
    shape<n, u>(x, partial, out, g);                                                        \
  }
DS_PASS1(ds_rows_16, ds_rows, DS_PER(16), 4)
DS_PASS1(ds_rows_8, ds_rows, DS_PER(8), 4)
DS_PASS1(ds_rows_4, ds_rows, DS_PER(4), 8)
DS_PASS1(ds_rows_1, ds_rows, 1, 8)
DS_PASS1(ds_columns_16, ds_columns, DS_PER(16), 8)
DS_PASS1(ds_columns_8, ds_columns, DS_PER(8), 8)
DS_PASS1(ds_columns_4, ds_columns, DS_PER(4), 8)
DS_PASS1(ds_columns_1, ds_columns, 1, 8)

// Partials are [splits, outputs, parts]: output o merges its parts j < splits * parts
// in order. parts > 1 where pass 1 reduced a transposed view (see the host's
// per-channel plan: the parts of a channel are its spatial positions).
__device__ __forceinline__ P ds_part(const P* partial, const RedArgs& g, long long o, long long j) {
  const long long s = ds_div(j, g.parts);
  return partial[(s * g.outputs + o) * g.parts + (j - s * g.parts)];
}
// Few parts: a thread per output.
extern "C" __global__ void ds_finish_thread(const P* __restrict__ partial, O* __restrict__ out, RedArgs g) {
  const long long n = g.splits * g.parts;
  for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < g.outputs;
       o += (long long)gridDim.x * blockDim.x) {
    P p = Op::empty();
    for (long long j = 0; j < n; ++j) p = Op::merge(p, ds_part(partial, g, o, j));
    out[o] = ds_io<O>::store(Op::result(p, g));
  }
}
// Many parts: a warp per output (blockDim (32, 8)); lane l merges parts l, l + 32, ...
extern "C" __global__ void __launch_bounds__(256) ds_finish_warp(const P* __restrict__ partial, O* __restrict__ out, RedArgs g) {
  P* sm = reinterpret_cast<P*>(ds_smem);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const long long o = (long long)blockIdx.x * blockDim.y + ty, n = g.splits * g.parts;
  P p = Op::empty();
  if (o < g.outputs)
    for (long long j = tx; j < n; j += 32) p = Op::merge(p, ds_part(partial, g, o, j));
  sm[ty * 32 + tx] = p;
  ds_tree(sm, ty * 32, tx, 32, 1, 1);
  if (tx == 0 && o < g.outputs) out[o] = ds_io<O>::store(Op::result(sm[ty * 32], g));
}
)";
}

// argmax/argmin along one axis of x viewed as [outer, extent, inner]: the first
// index of the extremum; the first NaN wins (numpy's rule, the reference's).
inline std::string arg_extremum_source(const std::string& in) {
  return "typedef " + in + " T;\ntypedef ds_io<T>::acc A;\n" + R"(
extern "C" __global__ void ds_arg_extremum(const T* __restrict__ x, long long* __restrict__ out,
                                           long long outer, long long extent, long long inner,
                                           int is_max) {
  for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < outer * inner;
       t += (long long)gridDim.x * blockDim.x) {
    const long long base = t / inner * extent * inner + t % inner;
    long long best = 0;
    A bv = ds_io<T>::load(x[base]);
    for (long long j = 1; j < extent && bv == bv; ++j) {
      const A v = ds_io<T>::load(x[base + j * inner]);
      if (v != v || (is_max ? v > bv : v < bv)) { best = j; bv = v; }
    }
    out[t] = best;
  }
}
)";
}

}  // namespace ds::cuda
