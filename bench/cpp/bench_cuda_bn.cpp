// CUDA timings of batch norm in training mode (batch_norm_train forward,
// batch_norm_train_backward) at ResNet-50's batch-norm shapes, batch 256, bf16
// activations with float32 weight and statistics, NCHW. One line per case:
//   case  bytes  moved  median_ms  GB/s  moved_GB/s
// bytes: the tensors read and written once (forward x + y, backward dy + x + dx);
// moved: what the two-pass kernels read and write (forward reads x twice,
// backward reads dy and x twice) -- against the device's copy bandwidth.
// bench/gpu/torch_bn_cases.py times F.batch_norm(training=True) the same way.
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_bench.h"
#include "ds/cuda.h"
#include "ds/ds.h"
#include "ds/op.h"

using namespace ds;

namespace {

double bytes_of(const std::vector<Tensor>& ts) {
  double b = 0;
  for (const Tensor& t : ts) b += static_cast<double>(t.nbytes());
  return b;
}

void bench(const std::string& label, const std::string& op, const std::vector<Tensor>& inputs,
           int runs) {
  const auto c = ds_bench::cuda_op(label, op, inputs, {{"eps", 1e-5}});
  if (!c->kernel) {
    std::printf("%-22s no CUDA kernel\n", label.c_str());
    return;
  }
  const double moved = c->def.estimate(*c->ctx, c->out_types).bytes;
  const double bytes = bytes_of(c->inputs) + bytes_of(c->outputs);
  const double ms = c->time_ms(runs);
  std::printf("%-22s %12.4g %12.4g %10.4f %10.1f %10.1f\n", label.c_str(), bytes, moved, ms,
              bytes / ms / 1e6, moved / ms / 1e6);
  std::fflush(stdout);
}

}  // namespace

int main() {
  if (!ds_bench::has_device()) return 1;
  std::printf("# %s\n", cuda::device_info(0).str().c_str());
  std::printf("%-22s %12s %12s %10s %10s %10s\n", "case", "bytes", "moved", "median_ms", "GB/s",
              "moved_GB/s");
  const int64_t n = 256;
  const std::pair<int64_t, int64_t> shapes[] = {{64, 112}, {256, 56}, {1024, 14}, {2048, 7}};
  uint64_t seed = 1;
  for (const auto& [c, hw] : shapes) {
    const std::string name = "bn_c" + std::to_string(c) + "_" + std::to_string(hw);
    const Tensor x = random_uniform({n, c, hw, hw}, ++seed, -1, 3, DType::BFloat16);
    const Tensor w = random_uniform({c}, ++seed, 0.5, 1.5), b = random_uniform({c}, ++seed, -1, 1);
    bench(name + "_fwd", "batch_norm_train", {x, w, b}, 20);
    const auto fwd = apply("batch_norm_train", {x, w, b}, {{"eps", 1e-5}});
    const Tensor dy = random_uniform({n, c, hw, hw}, ++seed, -1, 1, DType::BFloat16);
    bench(name + "_bwd", "batch_norm_train_backward", {dy, x, fwd[1], fwd[2], w}, 20);
  }
  return 0;
}
