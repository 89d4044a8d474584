// Flash-attention backward on tensor cores (bf16/fp16, head sizes a multiple of
// 16 up to 128), in two kernels that recompute the probabilities:
//  1. per 128 query rows (8 warps x 16): log-sum-exp (one pass over the keys),
//     delta = rowsum(dO * O), then dS = P (dO V^T - delta) and dQ += dS K;
//     lse and delta go to scratch rows for kernel 2.
//  2. per 128 keys (8 warps x 16): S^T = K Q^T and dP^T = V dO^T per query tile,
//     P^T from the stored lse, dV += P^T dO and dK += dS^T Q.
// Products run as mma.sync m16n8k16 tiles with fp32 accumulators; P and dS are
// rounded to the 16-bit dtype as A fragments (as FlashAttention-2 does).
#include <cmath>

#include "backends/cuda/attention_mma.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

const char* const kBackward = R"(
extern "C" __global__ void __launch_bounds__(WARPS * 32) ds_flash_bwd_dq_mma(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
    const unsigned short* __restrict__ v, const unsigned short* __restrict__ o,
    const unsigned short* __restrict__ g, unsigned short* __restrict__ dq, float* __restrict__ lse,
    float* __restrict__ delta, int sq, int sk, float scale_log2, float scale, int causal, int vec) {
  __shared__ __align__(16) unsigned short ks[2][BK][LD];  // double-buffered (ds_pipeline)
  __shared__ __align__(16) unsigned short vs[2][BK][LD];
  const long long bh = blockIdx.y;
  q += bh * sq * D; k += bh * sk * D; v += bh * sk * D; o += bh * sq * D; g += bh * sq * D;
  dq += bh * sq * D; lse += bh * sq; delta += bh * sq;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;
  const int q0 = blockIdx.x * ROWS + warp * 16;
  const int row_lo = q0 + gid, row_hi = q0 + gid + 8;
  unsigned qa[KT][4], ga[KT][4];
  ds_load_a(qa, q, q0, sq);
  ds_load_a(ga, g, q0, sq);
  // delta: this thread sums the head dims tig, tig + 4, ... of its two rows.
  float d_lo = 0.f, d_hi = 0.f;
  for (int c = tig; c < D; c += 4) {
    if (row_lo < sq) d_lo += ds_io<T>::load(((const T*)g)[(long long)row_lo * D + c]) * ds_io<T>::load(((const T*)o)[(long long)row_lo * D + c]);
    if (row_hi < sq) d_hi += ds_io<T>::load(((const T*)g)[(long long)row_hi * D + c]) * ds_io<T>::load(((const T*)o)[(long long)row_hi * D + c]);
  }
#pragma unroll
  for (int x = 1; x < 4; x <<= 1) {
    d_lo += __shfl_xor_sync(0xffffffffu, d_lo, x);
    d_hi += __shfl_xor_sync(0xffffffffu, d_hi, x);
  }
  const int kend = causal ? min(sk, (int)(blockIdx.x + 1) * ROWS) : sk;
  const int tiles = (kend + BK - 1) / BK;
  // Pass 1: each row's log-sum-exp in the exp2 domain.
  float m_lo = -DS_INF, m_hi = -DS_INF, l_lo = 0.f, l_hi = 0.f;
  for (int t = 0; t < tiles; ++t) {
    const int k0 = t * BK, buf = t & 1;
    ds_pipeline(t, tiles, ks, k, nullptr, nullptr, 0, sk, vec);
    float s[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) {
        unsigned b0, b1;
        ds_b_rows(ks[buf], nt * 8, kk * 16, b0, b1);
        ds_mma(s[nt], qa[kk], b0, b1);
      }
    }
    float t_lo = -DS_INF, t_hi = -DS_INF;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + nt * 8 + tig * 2 + (e & 1);
        const bool off = key >= sk || (causal && key > (e < 2 ? row_lo : row_hi));
        s[nt][e] = off ? -DS_INF : s[nt][e] * scale_log2;
        if (e < 2) t_lo = fmaxf(t_lo, s[nt][e]); else t_hi = fmaxf(t_hi, s[nt][e]);
      }
#pragma unroll
    for (int x = 1; x < 4; x <<= 1) {
      t_lo = fmaxf(t_lo, __shfl_xor_sync(0xffffffffu, t_lo, x));
      t_hi = fmaxf(t_hi, __shfl_xor_sync(0xffffffffu, t_hi, x));
    }
    const float n_lo = fmaxf(m_lo, t_lo), n_hi = fmaxf(m_hi, t_hi);
    const float b_lo = n_lo == -DS_INF ? 0.f : n_lo, b_hi = n_hi == -DS_INF ? 0.f : n_hi;
    l_lo *= exp2f(m_lo - b_lo);
    l_hi *= exp2f(m_hi - b_hi);
    m_lo = n_lo;
    m_hi = n_hi;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      l_lo += exp2f(s[nt][0] - b_lo) + exp2f(s[nt][1] - b_lo);
      l_hi += exp2f(s[nt][2] - b_hi) + exp2f(s[nt][3] - b_hi);
    }
    __syncthreads();
  }
