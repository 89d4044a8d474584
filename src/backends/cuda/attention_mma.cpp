// Flash-attention forward on tensor cores for bf16/fp16 (sm_80+: mma.sync
// m16n8k16 with fp32 accumulation), head sizes a multiple of 16 up to 128.
// A block of 4 warps owns 128 query rows, each warp 32 of them as two m-tiles
// that share every K/V fragment the warp loads (D > 64: 64 rows, one m-tile).
// Q fragments stay in registers, K and V tiles (64 keys; 32 for D > 64) are
// double-buffered in shared memory (cp.async copies the next while this one is
// used), S = Q K^T and O += P V run as mma tiles, and the softmax is online in
// the accumulator layout (each thread holds two rows' values per m-tile; a
// row's four threads combine with shuffles). P goes from the S accumulators
// straight into A fragments. Other dtypes and shapes use the scalar kernels
// (attention_kernels.cpp).
#include "backends/cuda/attention_mma.h"

#include <algorithm>

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"
#include "ir/ops/attention.h"

namespace ds::cuda {

namespace {

const char* const kCommon = R"(
constexpr int BK = D > 64 ? 32 : 64;  // keys (queries) per staged tile
constexpr int LD = D + 8;     // shared row stride (halves): spreads rows over banks
constexpr int KT = D / 16;    // k-steps over the head dims
constexpr int NT = BK / 8;    // n-tiles of a score tile (even: taken in pairs)
constexpr int DT = D / 8;     // n-tiles over the head dims (even: D is a multiple of 16)

__device__ __forceinline__ unsigned ds_pack(float lo, float hi) {
  unsigned r;
#if DS_BF16
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
  return r;
}
// 2^x on the SFU with denormal results flushed to zero (exp2f adds a denormal
// fix-up per call; probabilities that small do not count).
__device__ __forceinline__ float ds_exp2(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ void ds_mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
#if DS_BF16
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#else
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#endif
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Copies 16 bytes from global src to shared dst asynchronously (cp.async),
// zeros instead when !in (src is then not read).
__device__ __forceinline__ void ds_cp_async16(void* dst, const void* src, bool in) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
               :: "r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src), "r"(in ? 16 : 0) : "memory");
}
// ldmatrix (.x4: r[0..3] from the 8x8 matrices whose rows lanes 0-7, 8-15,
// 16-23, 24-31 address; .x2: lanes 0-15) of the shared row each lane points to,
// transposed with .trans.
__device__ __forceinline__ void ds_ldsm_x4(const void* p, unsigned* r) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"((unsigned)__cvta_generic_to_shared(p)) : "memory");
}
__device__ __forceinline__ void ds_ldsm_x4_trans(const void* p, unsigned* r) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"((unsigned)__cvta_generic_to_shared(p)) : "memory");
}
__device__ __forceinline__ void ds_ldsm_x2_trans(const void* p, unsigned* r) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];"
               : "=r"(r[0]), "=r"(r[1]) : "r"((unsigned)__cvta_generic_to_shared(p)) : "memory");
}
// Rows [r0, r0 + N) of an [n, D] matrix of 16-bit values into tile[N][LD],
// zeros past n: with vec (16-byte aligned sources) asynchronously by cp.async
// (commit, then wait before reading the tile), else by plain 16-bit copies.
template <int N>
__device__ __forceinline__ void ds_stage_rows(unsigned short (*tile)[LD], const unsigned short* m,
                                              int r0, int n, int vec) {
  if (vec) {
    for (int t = threadIdx.x; t < N * (D / 8); t += blockDim.x) {
      const int r = t / (D / 8), c = (t % (D / 8)) * 8;
      const bool in = r0 + r < n;
      ds_cp_async16(&tile[r][c], in ? m + (long long)(r0 + r) * D + c : m, in);
    }
  } else {
    for (int t = threadIdx.x; t < N * D; t += blockDim.x) {
      const int r = t / D, c = t % D;
      tile[r][c] = r0 + r < n ? m[(long long)(r0 + r) * D + c] : 0;
    }
  }
}
__device__ __forceinline__ void ds_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void ds_cp_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }
__device__ __forceinline__ unsigned ds_pair(const unsigned short* p) {  // p[0] low, p[1] high
  return (unsigned)p[0] | ((unsigned)p[1] << 16);
}
// The B fragments (16 k x 8 n) of n-tiles n0 and n0 + 8 of a shared tile stored
// with n along its rows (K for S = Q K^T), by one ldmatrix.x4: lanes 0-7 address
// n0's k 0-7, lanes 8-15 its k 8-15, lanes 16-31 the same for n0 + 8.
// b[0], b[1] belong to n0, b[2], b[3] to n0 + 8.
__device__ __forceinline__ void ds_b_rows2(const unsigned short (*tile)[LD], int n0, int k0,
                                           unsigned* b) {
  const int l = threadIdx.x & 31;
  ds_ldsm_x4(&tile[n0 + (l & 7) + ((l >> 4) << 3)][k0 + ((l >> 3) & 1) * 8], b);
}
// The B fragment of a shared tile stored with k along its rows (V for O = P V):
// ldmatrix transposed, lanes 0-15 address rows k0 .. k0 + 15.
__device__ __forceinline__ void ds_b_cols(const unsigned short (*tile)[LD], int k0, int n0,
                                          unsigned* b) {
  ds_ldsm_x2_trans(&tile[k0 + (threadIdx.x & 15)][n0], b);
}
// ds_b_cols for n-tiles n0 and n0 + 8 by one ldmatrix.x4 (lanes 16-31 address
// column n0 + 8): b[0], b[1] belong to n0, b[2], b[3] to n0 + 8.
__device__ __forceinline__ void ds_b_cols2(const unsigned short (*tile)[LD], int k0, int n0,
                                           unsigned* b) {
  const int l = threadIdx.x & 31;
  ds_ldsm_x4_trans(&tile[k0 + (l & 15)][n0 + (l >> 4) * 8], b);
}
// The A fragment of a 16-row x 16-column slice of accumulator tiles t0 (columns
// 0-7) and t1 (8-15), rounded to the 16-bit dtype.
__device__ __forceinline__ void ds_to_a(unsigned* a, const float* t0, const float* t1) {
  a[0] = ds_pack(t0[0], t0[1]);
  a[1] = ds_pack(t0[2], t0[3]);
  a[2] = ds_pack(t1[0], t1[1]);
  a[3] = ds_pack(t1[2], t1[3]);
}
// A fragments of rows [r, r + 16) of an [n, D] matrix in global memory (zeros past n).
__device__ __forceinline__ void ds_load_a(unsigned (*a)[4], const unsigned short* m, int r, int n) {
  const int gid = (threadIdx.x & 31) >> 2, tig = threadIdx.x & 3;
  const int lo = r + gid, hi = r + gid + 8;
#pragma unroll
  for (int kk = 0; kk < KT; ++kk) {
    const int c = kk * 16 + tig * 2;
    a[kk][0] = lo < n ? ds_pair(m + (long long)lo * D + c) : 0u;
    a[kk][1] = hi < n ? ds_pair(m + (long long)hi * D + c) : 0u;
    a[kk][2] = lo < n ? ds_pair(m + (long long)lo * D + c + 8) : 0u;
    a[kk][3] = hi < n ? ds_pair(m + (long long)hi * D + c + 8) : 0u;
  }
}
// Accumulator tiles [DT][4] of 16 rows from r (times `scale`) stored as 16-bit pairs.
__device__ __forceinline__ void ds_store_acc(unsigned short* m, const float (*acc)[4], int r, int n,
                                             float scale) {
  const int gid = (threadIdx.x & 31) >> 2, tig = threadIdx.x & 3;
#pragma unroll
  for (int dn = 0; dn < DT; ++dn) {
    const int c = dn * 8 + tig * 2;
    if (r + gid < n)
      *reinterpret_cast<unsigned*>(m + (long long)(r + gid) * D + c) = ds_pack(acc[dn][0] * scale, acc[dn][1] * scale);
    if (r + gid + 8 < n)
      *reinterpret_cast<unsigned*>(m + (long long)(r + gid + 8) * D + c) = ds_pack(acc[dn][2] * scale, acc[dn][3] * scale);
  }
}
)";

