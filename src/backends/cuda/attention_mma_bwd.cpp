// Flash-attention backward on tensor cores (bf16/fp16, head sizes a multiple of
// 16 up to 128), recomputing the probabilities, in three kernels:
//  1. the forward's row loop (ds_flash_rows) without O: each query row's
//     log-sum-exp and delta = rowsum(dO * O) into scratch rows;
//  2. per block of keys (16 per warp) over the query tiles: S^T = K Q^T and
//     dP^T = V dO^T, P^T from the stored lse, dV += P^T dO and dK += dS^T Q in
//     registers, dQ += dS K through shared memory into an fp32 buffer that the
//     blocks of all key tiles add to with atomics (FlashAttention-2's split:
//     five products per tile instead of a separate dQ pass recomputing S, dP);
//  3. dq = scale * that buffer in the dtype.
// Products run as mma.sync m16n8k16 tiles with fp32 accumulators; P and dS are
// rounded to the 16-bit dtype as A fragments (as FlashAttention-2 does).
#include <algorithm>

#include "backends/cuda/attention_mma.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"
#include "ir/ops/attention.h"

namespace ds::cuda {
namespace {

// Warps per block of the main kernel (16 keys each): 4, two blocks per SM (about
// 230 registers a thread). On the H200 (bf16 16x12x1024x64) 8-warp blocks, one
// per SM with half the dQ atomics, took 0.99 ms against 0.95 ms.
constexpr int kWarps = 4;
constexpr int kRows = kWarps * 16;

const char* const kBackward = R"(
constexpr int ROWS = WARPS * 16;  // query (key) rows per block, 16 per warp

// ds_cp_async16 for 4 bytes.
__device__ __forceinline__ void ds_cp_async4(void* dst, const void* src, bool in) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;"
               :: "r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src), "r"(in ? 4 : 0) : "memory");
}
// Values [r0, r0 + BK) of a float vector into row[BK] (zeros past n), as ds_stage_rows.
__device__ __forceinline__ void ds_stage_floats(float* row, const float* m, int r0, int n, int vec) {
  for (int x = threadIdx.x; x < BK; x += blockDim.x) {
    const bool in = r0 + x < n;
    if (vec) {
      ds_cp_async4(&row[x], in ? m + r0 + x : m, in);
    } else {
      row[x] = in ? m[r0 + x] : 0.f;
    }
  }
}

// Each query row's log-sum-exp in the exp2 domain (one pass over the keys) and
// delta = rowsum(dO * O): the forward's row loop without O.
extern "C" __global__ void __launch_bounds__(ROW_WARPS * 32, 8 / ROW_WARPS) ds_flash_bwd_lse_mma(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
    const unsigned short* __restrict__ o, const unsigned short* __restrict__ g,
    float* __restrict__ lse, float* __restrict__ delta, int sq, int sk, float scale_log2,
    int causal, int vec) {
  ds_flash_rows<true, ROW_WARPS>(q, k, nullptr, nullptr, o, g, lse, delta, sq, sk, scale_log2,
                                 causal, vec);
}

// Adds a row's pair of dQ partials to the fp32 accumulator (one vector atomic on sm_90).
__device__ __forceinline__ void ds_add_pair(float* p, float a, float b) {
#if __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(p), make_float2(a, b));
#else
  atomicAdd(p, a);
  atomicAdd(p + 1, b);
#endif
}

// Per ROWS keys (16 per warp) over the query tiles (BK rows): S^T = K Q^T and
// dP^T = V dO^T, P^T from the stored lse, dS^T = P^T (dP^T - delta);
// dV += P^T dO and dK += dS^T Q stay in registers. dS goes through shared
// memory for dQ += dS K (each warp a 16-query by NPW n-tile part), which the
// blocks of all key tiles add into dq_acc (fp32) with atomics.
// Dynamic shared memory: qs, gs [2][BK][LD], kt [ROWS][LD], dss [ROWS][BK + 8],
// ls, dls [2][BK] (shared_bytes on the host).
extern "C" __global__ void __launch_bounds__(WARPS * 32, 8 / WARPS) ds_flash_bwd_mma(
    const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
    const unsigned short* __restrict__ v, const unsigned short* __restrict__ g,
    const float* __restrict__ lse, const float* __restrict__ delta, float* __restrict__ dq_acc,
    unsigned short* __restrict__ dk, unsigned short* __restrict__ dv, int sq, int sk,
    float scale_log2, float scale, int causal, int vec) {
  extern __shared__ __align__(16) unsigned char ds_smem[];
  unsigned short (*qs)[BK][LD] = reinterpret_cast<unsigned short (*)[BK][LD]>(ds_smem);
  unsigned short (*gs)[BK][LD] = qs + 2;
  unsigned short (*kt)[LD] = reinterpret_cast<unsigned short (*)[LD]>(gs + 2);
  unsigned short (*dss)[BK + 8] = reinterpret_cast<unsigned short (*)[BK + 8]>(kt + ROWS);
  float (*ls)[BK] = reinterpret_cast<float (*)[BK]>(dss + ROWS);
  float (*dls)[BK] = ls + 2;
  const long long bh = blockIdx.y;
  q += bh * sq * D; k += bh * sk * D; v += bh * sk * D; g += bh * sq * D;
  lse += bh * sq; delta += bh * sq; dq_acc += bh * sq * D; dk += bh * sk * D; dv += bh * sk * D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;
  const int kb = blockIdx.x * ROWS, j0 = kb + warp * 16;
  const int key_lo = j0 + gid, key_hi = j0 + gid + 8;
  // Causal: queries before the block's first key see none of its keys.
  const int first = causal ? kb : 0;
  const int tiles = first < sq ? (sq - first + BK - 1) / BK : 0;
  // The block's keys for dQ (first read after the first tile's barrier) and tile 0.
  if (tiles > 0) ds_stage_rows<ROWS>(kt, k, kb, sk, vec);
  if (vec && tiles > 0) {
    ds_stage_rows<BK>(qs[0], q, first, sq, 1);
    ds_stage_rows<BK>(gs[0], g, first, sq, 1);
    ds_stage_floats(ls[0], lse, first, sq, 1);
    ds_stage_floats(dls[0], delta, first, sq, 1);
    ds_cp_commit();
  }
  unsigned ka[KT][4], va[KT][4];
  ds_load_a(ka, k, j0, sk);
  ds_load_a(va, v, j0, sk);
  float dka[DT][4], dva[DT][4];
#pragma unroll
  for (int dn = 0; dn < DT; ++dn)
#pragma unroll
    for (int e = 0; e < 4; ++e) dka[dn][e] = dva[dn][e] = 0.f;
  constexpr int MT = BK / 16;  // query m-tiles of the dQ product
  constexpr int G = WARPS / MT;  // warps sharing an m-tile, each up to NPW adjacent head-dim n-tiles
  constexpr int NPW = (DT + G - 1) / G;
  static_assert(WARPS % MT == 0, "whole dQ m-tiles per warp");
  const int mt = warp % MT, n0 = (warp / MT) * NPW;
  for (int t = 0; t < tiles; ++t) {
    const int i0 = first + t * BK, buf = t & 1;
    if (vec) {
      ds_cp_wait_all();
    } else {
      ds_stage_rows<BK>(qs[buf], q, i0, sq, 0);
      ds_stage_rows<BK>(gs[buf], g, i0, sq, 0);
      ds_stage_floats(ls[buf], lse, i0, sq, 0);
      ds_stage_floats(dls[buf], delta, i0, sq, 0);
    }
    // B1: tile t is visible, and every warp is done with the previous tile's
    // buffers and dS, so the next tile's copies start and dS is rewritten.
    __syncthreads();
    if (vec && t + 1 < tiles) {
      ds_stage_rows<BK>(qs[buf ^ 1], q, i0 + BK, sq, 1);
      ds_stage_rows<BK>(gs[buf ^ 1], g, i0 + BK, sq, 1);
      ds_stage_floats(ls[buf ^ 1], lse, i0 + BK, sq, 1);
      ds_stage_floats(dls[buf ^ 1], delta, i0 + BK, sq, 1);
      ds_cp_commit();
    }
    // Masks only where the tile passes the last query, the warp passes the
    // last key or, causal, a key of the warp is after a query of the tile.
    const bool edge = i0 + BK > sq || j0 + 16 > sk || (causal && j0 + 15 > i0);
    float s[NT][4], dp[NT][4];  // S^T and dP^T: rows are keys, columns queries
#pragma unroll
    for (int nt = 0; nt < NT; nt += 2) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = s[nt + 1][e] = dp[nt][e] = dp[nt + 1][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) {
        unsigned b[4];
        ds_b_rows2(qs[buf], nt * 8, kk * 16, b);
        ds_mma(s[nt], ka[kk], b[0], b[1]);
        ds_mma(s[nt + 1], ka[kk], b[2], b[3]);
        ds_b_rows2(gs[buf], nt * 8, kk * 16, b);
        ds_mma(dp[nt], va[kk], b[0], b[1]);
        ds_mma(dp[nt + 1], va[kk], b[2], b[3]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int col = nt * 8 + tig * 2;
      const float2 l2 = *reinterpret_cast<const float2*>(&ls[buf][col]);
      const float2 d2 = *reinterpret_cast<const float2*>(&dls[buf][col]);
      s[nt][0] = ds_exp2(s[nt][0] * scale_log2 - l2.x);
      s[nt][1] = ds_exp2(s[nt][1] * scale_log2 - l2.y);
      s[nt][2] = ds_exp2(s[nt][2] * scale_log2 - l2.x);
      s[nt][3] = ds_exp2(s[nt][3] * scale_log2 - l2.y);
      if (edge) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int query = i0 + col + (e & 1), key = e < 2 ? key_lo : key_hi;
          if (query >= sq || key >= sk || (causal && key > query)) s[nt][e] = 0.f;
        }
      }
      dp[nt][0] = s[nt][0] * (dp[nt][0] - d2.x);  // dS^T
      dp[nt][1] = s[nt][1] * (dp[nt][1] - d2.y);
      dp[nt][2] = s[nt][2] * (dp[nt][2] - d2.x);
      dp[nt][3] = s[nt][3] * (dp[nt][3] - d2.y);
    }
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      unsigned pa[4], da[4];
      ds_to_a(pa, s[2 * kk], s[2 * kk + 1]);
      ds_to_a(da, dp[2 * kk], dp[2 * kk + 1]);
      // dS^T rounded as the dK operand, stored for dQ: rows keys, columns queries.
      const int r = warp * 16 + gid, c = kk * 16 + tig * 2;
      *reinterpret_cast<unsigned*>(&dss[r][c]) = da[0];
      *reinterpret_cast<unsigned*>(&dss[r + 8][c]) = da[1];
      *reinterpret_cast<unsigned*>(&dss[r][c + 8]) = da[2];
      *reinterpret_cast<unsigned*>(&dss[r + 8][c + 8]) = da[3];
#pragma unroll
      for (int dn = 0; dn < DT; dn += 2) {
        unsigned b[4];
        ds_b_cols2(gs[buf], kk * 16, dn * 8, b);
        ds_mma(dva[dn], pa, b[0], b[1]);
        ds_mma(dva[dn + 1], pa, b[2], b[3]);
        ds_b_cols2(qs[buf], kk * 16, dn * 8, b);
        ds_mma(dka[dn], da, b[0], b[1]);
        ds_mma(dka[dn + 1], da, b[2], b[3]);
      }
    }
    __syncthreads();  // B2: all of dS is stored
    // dQ rows [i0 + mt * 16, + 16), head-dim n-tiles grp, grp + G, ...: A = dS
    // from dss (stored transposed: ldmatrix .trans), B = K from kt.
    float qacc[NPW][4];
#pragma unroll
    for (int j = 0; j < NPW; ++j) qacc[j][0] = qacc[j][1] = qacc[j][2] = qacc[j][3] = 0.f;
    const int r_lo = i0 + mt * 16 + gid, r_hi = r_lo + 8;
#pragma unroll
    for (int kk = 0; kk < ROWS / 16; ++kk) {
      if (causal && kb + kk * 16 > i0 + mt * 16 + 15) break;  // these keys follow every query
      unsigned a[4];
      ds_ldsm_x4_trans(&dss[kk * 16 + (lane & 7) + ((lane >> 4) << 3)][mt * 16 + ((lane >> 3) & 1) * 8],
                       a);
#pragma unroll
      for (int j = 0; j < NPW; j += 2) {
        if (j + 1 < NPW && n0 + j + 1 < DT) {
          unsigned b[4];
          ds_b_cols2(kt, kk * 16, (n0 + j) * 8, b);
          ds_mma(qacc[j], a, b[0], b[1]);
          ds_mma(qacc[j + 1], a, b[2], b[3]);
        } else if (n0 + j < DT) {
          unsigned b[2];
          ds_b_cols(kt, kk * 16, (n0 + j) * 8, b);
          ds_mma(qacc[j], a, b[0], b[1]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < NPW; ++j) {
      const int c = (n0 + j) * 8 + tig * 2;
      if (n0 + j >= DT) break;
      if (r_lo < sq) ds_add_pair(dq_acc + (long long)r_lo * D + c, qacc[j][0], qacc[j][1]);
      if (r_hi < sq) ds_add_pair(dq_acc + (long long)r_hi * D + c, qacc[j][2], qacc[j][3]);
    }
  }
  ds_store_acc(dk, dka, j0, sk, scale);
  ds_store_acc(dv, dva, j0, sk, 1.f);
}

// dq = scale * dq_acc in the 16-bit dtype.
extern "C" __global__ void __launch_bounds__(256) ds_flash_bwd_dq_out(
    const float* __restrict__ acc, T* __restrict__ dq, long long n, float scale) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    dq[i] = ds_io<T>::store(acc[i] * scale);
}
)";

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