#pragma unroll
  for (int x = 1; x < 4; x <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, x);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, x);
  }
  const float lse_lo = m_lo + log2f(l_lo), lse_hi = m_hi + log2f(l_hi);
  // Pass 2: dS = P (dP - delta), dQ += dS K.
  float acc[DT][4];
#pragma unroll
  for (int dn = 0; dn < DT; ++dn) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.f;
  for (int t = 0; t < tiles; ++t) {
    const int k0 = t * BK, buf = t & 1;
    ds_pipeline(t, tiles, ks, k, vs, v, 0, sk, vec);
    float s[NT][4], dp[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) {
        unsigned b0, b1;
        ds_b_rows(ks[buf], nt * 8, kk * 16, b0, b1);
        ds_mma(s[nt], qa[kk], b0, b1);
        ds_b_rows(vs[buf], nt * 8, kk * 16, b0, b1);
        ds_mma(dp[nt], ga[kk], b0, b1);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + nt * 8 + tig * 2 + (e & 1);
        const bool lo = e < 2;
        const bool off = key >= sk || (causal && key > (lo ? row_lo : row_hi));
        const float p = off ? 0.f : exp2f(s[nt][e] * scale_log2 - (lo ? lse_lo : lse_hi));
        s[nt][e] = p * (dp[nt][e] - (lo ? d_lo : d_hi));  // dS
      }
    }
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      unsigned da[4];
      ds_to_a(da, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int dn = 0; dn < DT; ++dn) {
        unsigned b0, b1;
        ds_b_cols(ks[buf], kk * 16, dn * 8, b0, b1);
        ds_mma(acc[dn], da, b0, b1);
      }
    }
    __syncthreads();
  }
  ds_store_acc(dq, acc, q0, sq, scale);
  if (tig == 0) {
    if (row_lo < sq) { lse[row_lo] = lse_lo; delta[row_lo] = d_lo; }
    if (row_hi < sq) { lse[row_hi] = lse_hi; delta[row_hi] = d_hi; }
  }
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) ds_flash_bwd_dkv_mma(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
    const unsigned short* __restrict__ v, const unsigned short* __restrict__ g,
    const float* __restrict__ lse, const float* __restrict__ delta, unsigned short* __restrict__ dk,
    unsigned short* __restrict__ dv, int sq, int sk, float scale_log2, float scale, int causal,
    int vec) {
  __shared__ __align__(16) unsigned short qs[2][BK][LD];  // double-buffered (ds_pipeline)
  __shared__ __align__(16) unsigned short gs[2][BK][LD];
  __shared__ float ls[BK], dls[BK];
  const long long bh = blockIdx.y;
  q += bh * sq * D; k += bh * sk * D; v += bh * sk * D; g += bh * sq * D;
  lse += bh * sq; delta += bh * sq; dk += bh * sk * D; dv += bh * sk * D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;
  const int j0 = blockIdx.x * ROWS + warp * 16;
  const int key_lo = j0 + gid, key_hi = j0 + gid + 8;
  unsigned ka[KT][4], va[KT][4];
  ds_load_a(ka, k, j0, sk);
  ds_load_a(va, v, j0, sk);
  float dka[DT][4], dva[DT][4];
#pragma unroll
  for (int dn = 0; dn < DT; ++dn)
#pragma unroll
    for (int e = 0; e < 4; ++e) dka[dn][e] = dva[dn][e] = 0.f;
  // Causal: queries before the block's first key see none of its keys.
  const int first = causal ? (int)blockIdx.x * ROWS : 0;
  const int tiles = first < sq ? (sq - first + BK - 1) / BK : 0;
  for (int t = 0; t < tiles; ++t) {
    const int i0 = first + t * BK, buf = t & 1;
    for (int x = threadIdx.x; x < BK; x += blockDim.x) {
      ls[x] = i0 + x < sq ? lse[i0 + x] : 0.f;
      dls[x] = i0 + x < sq ? delta[i0 + x] : 0.f;
    }
    ds_pipeline(t, tiles, qs, q, gs, g, first, sq, vec);
    float s[NT][4], dp[NT][4];  // S^T and dP^T: rows are keys, columns queries
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) {
        unsigned b0, b1;
        ds_b_rows(qs[buf], nt * 8, kk * 16, b0, b1);
        ds_mma(s[nt], ka[kk], b0, b1);
        ds_b_rows(gs[buf], nt * 8, kk * 16, b0, b1);
        ds_mma(dp[nt], va[kk], b0, b1);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = nt * 8 + tig * 2 + (e & 1);
        const int query = i0 + col;
        const int key = e < 2 ? key_lo : key_hi;
        const bool off = query >= sq || (causal && key > query);
        const float p = off ? 0.f : exp2f(s[nt][e] * scale_log2 - ls[col]);
        s[nt][e] = p;                        // P^T
        dp[nt][e] = p * (dp[nt][e] - dls[col]);  // dS^T
      }
    }
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      unsigned pa[4], da[4];
      ds_to_a(pa, s[2 * kk], s[2 * kk + 1]);
      ds_to_a(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int dn = 0; dn < DT; ++dn) {
        unsigned b0, b1;
        ds_b_cols(gs[buf], kk * 16, dn * 8, b0, b1);
        ds_mma(dva[dn], pa, b0, b1);
        ds_b_cols(qs[buf], kk * 16, dn * 8, b0, b1);
        ds_mma(dka[dn], da, b0, b1);
      }
    }
    __syncthreads();
  }
  ds_store_acc(dk, dka, j0, sk, scale);
  ds_store_acc(dv, dva, j0, sk, 1.f);
}
)";

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