// The row loop of the forward, also the backward's first pass: a block of NW
// warps owns NW * 16 * MI query rows, each warp MI m-tiles of 16 that share
// every K/V fragment it loads. With LSE_ONLY (the backward) it keeps only the softmax
// statistics: each row's log-sum-exp (exp2 domain) into lse and
// delta = rowsum(dO * O) (from o_in and g) into delta; else it writes O to o.
const char* const kRows = R"(
__device__ __forceinline__ float ds_to_float(unsigned short h) {
#if DS_BF16
  return ds_b2f(h);
#else
  return ds_h2f(h);
#endif
}

// scale_log2 = scale * log2(e) > 0: the running max and lse live in the exp2 domain.
template <bool LSE_ONLY, int NW>
__device__ __forceinline__ void ds_flash_rows(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
    const unsigned short* __restrict__ v, unsigned short* __restrict__ o,
    const unsigned short* __restrict__ o_in, const unsigned short* __restrict__ g,
    float* __restrict__ lse, float* __restrict__ delta, int sq, int sk, float scale_log2,
    int causal, int vec) {
  // Two buffers: the next K/V tile is copied in while this one is used.
  __shared__ __align__(16) unsigned short ks[2][BK][LD];
  __shared__ __align__(16) unsigned short vs[2][LSE_ONLY ? 1 : BK][LD];
  const long long bh = blockIdx.y;
  q += bh * sq * D; k += bh * sk * D;
  if (LSE_ONLY) {
    o_in += bh * sq * D; g += bh * sq * D; lse += bh * sq; delta += bh * sq;
  } else {
    v += bh * sk * D; o += bh * sq * D; lse += bh * sq;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;
  // Causal: the last row blocks see the most keys; they start first.
  const int qb = causal ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
  constexpr int QROWS = NW * 16 * MI;  // query rows per block
  const int q0 = qb * QROWS + warp * 16 * MI;  // m-tile mi holds rows q0 + mi * 16 ..
  unsigned qa[MI][KT][4];
  float acc[MI][DT][4];
  // Running max and sum of rows gid (index 0) and gid + 8 (index 1) of each m-tile.
  float m[MI][2], l[MI][2];
#pragma unroll
  for (int mi = 0; mi < MI; ++mi) {
    ds_load_a(qa[mi], q, q0 + mi * 16, sq);
#pragma unroll
    for (int dn = 0; dn < DT; ++dn) acc[mi][dn][0] = acc[mi][dn][1] = acc[mi][dn][2] = acc[mi][dn][3] = 0.f;
    m[mi][0] = m[mi][1] = -DS_INF;
    l[mi][0] = l[mi][1] = 0.f;
  }
  const int kend = causal ? min(sk, (qb + 1) * QROWS) : sk;
  const int tiles = (kend + BK - 1) / BK;
  if (vec && tiles > 0) {
    ds_stage_rows<BK>(ks[0], k, 0, sk, 1);
    if (!LSE_ONLY) ds_stage_rows<BK>(vs[0], v, 0, sk, 1);
    ds_cp_commit();
  }
  for (int t = 0; t < tiles; ++t) {
    const int k0 = t * BK, buf = t & 1;
    if (vec) {
      ds_cp_wait_all();
    } else {
      ds_stage_rows<BK>(ks[buf], k, k0, sk, 0);
      if (!LSE_ONLY) ds_stage_rows<BK>(vs[buf], v, k0, sk, 0);
    }
    // One barrier per tile: past it, tile t is visible and every warp is done
    // with the other buffer, so the next tile's copy into it starts here.
    __syncthreads();
    if (vec && t + 1 < tiles) {
      ds_stage_rows<BK>(ks[buf ^ 1], k, k0 + BK, sk, 1);
      if (!LSE_ONLY) ds_stage_rows<BK>(vs[buf ^ 1], v, k0 + BK, sk, 1);
      ds_cp_commit();
    }
    // S = Q K^T: each K fragment pair serves the warp's MI m-tiles.
    float s[MI][NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt += 2) {
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mi][nt][e] = s[mi][nt + 1][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) {
        unsigned b[4];
        ds_b_rows2(ks[buf], nt * 8, kk * 16, b);
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
          ds_mma(s[mi][nt], qa[mi][kk], b[0], b[1]);
          ds_mma(s[mi][nt + 1], qa[mi][kk], b[2], b[3]);
        }
      }
    }
    // Mask past the keys and, causal, above the diagonal (only tiles that
    // reach either). Scores stay unscaled: the scale goes into the exponents' FMA.
    if (k0 + BK > sk || (causal && k0 + BK - 1 > q0)) {
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = k0 + nt * 8 + tig * 2 + (e & 1);
            const int row = q0 + mi * 16 + gid + (e < 2 ? 0 : 8);
            if (key >= sk || (causal && key > row)) s[mi][nt][e] = -DS_INF;
          }
    }
    // Online softmax per row: new max, rescale the sum and the output, exponents.
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
      float t_lo = -DS_INF, t_hi = -DS_INF;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        t_lo = fmaxf(t_lo, fmaxf(s[mi][nt][0], s[mi][nt][1]));
        t_hi = fmaxf(t_hi, fmaxf(s[mi][nt][2], s[mi][nt][3]));
      }