std::string source(DType t, int64_t d) {
  return detail::cat("typedef ", device_type(t), " T;\nconstexpr int ROW_WARPS = ", kFlashRowWarps,
                     ";\n", flash_mma_common(t, d, kWarps), kBackward);
}

// ds_flash_bwd_mma's dynamic shared memory (its tile constants as in kCommon).
size_t shared_bytes(int64_t d) {
  const size_t bk = d > 64 ? 32 : 64, ld = static_cast<size_t>(d) + 8;
  return 2 * (4 * bk * ld + kRows * ld + kRows * (bk + 8)) + 4 * bk * sizeof(float);
}

void backward(const KernelCall& kc) {
  const Tensor& qt = kc.inputs[0];
  const ops::AttentionDims a = ops::attention_dims(kc.ctx);
  const int64_t batch = a.batch(), d = a.d;
  int sq = static_cast<int>(a.sq), sk = static_cast<int>(a.sk);
  if (batch == 0) return;
  const int dev = call_device(kc);
  cudaStream_t stream = stream_of(dev);
  if (sq == 0) {  // no queries: dk and dv are zero
    for (int i : {1, 2})
      DS_CUDA_CHECK(cudaMemsetAsync(kc.outputs[i].raw_data(), 0, kc.outputs[i].nbytes(), stream));
    return;
  }
  const void *q = qt.raw_data(), *k = kc.inputs[1].raw_data(), *v = kc.inputs[2].raw_data(),
             *o = kc.inputs[3].raw_data(), *g = kc.inputs[4].raw_data();
  void *dq = kc.outputs[0].raw_data(), *dk = kc.outputs[1].raw_data(),
       *dv = kc.outputs[2].raw_data();
  // Scratch: dq's fp32 accumulator, then per-row lse and delta.
  const size_t rows = static_cast<size_t>(batch) * static_cast<size_t>(sq);
  const size_t dq_elems = rows * static_cast<size_t>(d);
  float* dq_acc =
      static_cast<float*>(attention_scratch(dev, (dq_elems + 2 * rows) * sizeof(float)));
  float* lse = dq_acc + dq_elems;
  float* delta = lse + rows;
  DS_CUDA_CHECK(cudaMemsetAsync(dq_acc, 0, dq_elems * sizeof(float), stream));
  const double s = ops::attention_scale(kc.ctx, d);
  float scale = static_cast<float>(s), scale_log2 = static_cast<float>(s * 1.4426950408889634);
  int causal = kc.ctx.b("causal");
  int vec = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(g) && d % 8 == 0;
  const std::string src = source(qt.dtype(), d);
  const unsigned ys = static_cast<unsigned>(batch);
  const int lse_rows = kFlashRowWarps * 16 * flash_row_tiles(d);  // per block of the first kernel
  void* args_lse[] = {&q, &k, &o, &g, &lse, &delta, &sq, &sk, &scale_log2, &causal, &vec};
  launch(dev, get_kernel(dev, src, "ds_flash_bwd_lse_mma"),
         dim3(static_cast<unsigned>((sq + lse_rows - 1) / lse_rows), ys), dim3(kFlashRowWarps * 32),
         args_lse, 0, "scaled_dot_product_attention_backward (lse, delta, tensor cores)");
  const float *lse_c = lse, *delta_c = delta;
  void* args[] = {&q,  &k,  &v,  &g,          &lse_c, &delta_c, &dq_acc, &dk,
                  &dv, &sq, &sk, &scale_log2, &scale, &causal,  &vec};
  const cudaKernel_t main_kernel = get_kernel(dev, src, "ds_flash_bwd_mma");
  const size_t shared = shared_bytes(d);
  // Over the 48 KiB default: set on every call (a reloaded library's kernel
  // may reuse an older handle), a host-side attribute with no stream work.
  DS_CUDA_CHECK(cudaKernelSetAttributeForDevice(
      main_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared), dev));
  launch(dev, main_kernel, dim3(static_cast<unsigned>((sk + kRows - 1) / kRows), ys),
         dim3(kWarps * 32), args, shared, "scaled_dot_product_attention_backward (tensor cores)");
  const float* acc_c = dq_acc;
  long long n = static_cast<long long>(dq_elems);
  void* args_out[] = {&acc_c, &dq, &n, &scale};
  const long long blocks = std::min<long long>((n + 255) / 256, 65536);
  launch(dev, get_kernel(dev, src, "ds_flash_bwd_dq_out"), dim3(static_cast<unsigned>(blocks)),
         dim3(256), args_out, 0, "scaled_dot_product_attention_backward (dq, tensor cores)");
}

const OpRegistrar reg([] {
  register_kernel("scaled_dot_product_attention_backward", DeviceKind::CUDA,
                  {backward, flash_mma_supported, "nvrtc-flash-mma", 20});
});

}  // namespace
}  // namespace ds::cuda
