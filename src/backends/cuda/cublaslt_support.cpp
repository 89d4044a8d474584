#include "backends/cuda/cublaslt_support.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "backends/cuda/strided_copy.h"
#include "ds/cuda.h"

namespace ds::cuda {

LtDevice& lt_device(int device) {
  static std::mutex mu;
  static auto* all = new std::map<int, LtDevice>;  // leaked: handles live to exit
  std::lock_guard<std::mutex> lock(mu);
  LtDevice& d = (*all)[device];
  if (!d.handle) {
    set_device(device);
    DS_CUBLAS_CHECK(cublasLtCreate(&d.handle));
    d.workspace = allocate(kLtWorkspaceBytes, device);
  }
  return d;
}

cudaDataType_t lt_data_type(DType t) {
  switch (t) {
    case DType::Float16: return CUDA_R_16F;
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float64: return CUDA_R_64F;
    default: return CUDA_R_32F;
  }
}

bool lt_dtype(DType t) {
  return t == DType::Float32 || t == DType::Float16 || t == DType::BFloat16 || t == DType::Float64;
}

namespace {

// Elements per 16 bytes: cuBLASLt's fast (TMA) kernels need every leading
// dimension to be a multiple of it.
int64_t ld_quantum(DType t) { return 16 / static_cast<int64_t>(dtype_size(t)); }

int64_t round_up(int64_t v, int64_t q) { return (v + q - 1) / q * q; }

// dst[r][c] = c < lead ? src[r][c] : 0 for the whole contiguous dst [count][ld]
// (src rows of pitch src_ld). Each thread writes 16-byte packs (PK) of dst, read as
// P words that consecutive threads take from consecutive addresses, so both
// sides coalesce whatever the unaligned side's alignment; dst is walked flat, so
// a pack may span two rows (the unpadded side, ld = 50257 words). One division
// per row a thread crosses, not per pack. The tail (< P words) is word by word.
const char* const kPitchedCopy = R"(
extern "C" __global__ void ds_pitched_copy(const W* __restrict__ src, long long src_ld,
                                           W* __restrict__ dst, long long ld, long long lead,
                                           long long total) {
  const long long packs = total / P, step = (long long)gridDim.x * blockDim.x;
  long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  long long r = p * P / ld, c = p * P - r * ld;
  for (; p < packs; p += step) {
    union { PK v; W w[P]; } u;
    long long rr = r, cc = c;
#pragma unroll
    for (int j = 0; j < P; ++j) {
      u.w[j] = cc < lead ? src[rr * src_ld + cc] : W(0);
      if (++cc == ld) cc = 0, ++rr;
    }
    reinterpret_cast<PK*>(dst)[p] = u.v;
    c += step * P;
    if (c >= ld) r += c / ld, c %= ld;
  }
  const long long i = packs * P + (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < total) {
    const long long ri = i / ld, ci = i - ri * ld;
    dst[i] = ci < lead ? src[ri * src_ld + ci] : W(0);
  }
}
)";

// dst (contiguous [count][dst_ld]) = src's rows (pitch src_ld) with columns from
// `lead` on zeroed. 16-byte packs where dst is 16-byte aligned, else word by word.
void copy_pitched(void* dst, int64_t dst_ld, const void* src, int64_t src_ld, int64_t lead,
                  int64_t count, size_t esize, int device) {
  long long sld = src_ld, dld = dst_ld, n = lead, total = dst_ld * count;
  void* args[] = {&src, &sld, &dst, &dld, &n, &total};
  const bool packed = reinterpret_cast<uintptr_t>(dst) % 16 == 0 && esize < 16;
  const int64_t per_pack = packed ? 16 / static_cast<int64_t>(esize) : 1;
  const unsigned blocks =
      static_cast<unsigned>(std::clamp<int64_t>((total / per_pack + 255) / 256, 1, 2048));
  const std::string word = word_type(esize);
  const std::string source = "typedef " + word + " W;\ntypedef " + (packed ? "uint4" : word) +
                             " PK;\n#define P " + std::to_string(per_pack) + "\n" + kPitchedCopy;
  launch(device, get_kernel(device, source, "ds_pitched_copy"), blocks, 256, args, 0,
         "matmul padding");
}

}  // namespace

