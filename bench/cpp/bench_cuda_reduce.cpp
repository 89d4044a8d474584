// CUDA axis reductions at the shapes of the ResNet-50 / GPT-2 training profile:
// per-channel NCHW statistics over {0, 2, 3} (batch-norm gradients, mean, var) and
// GPT-2's bias gradients over {0, 1} (a column reduction) and one whole-tensor sum,
// in float32 and bf16.
// Each op runs through the CUDA kernel the executor would pick, timed with CUDA
// events (median after warm-up). One line per case:
//   name  median_ms  GB/s (bytes read and written / time)
// bench/gpu/reduce_vs_torch.py runs this and times the same cases in PyTorch.
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_bench.h"

using namespace ds;

namespace {

std::string dims(const Shape& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "x" : "") + std::to_string(s[i]);
  return r;
}

void bench(const std::string& op, const Tensor& x, const std::vector<int64_t>& axes) {
  std::string tag;
  for (int64_t a : axes) tag += std::to_string(a);
  const std::string label = op + "_" + (x.dtype() == DType::BFloat16 ? "bf16" : "f32") + "_" +
                            dims(x.shape()) + "_a" + tag;
  const auto c = ds_bench::cuda_op(label, op, {x}, {{"axes", axes}});
  if (!c->kernel) {
    std::printf("%-36s no CUDA kernel\n", label.c_str());
    return;
  }
  const double bytes = static_cast<double>(c->inputs[0].nbytes() + c->outputs[0].nbytes());
  const double ms = c->time_ms(20);
  std::printf("%-36s %10.4f %10.1f  [%s]\n", label.c_str(), ms, bytes / ms / 1e6,
              c->kernel->impl.c_str());
  std::fflush(stdout);
}

}  // namespace

int main() {
  if (!ds_bench::has_device()) return 0;
  std::printf("# %s\n# %-34s %10s %10s\n", cuda::device_info(0).str().c_str(), "name", "ms",
              "GB/s");
  const std::vector<int64_t> nchw = {0, 2, 3}, tokens = {0, 1};
  uint64_t seed = 1;
  for (DType t : {DType::Float32, DType::BFloat16}) {
    // On the device once per shape: every op of the shape reads the same tensor.
    const auto make = [&](const Shape& s) {
      return random_uniform(s, ++seed, -1, 1, t).to(Device::cuda());
    };
    {
      const Tensor x = make({256, 1024, 14, 14});
      for (const char* op : {"sum", "mean", "var"}) bench(op, x, nchw);
    }
    {
      const Tensor x = make({256, 2048, 7, 7});
      for (const char* op : {"sum", "var"}) bench(op, x, nchw);
    }
    bench("sum", make({256, 512, 28, 28}), nchw);
    bench("sum", make({256, 256, 56, 56}), nchw);
    bench("sum", make({16, 1024, 768}), tokens);
    bench("sum", make({16, 1024, 3072}), tokens);
    bench("sum", make({50257, 768}), tokens);  // a whole tensor (GPT-2's wte gradient norm)
    // The batch of [256, 1024, 14, 14] as plain columns: the pass that 7x7 (and
    // bf16 14x14) channels take, next to the row walk above.
    bench("sum", make({256, 1024 * 14 * 14}), {0});
  }
  return 0;
}
