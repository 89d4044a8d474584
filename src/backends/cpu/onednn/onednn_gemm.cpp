// matmul/linear/gemm through oneDNN's dnnl_sgemm. Which library wins depends on
// the vector width: on AVX2 (bench/run_linalg.py) OpenBLAS wins small GEMMs and
// oneDNN large ones; on AVX-512 Debian's OpenBLAS 0.3.21 still runs its Haswell
// (AVX2) kernels while oneDNN uses 512-bit ones, and oneDNN wins from 64^3 on.
#include <oneapi/dnnl/dnnl.h>

#include "backends/cpu/gemm_kernels.h"
#include "backends/cpu/onednn/onednn_common.h"

namespace ds::cpu::onednn {
namespace {

void onednn_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  use_ds_threads();
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b,
                                      ldb, beta, c, ldc);
  DS_CHECK(st == dnnl_success, Error, "oneDNN sgemm failed (status ", static_cast<int>(st),
           ") for m=", m, " n=", n, " k=", k);
}

// M*N*K from which oneDNN's sgemm beats OpenBLAS's, per thread CPU time.
// AVX2: 512^3 (bench/run_linalg.py). AVX-512 (Zen 5, bench/NOTES.md training
// section): oneDNN 1.4x faster at 64^3, 2x at 128^3 and at the Fashion-MNIST
// linear layer's 128x128x3136; OpenBLAS 1.3-1.6x faster below 32^3.
double large_gemm() {
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const unsigned avx512 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core);
  return (isa & avx512) == avx512 ? 64.0 * 64.0 * 64.0 : 512.0 * 512.0 * 512.0;
}

bool prefer_onednn(const GemmSize& s) {
#ifdef DS_HAVE_OPENBLAS
  static const double large = large_gemm();
  return static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) >= large;
#else
  (void)s;
  return true;
#endif
}

const OpRegistrar reg([] { register_gemm_kernels(onednn_sgemm, "onednn", 20, prefer_onednn); });

}  // namespace
}  // namespace ds::cpu::onednn
