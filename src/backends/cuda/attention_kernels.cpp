// Fused attention on CUDA (NVRTC), flash-attention style: q, k, v are read once
// per tile, the score matrix never reaches memory. A group of TPR threads owns
// one query row (forward, dq) or one key row (dk, dv), each thread DP = D / TPR
// of its head dims in registers; key (or query) tiles are staged in shared
// memory in the accumulator type (float; double for float64), so bf16/fp16
// inputs accumulate in fp32. The forward keeps an online softmax (running max
// and sum, rescaling the output row). The backward recomputes the probabilities:
// kernel 1 (per query row) finds each row's log-sum-exp and delta = rowsum(dO*O),
// then accumulates dq; kernel 2 (per key row) accumulates dk and dv from them.
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include "backends/cuda/attention_mma.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"
#include "ir/ops/attention.h"

namespace ds::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxHeadDim = 128;

const char* const kAttention = R"(
typedef ds_io<T>::acc A;
constexpr int DP = D / TPR;      // head dims per thread
constexpr int ROWS = 128 / TPR;  // rows per block
__device__ __forceinline__ A ds_exp(A x) { return exp(x); }
// Sums v over the TPR lanes sharing a row (adjacent lanes).
__device__ __forceinline__ A ds_row_sum(A v) {
#pragma unroll
  for (int o = 1; o < TPR; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Rows are RS elements apart: D for [BH, S, D] tensors, H * D for [B, S, H, D]
// ones (H > 0, layout "bshd"); ds_base is where batch-head bh's rows start.
constexpr int RS = H > 0 ? H * D : D;
__device__ __forceinline__ long long ds_base(long long bh, int s) {
  return H > 0 ? ((bh / H) * s * H + bh % H) * (long long)D : bh * s * (long long)D;
}
// rows [r0, r0 + BT) of a [n, D] matrix into tile[BT][D] (zeros past n).
__device__ __forceinline__ void ds_stage(A (*tile)[D], const T* m, int r0, int n) {
  for (int t = threadIdx.x; t < BT * D; t += blockDim.x) {
    const int r = t / D, d = t % D;
    tile[r][d] = r0 + r < n ? ds_io<T>::load(m[(long long)(r0 + r) * RS + d]) : A(0);
  }
}

extern "C" __global__ void __launch_bounds__(128) ds_attn_fwd(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
    A* __restrict__ lse, int sq, int sk, A scale, int causal) {
  __shared__ A ks[BT][D];
  __shared__ A vs[BT][D];
  const long long bh = blockIdx.y;
  q += ds_base(bh, sq); k += ds_base(bh, sk); v += ds_base(bh, sk); o += ds_base(bh, sq);
  lse += bh * sq;
  const int row = blockIdx.x * ROWS + threadIdx.x / TPR, part = threadIdx.x % TPR;
  const bool active = row < sq;
  A qv[DP], acc[DP];
#pragma unroll
  for (int e = 0; e < DP; ++e) {
    qv[e] = active ? ds_io<T>::load(q[(long long)row * RS + part * DP + e]) * scale : A(0);
    acc[e] = A(0);
  }
  A m = -A(DS_INF), l = A(0);
  const int kend = causal ? min(sk, (int)(blockIdx.x + 1) * ROWS) : sk;
  for (int k0 = 0; k0 < kend; k0 += BT) {
    __syncthreads();
    ds_stage(ks, k, k0, sk);
    ds_stage(vs, v, k0, sk);
    __syncthreads();
    const int jn = min(BT, kend - k0);
    for (int j = 0; j < jn; ++j) {
      A s = A(0);
#pragma unroll
      for (int e = 0; e < DP; ++e) s += qv[e] * ks[j][part * DP + e];
      s = ds_row_sum(s);
      if (causal && k0 + j > row) continue;
      if (s > m) {
        const A c = ds_exp(m - s);
        l *= c;
#pragma unroll
        for (int e = 0; e < DP; ++e) acc[e] *= c;
        m = s;
      }
      const A p = ds_exp(s - m);
      l += p;
#pragma unroll
      for (int e = 0; e < DP; ++e) acc[e] += p * vs[j][part * DP + e];
    }
  }
  if (active) {
#pragma unroll
    for (int e = 0; e < DP; ++e) o[(long long)row * RS + part * DP + e] = ds_io<T>::store(acc[e] / l);
    if (part == 0) lse[row] = m + log(l);
  }
}

// Per query row: lse and delta (stored for the second kernel), then dq.
extern "C" __global__ void __launch_bounds__(128) ds_attn_bwd_q(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
    const T* __restrict__ o, const T* __restrict__ g, T* __restrict__ dq, A* __restrict__ lse,
    A* __restrict__ delta, int sq, int sk, A scale, int causal) {
  __shared__ A ks[BT][D];
  __shared__ A vs[BT][D];
  const long long bh = blockIdx.y;
  q += ds_base(bh, sq); k += ds_base(bh, sk); v += ds_base(bh, sk); o += ds_base(bh, sq);
  g += ds_base(bh, sq); dq += ds_base(bh, sq); lse += bh * sq; delta += bh * sq;
  const int row = blockIdx.x * ROWS + threadIdx.x / TPR, part = threadIdx.x % TPR;
  const bool active = row < sq;
  A qv[DP], gv[DP], acc[DP];
  A dl = A(0);
#pragma unroll
  for (int e = 0; e < DP; ++e) {
    const long long at = (long long)row * RS + part * DP + e;
    qv[e] = active ? ds_io<T>::load(q[at]) * scale : A(0);
    gv[e] = active ? ds_io<T>::load(g[at]) : A(0);
    dl += active ? gv[e] * ds_io<T>::load(o[at]) : A(0);
    acc[e] = A(0);
  }
  dl = ds_row_sum(dl);
  const int kend = causal ? min(sk, (int)(blockIdx.x + 1) * ROWS) : sk;
  A m = -A(DS_INF), l = A(0);
  for (int k0 = 0; k0 < kend; k0 += BT) {
    __syncthreads();
    ds_stage(ks, k, k0, sk);
    __syncthreads();
    const int jn = min(BT, kend - k0);
    for (int j = 0; j < jn; ++j) {
      A s = A(0);
#pragma unroll
      for (int e = 0; e < DP; ++e) s += qv[e] * ks[j][part * DP + e];
      s = ds_row_sum(s);
      if (causal && k0 + j > row) continue;
      if (s > m) { l *= ds_exp(m - s); m = s; }
      l += ds_exp(s - m);
    }
  }
  const A lrow = m + log(l);
  for (int k0 = 0; k0 < kend; k0 += BT) {
    __syncthreads();
    ds_stage(ks, k, k0, sk);
    ds_stage(vs, v, k0, sk);
    __syncthreads();
    const int jn = min(BT, kend - k0);
    for (int j = 0; j < jn; ++j) {
      A s = A(0), dp = A(0);
#pragma unroll
      for (int e = 0; e < DP; ++e) {
        s += qv[e] * ks[j][part * DP + e];
        dp += gv[e] * vs[j][part * DP + e];
      }
      s = ds_row_sum(s);
      dp = ds_row_sum(dp);
      if (causal && k0 + j > row) continue;
      const A ds = ds_exp(s - lrow) * (dp - dl);
#pragma unroll
      for (int e = 0; e < DP; ++e) acc[e] += ds * ks[j][part * DP + e];
    }
  }
  if (active) {
#pragma unroll
    for (int e = 0; e < DP; ++e)
      dq[(long long)row * RS + part * DP + e] = ds_io<T>::store(acc[e] * scale);
    if (part == 0) { lse[row] = lrow; delta[row] = dl; }
  }
}

// Per key row: dv = sum_i p_ij g_i, dk = scale * sum_i p_ij (dp_ij - delta_i) q_i.
extern "C" __global__ void __launch_bounds__(128) ds_attn_bwd_kv(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
    const T* __restrict__ g, const A* __restrict__ lse, const A* __restrict__ delta,
    T* __restrict__ dk, T* __restrict__ dv, int sq, int sk, A scale, int causal) {
  __shared__ A qs[BT][D];
  __shared__ A gs[BT][D];
  __shared__ A ls[BT], dls[BT];
  const long long bh = blockIdx.y;
  q += ds_base(bh, sq); k += ds_base(bh, sk); v += ds_base(bh, sk); g += ds_base(bh, sq);
  lse += bh * sq; delta += bh * sq; dk += ds_base(bh, sk); dv += ds_base(bh, sk);
  const int col = blockIdx.x * ROWS + threadIdx.x / TPR, part = threadIdx.x % TPR;
  const bool active = col < sk;
  A kv[DP], vv[DP], dka[DP], dva[DP];
#pragma unroll
  for (int e = 0; e < DP; ++e) {
    const long long at = (long long)col * RS + part * DP + e;
    kv[e] = active ? ds_io<T>::load(k[at]) * scale : A(0);
    vv[e] = active ? ds_io<T>::load(v[at]) : A(0);
    dka[e] = A(0);
    dva[e] = A(0);
  }
  // Causal: queries before the block's first key attend to none of its keys.
  const int istart = causal ? (int)blockIdx.x * ROWS : 0;
  for (int i0 = istart; i0 < sq; i0 += BT) {
    __syncthreads();
    ds_stage(qs, q, i0, sq);
    ds_stage(gs, g, i0, sq);
    for (int t = threadIdx.x; t < BT; t += blockDim.x) {
      ls[t] = i0 + t < sq ? lse[i0 + t] : A(0);
      dls[t] = i0 + t < sq ? delta[i0 + t] : A(0);
    }
    __syncthreads();
    const int in = min(BT, sq - i0);
    for (int i = 0; i < in; ++i) {
      A s = A(0), dp = A(0);
#pragma unroll
      for (int e = 0; e < DP; ++e) {
        s += kv[e] * qs[i][part * DP + e];
        dp += vv[e] * gs[i][part * DP + e];
      }
      s = ds_row_sum(s);
      dp = ds_row_sum(dp);
      if (causal && col > i0 + i) continue;
      const A p = ds_exp(s - ls[i]);
      const A ds = p * (dp - dls[i]);
#pragma unroll
      for (int e = 0; e < DP; ++e) {
        dva[e] += p * gs[i][part * DP + e];
        dka[e] += ds * qs[i][part * DP + e];
      }
    }
  }
  if (active)
#pragma unroll
    for (int e = 0; e < DP; ++e) {
      const long long at = (long long)col * RS + part * DP + e;
      dk[at] = ds_io<T>::store(dka[e] * scale);
      dv[at] = ds_io<T>::store(dva[e]);
    }
}
)";

struct Geometry {
  int64_t batch = 1, sq = 0, sk = 0, d = 0;
  int64_t heads = 0;  // layout "bshd": [..., S, H, D] with H heads; 0: [..., S, D] per batch-head
  int tpr = 1;        // threads per row
  int tile = 0;
};

// Threads per row so that each holds at most 32 head dims; 0 when D does not split.
int threads_per_row(int64_t d) {
  for (int t : {1, 2, 4})
    if (d % t == 0 && d / t <= 32) return t;
  return 0;
}

Geometry geometry(const OpContext& c) {
  const ops::AttentionDims a = ops::attention_dims(c);
  Geometry g;
  g.batch = a.batch();
  g.heads = a.bshd ? a.h : 0;
  g.sq = a.sq;
  g.sk = a.sk;
  g.d = a.d;
  g.tpr = threads_per_row(g.d);
  // Two tiles of [tile, D] accumulators in at most 40 KiB of shared memory.
  const int64_t acc = c.inputs[0].dtype == DType::Float64 ? 8 : 4;
  g.tile = static_cast<int>(std::clamp<int64_t>(40960 / (2 * g.d * acc + 16), 8, 64));
  return g;
}

// Float dtypes, v's head size equal to q's, D <= 128 and splitting into threads,
// sizes within the int indices of the kernels.
bool supported(const OpContext& c) {
  const TensorType& q = c.inputs[0];
  if (q.shape.size() < 2 || !nvrtc_float(q.dtype)) return false;
  for (size_t i = 0; i < std::min(c.inputs.size(), ops::kLseInput); ++i)
    if (c.inputs[i].dtype != q.dtype) return false;
  const Geometry g = geometry(c);
  const int64_t dv = c.inputs[2].shape.back();
  return dv == g.d && g.d > 0 && g.d <= kMaxHeadDim && g.tpr > 0 && g.sq < (1 << 30) &&
         g.sk < (1 << 30) && g.batch < 65536;
}

std::string source(DType t, const Geometry& g) {
  return detail::cat("typedef ", device_type(t), " T;\nconstexpr int D = ", g.d,
                     ";\nconstexpr int H = ", g.heads, ";\nconstexpr int TPR = ", g.tpr,
                     ";\nconstexpr int BT = ", g.tile, ";\n", kAttention);
}

// The kernels take the scale in the accumulator type.
struct Scale {
  float f;
  double d;
  void* arg(DType t) {
    return t == DType::Float64 ? static_cast<void*>(&d) : static_cast<void*>(&f);
  }
};

dim3 grid_of(int64_t rows, const Geometry& g) {
  const int64_t per_block = kThreads / g.tpr;
  return dim3(static_cast<unsigned>((rows + per_block - 1) / per_block),
              static_cast<unsigned>(g.batch));
}

void forward(const KernelCall& kc) {
  const Geometry g = geometry(kc.ctx);
  if (g.batch == 0 || g.sq == 0) return;
  const int dev = call_device(kc);
  const DType t = kc.inputs[0].dtype();
  const void *q = kc.inputs[0].raw_data(), *k = kc.inputs[1].raw_data(),
             *v = kc.inputs[2].raw_data();
  void *o = kc.outputs[0].raw_data(), *lse = kc.outputs[1].raw_data();
  int sq = static_cast<int>(g.sq), sk = static_cast<int>(g.sk), causal = kc.ctx.b("causal");
  const double s = ops::attention_scale(kc.ctx, g.d);
  Scale scale{static_cast<float>(s), s};
  void* args[] = {&q, &k, &v, &o, &lse, &sq, &sk, scale.arg(t), &causal};
  launch(dev, get_kernel(dev, source(t, g), "ds_attn_fwd"), grid_of(g.sq, g), dim3(kThreads), args,
         0, "scaled_dot_product_attention");
}

void backward(const KernelCall& kc) {
  const Geometry g = geometry(kc.ctx);
  if (g.batch == 0) return;
  const int dev = call_device(kc);
  const DType t = kc.inputs[0].dtype();
  if (g.sq == 0) {  // no queries: dk and dv are zero
    for (int i : {1, 2})
      DS_CUDA_CHECK(
          cudaMemsetAsync(kc.outputs[i].raw_data(), 0, kc.outputs[i].nbytes(), stream_of(dev)));
    return;
  }
  const std::string src = source(t, g);
  const void *q = kc.inputs[0].raw_data(), *k = kc.inputs[1].raw_data(),
             *v = kc.inputs[2].raw_data(), *o = kc.inputs[3].raw_data(),
             *gr = kc.inputs[4].raw_data();
  void *dq = kc.outputs[0].raw_data(), *dk = kc.outputs[1].raw_data(),
       *dv = kc.outputs[2].raw_data();
  const size_t acc = t == DType::Float64 ? 8 : 4;
  const size_t rows = static_cast<size_t>(g.batch * g.sq);
  char* base = static_cast<char*>(attention_scratch(dev, 2 * rows * acc));
  void *lse = base, *delta = base + rows * acc;
  int sq = static_cast<int>(g.sq), sk = static_cast<int>(g.sk), causal = kc.ctx.b("causal");
  const double s = ops::attention_scale(kc.ctx, g.d);
  Scale scale{static_cast<float>(s), s};
  void* args_q[] = {&q, &k, &v, &o, &gr, &dq, &lse, &delta, &sq, &sk, scale.arg(t), &causal};
  launch(dev, get_kernel(dev, src, "ds_attn_bwd_q"), grid_of(g.sq, g), dim3(kThreads), args_q, 0,
         "scaled_dot_product_attention_backward (dq)");
  const void *lse_c = lse, *delta_c = delta;
  void* args_kv[] = {&q, &k, &v, &gr, &lse_c, &delta_c, &dk, &dv, &sq, &sk, scale.arg(t), &causal};
  launch(dev, get_kernel(dev, src, "ds_attn_bwd_kv"), grid_of(g.sk, g), dim3(kThreads), args_kv, 0,
         "scaled_dot_product_attention_backward (dk, dv)");
}

const OpRegistrar reg([] {
  register_kernel("scaled_dot_product_attention", DeviceKind::CUDA,
                  {forward, supported, "nvrtc-flash", 10});
  register_kernel("scaled_dot_product_attention_backward", DeviceKind::CUDA,
                  {backward, supported, "nvrtc-flash", 10});
});

}  // namespace

void* attention_scratch(int device, size_t bytes) {
  static std::mutex mu;
  static auto* held = new std::map<int, std::vector<std::shared_ptr<void>>>;
  static auto* sizes = new std::map<int, size_t>;
  std::lock_guard<std::mutex> lock(mu);
  auto& list = (*held)[device];
  if (list.empty() || (*sizes)[device] < bytes) {
    list.push_back(allocate(bytes, device));
    (*sizes)[device] = bytes;
  }
  return list.back().get();
}

}  // namespace ds::cuda