#pragma unroll
      for (int x = 1; x < 4; x <<= 1) {
        t_lo = fmaxf(t_lo, __shfl_xor_sync(0xffffffffu, t_lo, x));
        t_hi = fmaxf(t_hi, __shfl_xor_sync(0xffffffffu, t_hi, x));
      }
      // The scale is positive (flash_mma_supported): the scaled max is the max scaled.
      const float n_lo = fmaxf(m[mi][0], t_lo * scale_log2), n_hi = fmaxf(m[mi][1], t_hi * scale_log2);
      // A row with every key masked so far keeps max -inf: exponents use 0 then.
      const float b_lo = n_lo == -DS_INF ? 0.f : n_lo, b_hi = n_hi == -DS_INF ? 0.f : n_hi;
      const float c_lo = ds_exp2(m[mi][0] - b_lo), c_hi = ds_exp2(m[mi][1] - b_hi);
      m[mi][0] = n_lo;
      m[mi][1] = n_hi;
      l[mi][0] *= c_lo;
      l[mi][1] *= c_hi;
      if (!LSE_ONLY) {
#pragma unroll
        for (int dn = 0; dn < DT; ++dn) {
          acc[mi][dn][0] *= c_lo; acc[mi][dn][1] *= c_lo; acc[mi][dn][2] *= c_hi; acc[mi][dn][3] *= c_hi;
        }
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        s[mi][nt][0] = ds_exp2(fmaf(s[mi][nt][0], scale_log2, -b_lo));
        s[mi][nt][1] = ds_exp2(fmaf(s[mi][nt][1], scale_log2, -b_lo));
        s[mi][nt][2] = ds_exp2(fmaf(s[mi][nt][2], scale_log2, -b_hi));
        s[mi][nt][3] = ds_exp2(fmaf(s[mi][nt][3], scale_log2, -b_hi));
        l[mi][0] += s[mi][nt][0] + s[mi][nt][1];
        l[mi][1] += s[mi][nt][2] + s[mi][nt][3];
      }
    }
    if (!LSE_ONLY) {
      // O += P V, 16 keys per k-step; P's A fragments come from two S tiles, and
      // each V fragment pair serves the MI m-tiles.
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        unsigned pa[MI][4];
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) ds_to_a(pa[mi], s[mi][2 * kk], s[mi][2 * kk + 1]);
#pragma unroll
        for (int dn = 0; dn < DT; dn += 2) {
          unsigned b[4];
          ds_b_cols2(vs[buf], kk * 16, dn * 8, b);
#pragma unroll
          for (int mi = 0; mi < MI; ++mi) {
            ds_mma(acc[mi][dn], pa[mi], b[0], b[1]);
            ds_mma(acc[mi][dn + 1], pa[mi], b[2], b[3]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
    for (int x = 1; x < 4; x <<= 1) {
      l[mi][0] += __shfl_xor_sync(0xffffffffu, l[mi][0], x);
      l[mi][1] += __shfl_xor_sync(0xffffffffu, l[mi][1], x);
    }
    const int r_lo = q0 + mi * 16 + gid, r_hi = r_lo + 8;
    if (LSE_ONLY) {
      // delta: this thread sums the head dims tig, tig + 4, ... of its two rows.
      float d_lo = 0.f, d_hi = 0.f;
      for (int c = tig; c < D; c += 4) {
        if (r_lo < sq) d_lo += ds_to_float(g[(long long)r_lo * D + c]) * ds_to_float(o_in[(long long)r_lo * D + c]);
        if (r_hi < sq) d_hi += ds_to_float(g[(long long)r_hi * D + c]) * ds_to_float(o_in[(long long)r_hi * D + c]);
      }
#pragma unroll
      for (int x = 1; x < 4; x <<= 1) {
        d_lo += __shfl_xor_sync(0xffffffffu, d_lo, x);
        d_hi += __shfl_xor_sync(0xffffffffu, d_hi, x);
      }
      if (tig == 0) {
        if (r_lo < sq) { lse[r_lo] = m[mi][0] + log2f(l[mi][0]); delta[r_lo] = d_lo; }
        if (r_hi < sq) { lse[r_hi] = m[mi][1] + log2f(l[mi][1]); delta[r_hi] = d_hi; }
      }
    } else {
      // Rows of one thread share nothing else: fold 1/l into the accumulators first.
      const float i_lo = 1.f / l[mi][0], i_hi = 1.f / l[mi][1];
#pragma unroll
      for (int dn = 0; dn < DT; ++dn) {
        acc[mi][dn][0] *= i_lo; acc[mi][dn][1] *= i_lo; acc[mi][dn][2] *= i_hi; acc[mi][dn][3] *= i_hi;
      }
      ds_store_acc(o, acc[mi], q0 + mi * 16, sq, 1.f);
      if (tig == 0) {  // the natural log-sum-exp, the op's second output
        if (r_lo < sq) lse[r_lo] = (m[mi][0] + log2f(l[mi][0])) * 0.6931471805599453f;
        if (r_hi < sq) lse[r_hi] = (m[mi][1] + log2f(l[mi][1])) * 0.6931471805599453f;
      }
    }
  }
}
)";

