// CUDA kernel timings for scripts/gpu-run: each op runs through its registered
// CUDA kernel on device tensors (no host copies in the timed region), timed with
// CUDA events after warm-up; the median of the runs is reported as one line
//   name  flops  bytes  median_ms  TFLOP/s  GB/s
// and scripts/gpu-run puts PyTorch's numbers for the same work next to them.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "ds/cuda.h"
#include "ds/ds.h"
#include "ds/op.h"
#include "cuda_bench.h"

using namespace ds;

namespace {

// Runs `op` through the CUDA kernel the executor would pick, on device tensors.
void bench_op(const std::string& label, const std::string& op, const std::vector<Tensor>& inputs,
              const AttrMap& attrs, double flops, double bytes, int runs) {
  const auto c = ds_bench::cuda_op(label, op, inputs, attrs);
  if (!c->kernel) {
    std::printf("%-28s no CUDA kernel\n", label.c_str());
    return;
  }
  const double ms = c->time_ms(runs);
  std::printf("%-28s %12.4g %12.4g %10.4f %10.2f %10.1f\n", label.c_str(), flops, bytes, ms,
              flops / ms / 1e9, bytes / ms / 1e6);
}

}  // namespace

int main() {
  if (!ds_bench::has_device()) return 1;
  std::printf("# %s\n", cuda::device_info(0).str().c_str());
  std::printf("%-28s %12s %12s %10s %10s %10s\n", "case", "flops", "bytes", "median_ms", "TFLOP/s",
              "GB/s");
  for (int64_t n : {int64_t{4096}, int64_t{8192}}) {
    const Tensor a = random_uniform({n, n}, 1, -1, 1, DType::BFloat16);
    const Tensor b = random_uniform({n, n}, 2, -1, 1, DType::BFloat16);
    const double f = 2.0 * n * n * n, by = 3.0 * n * n * 2;
    bench_op("matmul_bf16_" + std::to_string(n), "matmul", {a, b}, {}, f, by, 20);
  }
  {
    const int64_t n = 4096;
    const Tensor a = random_uniform({n, n}, 3, -1, 1);
    const Tensor b = random_uniform({n, n}, 4, -1, 1);
    bench_op("matmul_fp32_4096", "matmul", {a, b}, {}, 2.0 * n * n * n, 3.0 * n * n * 4, 10);
    cuda::set_allow_tf32(true);
    bench_op("matmul_tf32_4096", "matmul", {a, b}, {}, 2.0 * n * n * n, 3.0 * n * n * 4, 10);
    cuda::set_allow_tf32(false);
  }
  const int64_t big = int64_t{1} << 26;  // 64 Mi elements
  const Tensor x = random_uniform({big}, 5, -1, 1), y = random_uniform({big}, 6, -1, 1);
  bench_op("add_fp32_64M", "add", {x, y}, {}, double(big), 12.0 * big, 20);
  bench_op("gelu_fp32_64M", "gelu", {x}, {}, 8.0 * big, 8.0 * big, 20);
  const Tensor rows = random_uniform({8192, 8192}, 7, -1, 1);
  bench_op("softmax_fp32_8192x8192", "softmax", {rows}, {}, 5.0 * rows.numel(),
           8.0 * rows.numel(), 20);
  bench_op("layer_norm_fp32_8192x8192", "layer_norm", {rows},
           {{"normalized_shape", std::vector<int64_t>{8192}}}, 8.0 * rows.numel(),
           8.0 * rows.numel(), 20);
  bench_op("sum_last_fp32_8192x8192", "sum", {rows}, {{"axes", std::vector<int64_t>{-1}}},
           1.0 * rows.numel(), 4.0 * rows.numel(), 20);
  const Tensor bias = random_uniform({8192}, 8, -1, 1);
  bench_op("add_bias_fp32_8192x8192", "add", {rows, bias}, {}, 1.0 * rows.numel(),
           8.0 * rows.numel(), 20);
  const Tensor xh = x.to(DType::BFloat16), rows_h = rows.to(DType::BFloat16);
  bench_op("gelu_bf16_64M", "gelu", {xh}, {}, 8.0 * big, 4.0 * big, 20);
  bench_op("softmax_bf16_8192x8192", "softmax", {rows_h}, {}, 5.0 * rows.numel(),
           4.0 * rows.numel(), 20);
  const Tensor short_rows = random_uniform({65536, 1024}, 9, -1, 1);
  bench_op("layer_norm_fp32_65536x1024", "layer_norm", {short_rows},
           {{"normalized_shape", std::vector<int64_t>{1024}}}, 8.0 * short_rows.numel(),
           8.0 * short_rows.numel(), 20);
  return 0;
}