void lt_matmul(int device, const LtMatmul& m, const char* what) {
  LtDevice& lt_dev = lt_device(device);
  set_device(device);
  const size_t esize = dtype_size(m.dtype);
  // Dimensions that are not a multiple of 16 bytes (a 50257-word vocabulary in bf16)
  // send cuBLASLt to slow kernels: 72-190 TFLOP/s on the H200 for GPT-2's output
  // layer against ~790 aligned. A single product then runs on zero-padded copies
  // (rows, inner and a leading cols rounded up; zeros add nothing to the sums) and
  // the result's rows are copied back: one pass over each operand at copy speed.
  const int64_t q = ld_quantum(m.dtype);
  const bool pad = m.batch == 1 && (m.rows % q != 0 || m.inner % q != 0 ||
                                    (m.trans_b && m.cols % q != 0));
  const int64_t rows = pad ? round_up(m.rows, q) : m.rows;
  const int64_t inner = pad ? round_up(m.inner, q) : m.inner;
  const int64_t cols = pad && m.trans_b ? round_up(m.cols, q) : m.cols;
  std::vector<std::shared_ptr<void>> temps;
  // A lead x count column-major operand as a lead_to x count_to zero-padded copy.
  auto padded = [&](const void* ptr, int64_t lead, int64_t count, int64_t lead_to,
                    int64_t count_to) -> const void* {
    if (lead == lead_to && count == count_to) return ptr;
    temps.push_back(allocate(static_cast<size_t>(lead_to * count_to) * esize, device));
    char* dst = static_cast<char*>(temps.back().get());
    copy_pitched(dst, lead_to, ptr, lead, lead, count, esize, device);
    if (count_to > count)
      DS_CUDA_CHECK(cudaMemsetAsync(dst + static_cast<size_t>(lead_to * count) * esize, 0,
                                    static_cast<size_t>(lead_to * (count_to - count)) * esize,
                                    stream_of(device)));
    return dst;
  };
  const void* a = m.trans_a ? padded(m.a, m.inner, m.rows, inner, rows)
                            : padded(m.a, m.rows, m.inner, rows, inner);
  const void* b = m.trans_b ? padded(m.b, m.cols, m.inner, cols, inner)
                            : padded(m.b, m.inner, m.cols, inner, cols);
  const void* bias = m.bias ? padded(m.bias, m.rows, 1, rows, 1) : nullptr;
  void* d = m.d;
  if (pad) {
    temps.push_back(allocate(static_cast<size_t>(rows * cols) * esize, device));
    d = temps.back().get();
    if (m.beta != 0.0) copy_pitched(d, rows, m.d, m.rows, m.rows, m.cols, esize, device);
  }

  const bool f64 = m.dtype == DType::Float64;
  const cublasComputeType_t compute =
      f64 ? CUBLAS_COMPUTE_64F
          : (m.dtype == DType::Float32 && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                       : CUBLAS_COMPUTE_32F);
  LtDesc desc(compute, f64 ? CUDA_R_64F : CUDA_R_32F);
  const cublasOperation_t op_a = m.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = m.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  DS_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  DS_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  if (m.epilogue != CUBLASLT_EPILOGUE_DEFAULT)
    DS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                   &m.epilogue, sizeof m.epilogue));
  if (bias)
    DS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &bias, sizeof bias));
  const cudaDataType_t t = lt_data_type(m.dtype);
  const LtLayout la = m.trans_a ? LtLayout(t, inner, rows, inner, m.batch, m.stride_a)
                                : LtLayout(t, rows, inner, rows, m.batch, m.stride_a);
  const LtLayout lb = m.trans_b ? LtLayout(t, cols, inner, cols, m.batch, m.stride_b)
                                : LtLayout(t, inner, cols, inner, m.batch, m.stride_b);
  const LtLayout ld(t, rows, cols, rows, m.batch, m.stride_d);
  LtPreference pref;
  const uint64_t ws = kLtWorkspaceBytes;
  DS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  DS_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_dev.handle, desc.h, la.h, lb.h, ld.h, ld.h,
                                                 pref.h, 1, &heur, &found));
  DS_CHECK(found > 0, UnavailableError, what, ": cuBLASLt has no algorithm for a ",
           dtype_name(m.dtype), " matmul ", m.rows, "x", m.inner, "x", m.cols, " batch ", m.batch,
           " epilogue ", static_cast<int>(m.epilogue));
  const float alpha_f = static_cast<float>(m.alpha), beta_f = static_cast<float>(m.beta);
  const void* alpha = f64 ? static_cast<const void*>(&m.alpha) : &alpha_f;
  const void* beta = f64 ? static_cast<const void*>(&m.beta) : &beta_f;
  DS_CUBLAS_CHECK(cublasLtMatmul(lt_dev.handle, desc.h, alpha, a, la.h, b, lb.h, beta, d, ld.h, d,
                                 ld.h, &heur.algo, lt_dev.workspace.get(), kLtWorkspaceBytes,
                                 stream_of(device)));
  if (d != m.d) copy_pitched(m.d, m.rows, d, rows, m.rows, m.cols, esize, device);
}

}  // namespace ds::cuda
