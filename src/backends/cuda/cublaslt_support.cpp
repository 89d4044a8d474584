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


namespace {

// Elements per 16 bytes: cuBLASLt's fast (TMA) kernels need every leading
// dimension to be a multiple of it.
int64_t ld_quantum(DType t) { return 16 / static_cast<int64_t>(dtype_size(t)); }

int64_t round_up(int64_t v, int64_t q) { return (v + q - 1) / q * q; }

// Row r of a (count x lead) matrix copied between leading dimensions src_ld and
// dst_ld, one of them padded to 16 bytes: each thread moves one 16-byte pack on
// the padded side and single elements on the other. (The general strided copy
// spends two 64-bit divisions per 2-byte element here: 100 GB/s on the H200.)
const char* const kPitchedCopy = R"(
extern "C" __global__ void ds_pitched_copy(const W* __restrict__ src, long long src_ld,
                                           W* __restrict__ dst, long long dst_ld, long long lead,
                                           long long count, int dst_padded) {
  constexpr int per = 16 / sizeof(W);
  for (long long r = blockIdx.y; r < count; r += gridDim.y) {
    const W* s = src + r * src_ld;
    W* d = dst + r * dst_ld;
    for (long long c = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * per; c < lead;
         c += (long long)gridDim.x * blockDim.x * per) {
      union { uint4 v; W w[per]; } pack;
      if (dst_padded) {  // the pack may run into the padding, never past dst_ld
#pragma unroll
        for (int k = 0; k < per; ++k) pack.w[k] = c + k < lead ? s[c + k] : W(0);
        *reinterpret_cast<uint4*>(d + c) = pack.v;
      } else {
        pack.v = *reinterpret_cast<const uint4*>(s + c);
#pragma unroll
        for (int k = 0; k < per; ++k)
          if (c + k < lead) d[c + k] = pack.w[k];
      }
    }
  }
}
)";

// A matrix stored column-major (`lead` x `count`, ld = lead) copied to a buffer
// whose ld is rounded up to 16 bytes (dst_padded), or back.
void copy_pitched(void* dst, int64_t dst_ld, const void* src, int64_t src_ld, int64_t lead,
                  int64_t count, size_t esize, int device, bool dst_padded) {
  long long sld = src_ld, dld = dst_ld, n = lead, rows = count;
  int padded = dst_padded ? 1 : 0;
  void* args[] = {&src, &sld, &dst, &dld, &n, &rows, &padded};
  const int64_t packs = (lead * static_cast<int64_t>(esize) + 15) / 16;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((packs + 255) / 256, 1024)),
                  static_cast<unsigned>(std::min<int64_t>(count, 65535)));
  const std::string source = std::string("typedef ") + word_type(esize) + " W;\n" + kPitchedCopy;
  launch(device, get_kernel(device, source, "ds_pitched_copy"), grid, 256, args, 0,
         "matmul leading-dimension padding");
}

}  // namespace

void lt_matmul(int device, const LtMatmul& m, const char* what) {
  LtDevice& lt_dev = lt_device(device);
  set_device(device);
  const size_t esize = dtype_size(m.dtype);
  // A leading dimension that is not a multiple of 16 bytes (a 50257-word vocabulary
  // in bf16) sends cuBLASLt to its slow unaligned kernels: 95 TFLOP/s on the H200
  // for GPT-2's output layer. A single matrix is then copied to a padded ld and
  // back, which costs two passes over it at copy bandwidth.
  const int64_t q = ld_quantum(m.dtype);
  std::vector<std::shared_ptr<void>> temps;
  auto pad = [&](const void*& ptr, int64_t lead, int64_t count) -> int64_t {
    if (m.batch != 1 || lead % q == 0) return lead;
    const int64_t ld = round_up(lead, q);
    temps.push_back(allocate(static_cast<size_t>(ld * count) * esize, device));
    copy_pitched(temps.back().get(), ld, ptr, lead, lead, count, esize, device, true);
    ptr = temps.back().get();
    return ld;
  };
  const void* a = m.a;
  const void* b = m.b;
  const int64_t a_lead = m.trans_a ? m.inner : m.rows, a_count = m.trans_a ? m.rows : m.inner;
  const int64_t b_lead = m.trans_b ? m.cols : m.inner, b_count = m.trans_b ? m.inner : m.cols;
  const int64_t lda = pad(a, a_lead, a_count), ldb = pad(b, b_lead, b_count);
  void* d = m.d;
  int64_t ldd = m.rows;
  if (m.batch == 1 && m.rows % q != 0) {
    ldd = round_up(m.rows, q);
    temps.push_back(allocate(static_cast<size_t>(ldd * m.cols) * esize, device));
    d = temps.back().get();
    if (m.beta != 0.0) copy_pitched(d, ldd, m.d, m.rows, m.rows, m.cols, esize, device, true);
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
  if (m.bias)
    DS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &m.bias, sizeof m.bias));
  const cudaDataType_t t = lt_data_type(m.dtype);
  const LtLayout la(t, a_lead, a_count, lda, m.batch, m.stride_a);
  const LtLayout lb(t, b_lead, b_count, ldb, m.batch, m.stride_b);
  const LtLayout ld(t, m.rows, m.cols, ldd, m.batch, m.stride_d);
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
  if (d != m.d) copy_pitched(m.d, m.rows, d, ldd, m.rows, m.cols, esize, device, false);
}

}  // namespace ds::cuda