const char* const kForward = R"(
extern "C" __global__ void __launch_bounds__(WARPS * 32, 8 / WARPS) ds_flash_fwd_mma(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
    const unsigned short* __restrict__ v, unsigned short* __restrict__ o, float* __restrict__ lse,
    int sq, int sk, float scale_log2, int causal, int vec) {
  ds_flash_rows<false, WARPS>(q, k, v, o, nullptr, nullptr, lse, nullptr, sq, sk, scale_log2,
                              causal, vec);
}
)";

std::string source(DType t, int64_t d) {
  return flash_mma_common(t, d, kFlashRowWarps) + kForward;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

void forward(const KernelCall& kc) {
  const Tensor& qt = kc.inputs[0];
  const ops::AttentionDims a = ops::attention_dims(kc.ctx);
  const int64_t batch = a.batch(), d = a.d;
  int sq = static_cast<int>(a.sq), sk = static_cast<int>(a.sk);
  if (batch == 0 || sq == 0) return;
  const int dev = call_device(kc);
  const void *q = qt.raw_data(), *k = kc.inputs[1].raw_data(), *v = kc.inputs[2].raw_data();
  void *o = kc.outputs[0].raw_data(), *lse = kc.outputs[1].raw_data();
  float scale_log2 = static_cast<float>(ops::attention_scale(kc.ctx, d) * 1.4426950408889634);
  int causal = kc.ctx.b("causal");
  int vec = aligned16(k) && aligned16(v) && d % 8 == 0;
  void* args[] = {&q, &k, &v, &o, &lse, &sq, &sk, &scale_log2, &causal, &vec};
  const int rows = kFlashRowWarps * 16 * flash_row_tiles(d);  // per block
  const dim3 grid(static_cast<unsigned>((sq + rows - 1) / rows), static_cast<unsigned>(batch));
  launch(dev, get_kernel(dev, source(qt.dtype(), d), "ds_flash_fwd_mma"), grid,
         dim3(kFlashRowWarps * 32), args, 0, "scaled_dot_product_attention (tensor cores)");
}

const OpRegistrar reg([] {
  register_kernel("scaled_dot_product_attention", DeviceKind::CUDA,
                  {forward, flash_mma_supported, "nvrtc-flash-mma", 20});
});

}  // namespace

