// matmul/linear/gemm through oneDNN's dnnl_sgemm. Measured on the 2-core
// AVX2 development machine (bench/run_linalg.py): OpenBLAS wins small GEMMs,
// oneDNN large ones, so with OpenBLAS present oneDNN takes only the large sizes.
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

// M*N*K from which oneDNN's sgemm beats OpenBLAS's here (bench/run_linalg.py).
constexpr double kLargeGemm = 512.0 * 512.0 * 512.0;

bool prefer_onednn(const GemmSize& s) {
#ifdef DS_HAVE_OPENBLAS
  return static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) >=
         kLargeGemm;
#else
  (void)s;
  return true;
#endif
}

const OpRegistrar reg([] { register_gemm_kernels(onednn_sgemm, "onednn", 20, prefer_onednn); });

}  // namespace
}  // namespace ds::cpu::onednn