std::string source(DType t, int64_t d) {
  return detail::cat("typedef ", device_type(t), " T;\n", flash_mma_common(t, d), kBackward);
}

void backward(const KernelCall& kc) {
  const Tensor& qt = kc.inputs[0];
  const size_t r = static_cast<size_t>(qt.ndim());
  int64_t batch = 1;
  for (size_t i = 0; i + 2 < r; ++i) batch *= qt.shape()[i];
  const int64_t d = qt.shape()[r - 1];
  int sq = static_cast<int>(qt.shape()[r - 2]);
  int sk = static_cast<int>(kc.inputs[1].shape()[r - 2]);
  if (batch == 0) return;
  const int dev = call_device(kc);
  if (sq == 0) {  // no queries: dk and dv are zero
    for (int i : {1, 2})
      DS_CUDA_CHECK(cudaMemsetAsync(kc.outputs[i].raw_data(), 0, kc.outputs[i].nbytes(),
                                    stream_of(dev)));
    return;
  }
  const void *q = qt.raw_data(), *k = kc.inputs[1].raw_data(), *v = kc.inputs[2].raw_data(),
             *o = kc.inputs[3].raw_data(), *g = kc.inputs[4].raw_data();
  void *dq = kc.outputs[0].raw_data(), *dk = kc.outputs[1].raw_data(),
       *dv = kc.outputs[2].raw_data();
  const size_t rows = static_cast<size_t>(batch) * static_cast<size_t>(sq);
  float* lse = static_cast<float*>(attention_scratch(dev, 2 * rows * sizeof(float)));
  float* delta = lse + rows;
  const double s = kc.ctx.f("scale") != 0 ? kc.ctx.f("scale") : 1.0 / std::sqrt(double(d));
  float scale = static_cast<float>(s), scale_log2 = static_cast<float>(s * 1.4426950408889634);
  int causal = kc.ctx.b("causal");
  int vec = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(g) && d % 8 == 0;
  const std::string src = source(qt.dtype(), d);
  const unsigned ys = static_cast<unsigned>(batch);
  void* args_q[] = {&q, &k, &v, &o, &g, &dq, &lse, &delta, &sq, &sk, &scale_log2, &scale,
                    &causal, &vec};
  launch(dev, get_kernel(dev, src, "ds_flash_bwd_dq_mma"),
         dim3(static_cast<unsigned>((sq + kFlashRows - 1) / kFlashRows), ys), dim3(kFlashWarps * 32),
         args_q, 0,
         "scaled_dot_product_attention_backward (dq, tensor cores)");
  const float *lse_c = lse, *delta_c = delta;
  void* args_kv[] = {&q, &k, &v, &g, &lse_c, &delta_c, &dk, &dv, &sq, &sk, &scale_log2, &scale,
                     &causal, &vec};
  launch(dev, get_kernel(dev, src, "ds_flash_bwd_dkv_mma"),
         dim3(static_cast<unsigned>((sk + kFlashRows - 1) / kFlashRows), ys), dim3(kFlashWarps * 32),
         args_kv, 0,
         "scaled_dot_product_attention_backward (dk, dv, tensor cores)");
}

const OpRegistrar reg([] {
  register_kernel("scaled_dot_product_attention_backward", DeviceKind::CUDA,
                  {backward, flash_mma_supported, "nvrtc-flash-mma", 20});
});

}  // namespace
}  // namespace ds::cuda
