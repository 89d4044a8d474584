// matmul/linear/gemm through OpenBLAS's cblas_sgemm (built when OpenBLAS is found).
#ifdef DS_HAVE_OPENBLAS
#include <cblas.h>

#include <atomic>

#include "backends/cpu/gemm_kernels.h"
#include "ds/runtime.h"

namespace ds::cpu {
namespace {

void openblas_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  // openblas_set_num_threads is process-wide and not free: call it only on a change.
  static std::atomic<int> threads{0};
  const int want = num_threads();
  if (threads.exchange(want) != want) openblas_set_num_threads(want);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

// OpenBLAS serves every float32 size; oneDNN (higher priority) takes the sizes it wins.
const OpRegistrar reg([] {
  register_gemm_kernels(openblas_sgemm, "openblas", 10, [](const GemmSize&) { return true; });
});

}  // namespace
}  // namespace ds::cpu
#endif