int flash_row_tiles(int64_t d) {
  return d > 64 ? 1 : 2;  // two fit the registers up to D = 64
}

std::string flash_mma_common(DType t, int64_t d, int warps) {
  return detail::cat("#define DS_BF16 ", t == DType::BFloat16 ? 1 : 0, "\nconstexpr int D = ", d,
                     ";\nconstexpr int WARPS = ", warps,
                     ";\nconstexpr int MI = ", flash_row_tiles(d), ";\n", kCommon, kRows);
}

bool flash_mma_supported(const OpContext& c) {
  const TensorType& q = c.inputs[0];
  if (q.shape.size() < 2 || (q.dtype != DType::BFloat16 && q.dtype != DType::Float16)) return false;
  for (size_t i = 0; i < std::min(c.inputs.size(), ops::kLseInput); ++i)
    if (c.inputs[i].dtype != q.dtype) return false;
  const ops::AttentionDims a = ops::attention_dims(c);
  static const bool tensor_cores = device_count() > 0 && device_info(0).major >= 8;
  // [..., S, H, D] (bshd) goes to attention_kernels.cpp or cuDNN.
  return !a.bshd && a.dv == a.d && a.d % 16 == 0 && a.d <= 128 && a.sq < (1 << 30) &&
         a.sk < (1 << 30) && a.batch() < 65536 && c.f("scale") >= 0 && tensor_cores;
}

}  // namespace ds::cuda
