// Device code of the CUDA softmax_cross_entropy kernels (softmax_cross_entropy_kernels.cpp),
// in a header so the tests can compile it with NVRTC where no GPU is present.
//
// A group of TPR threads takes a row (a warp for short rows, RPB rows a block; a
// whole block for long ones). The forward reads the row once: each thread keeps a
// running max m and the sum s of exp(x - m), rescaled when m grows (one rescale
// per 16-byte pack), and the plain sum for label smoothing; the group merges the
// pairs and its first thread writes lse = m + log(s) and the loss. The backward
// reads the row once and writes (exp(x - lse) - (1 - ls) [j == t] - ls / C) dloss
// in the logits' type, rounded once.
// Rows of odd length (GPT-2's 50257 classes) do not start on 16-byte boundaries:
// the elements before a row's first boundary and after its last whole pack are
// read one by one, the packs between with 16-byte loads.
#pragma once

#include <string>

namespace ds::cuda {

// `type`: the logits' device type ("float", "double", "ds_half", "ds_bf16");
// `index`: the target's ("int", "long long"); `tpr`: threads per row, 32 (RPB =
// 8 rows a 256-thread block) or a multiple of 32 up to 1024 (one row a block).
inline std::string softmax_cross_entropy_source(const std::string& type, const std::string& index,
                                                int tpr) {
  return "typedef " + type + " T;\ntypedef " + index + " I;\n#define TPR " + std::to_string(tpr) +
         "\n#define RPB " + std::to_string(tpr == 32 ? 8 : 1) + R"(
typedef ds_io<T> IO;
typedef IO::acc A;
#define VEC (16 / sizeof(T))
// 16 bytes of a row, loaded and stored as one uint4.
union Pack {
  uint4 bits;
  T v[VEC];
};

__device__ __forceinline__ float ds_xexp(float v) { return __expf(v); }
__device__ __forceinline__ double ds_xexp(double v) { return exp(v); }

// Folds the pair (m2, s2) into (m, s): the larger max, both sums rescaled to it.
// A max of -inf (nothing yet, or -inf logits) subtracts 0 so that no -inf - -inf
// makes a NaN; +inf logits do give NaN. m never holds NaN (fmax skips it): a NaN
// logit reaches s through exp.
__device__ __forceinline__ void ds_merge(A& m, A& s, A m2, A s2) {
  const A nm = fmax(m, m2);
  const A sub = nm == -DS_INF ? A(0) : nm;
  s = s * ds_xexp(m - sub) + s2 * ds_xexp(m2 - sub);
  m = nm;
}

// A row's layout: `head` scalars before its first 16-byte boundary, `packs` whole
// Packs, then scalars to the end (all scalars when `vec_ok` is 0).
struct RowSplit {
  long long head, packs, tail_start;
};
__device__ __forceinline__ RowSplit ds_split(const T* row, long long len, int vec_ok) {
  RowSplit p;
  const unsigned long long addr = (unsigned long long)row;
  p.head = vec_ok ? (long long)(((16 - (addr & 15)) & 15) / sizeof(T)) : len;
  if (p.head > len) p.head = len;
  p.packs = (len - p.head) / (long long)VEC;
  p.tail_start = p.head + p.packs * (long long)VEC;
  return p;
}
__device__ __forceinline__ long long ds_scalar_col(const RowSplit& p, long long j) {
  return j < p.head ? j : p.tail_start + (j - p.head);
}

// loss[r], lse[r] for logits x [rows, len]; a target outside [0, len) that is not
// `ignore` records its row in *bad (the lowest) and gives loss 0.
extern "C" __global__ void __launch_bounds__(TPR * RPB)
ds_xent_forward(const T* __restrict__ x, const I* __restrict__ target, A* __restrict__ loss,
                A* __restrict__ lse_out, long long rows, long long len, long long ignore,
                double smoothing, unsigned long long* bad) {
  const int lane = threadIdx.x % TPR;
  const long long r = (long long)blockIdx.x * RPB + threadIdx.x / TPR;
  if (r >= rows) return;  // whole groups only: TPR = 32 has no block-wide barrier
  const T* row = x + r * len;
  const RowSplit p = ds_split(row, len, 1);
  const uint4* packs = (const uint4*)(row + p.head);
  A m = -DS_INF, s = A(0), sx = A(0);
#pragma unroll 4
  for (long long k = lane; k < p.packs; k += TPR) {
    Pack pk;
    pk.bits = packs[k];
    A v[VEC];
    A lm = -DS_INF;
#pragma unroll
    for (int e = 0; e < (int)VEC; ++e) {
      v[e] = IO::load(pk.v[e]);
      lm = fmax(lm, v[e]);
      sx += v[e];
    }
    const A nm = fmax(m, lm);
    const A sub = nm == -DS_INF ? A(0) : nm;
    A add = A(0);
#pragma unroll
    for (int e = 0; e < (int)VEC; ++e) add += ds_xexp(v[e] - sub);
    s = s * ds_xexp(m - sub) + add;
    m = nm;
  }
  const long long scalars = p.head + (len - p.tail_start);
  for (long long j = lane; j < scalars; j += TPR) {
    const A v = IO::load(row[ds_scalar_col(p, j)]);
    sx += v;
    ds_merge(m, s, v, A(1));
  }
  for (int o = 16; o > 0; o >>= 1) {
    const A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    sx += __shfl_xor_sync(0xffffffffu, sx, o);
    ds_merge(m, s, m2, s2);
  }
#if TPR > 32
  __shared__ A part_m[32], part_s[32], part_x[32];
  const int warp = threadIdx.x >> 5, wl = threadIdx.x & 31;
  if (wl == 0) {
    part_m[warp] = m;
    part_s[warp] = s;
    part_x[warp] = sx;
  }
  __syncthreads();
  if (warp != 0) return;
  const bool has = wl < TPR / 32;
  m = has ? part_m[wl] : -DS_INF;
  s = has ? part_s[wl] : A(0);
  sx = has ? part_x[wl] : A(0);
  for (int o = 16; o > 0; o >>= 1) {
    const A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    sx += __shfl_xor_sync(0xffffffffu, sx, o);
    ds_merge(m, s, m2, s2);
  }
#endif
  if (lane != 0) return;
  const A lse = m + log(s);
  const long long t = (long long)target[r];
  A l = A(0);
  if (t != ignore) {
    if (t < 0 || t >= len) {
      atomicMin(bad, (unsigned long long)r);
    } else {
      l = lse - A(1.0 - smoothing) * IO::load(row[t]);
      if (smoothing > 0) l -= A(smoothing) * sx / A(len);
    }
  }
  loss[r] = l;
  lse_out[r] = lse;
}

// dx [rows, len] in T; vec_ok: x and dx rows share their offset from a 16-byte
// boundary, so packs line up in both.
extern "C" __global__ void __launch_bounds__(TPR * RPB)
ds_xent_backward(const T* __restrict__ x, const I* __restrict__ target, const A* __restrict__ lse,
                 const A* __restrict__ dloss, T* __restrict__ dx, long long rows, long long len,
                 long long ignore, double smoothing, int vec_ok, unsigned long long* bad) {
  const int lane = threadIdx.x % TPR;
  const long long r = (long long)blockIdx.x * RPB + threadIdx.x / TPR;
  if (r >= rows) return;
  const T* row = x + r * len;
  T* out = dx + r * len;
  const long long t = (long long)target[r];
  const bool out_of_range = t != ignore && (t < 0 || t >= len);
  if (out_of_range && lane == 0) atomicMin(bad, (unsigned long long)r);
  const bool skip = t == ignore || out_of_range;
  const A l = lse[r], d = skip ? A(0) : dloss[r];
  const A uniform = A(smoothing / (double)len), hit = A(1.0 - smoothing);
  const RowSplit p = ds_split(row, len, vec_ok);
  const uint4* in_packs = (const uint4*)(row + p.head);
  uint4* out_packs = (uint4*)(out + p.head);
#pragma unroll 4
  for (long long k = lane; k < p.packs; k += TPR) {
    Pack pk, o;
    pk.bits = in_packs[k];
    const long long col0 = p.head + k * (long long)VEC;
#pragma unroll
    for (int e = 0; e < (int)VEC; ++e) {
      const A on = col0 + e == t ? hit : A(0);
      o.v[e] = IO::store(skip ? A(0) : (ds_xexp(IO::load(pk.v[e]) - l) - on - uniform) * d);
    }
    out_packs[k] = o.bits;
  }
  const long long scalars = p.head + (len - p.tail_start);
  for (long long j = lane; j < scalars; j += TPR) {
    const long long col = ds_scalar_col(p, j);
    const A on = col == t ? hit : A(0);
    out[col] = IO::store(skip ? A(0) : (ds_xexp(IO::load(row[col]) - l) - on - uniform) * d);
  }
}
)";
}

}  // namespace ds::cuda
