// CUDA softmax_cross_entropy (forward) and softmax_cross_entropy_backward at GPT-2's
// loss shape [16384, 50257] (batch 16 x 1024 tokens, 50257 classes) in bf16 and
// float32, and a Fashion-MNIST-like [4096, 10]; beside them, in the same run, the
// ops the loss used before the fused op at the same shape: the float32 cast of the
// bf16 logits and log_softmax over them.
// Each op runs through the CUDA kernel the executor would pick, timed with CUDA
// events (median after warm-up). One line per case:
//   name  median_ms  GB/s (bytes read and written / time)
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_bench.h"

using namespace ds;

namespace {

const char* type_tag(DType t) { return t == DType::BFloat16 ? "bf16" : "f32"; }

void line(const std::string& label, ds_bench::CudaOp& c, double bytes) {
  const double ms = c.time_ms(10);
  std::printf("%-40s %10.4f %10.1f  [%s]\n", label.c_str(), ms, bytes / ms / 1e6,
              c.kernel->impl.c_str());
  std::fflush(stdout);
}

double bytes_of(const std::vector<Tensor>& ts) {
  double b = 0;
  for (const Tensor& t : ts) b += static_cast<double>(t.nbytes());
  return b;
}

// x: logits on the device.
void bench_xent(const Tensor& x, uint64_t seed) {
  const int64_t rows = x.shape()[0], classes = x.shape()[1];
  const DType t = x.dtype();
  const std::string shape = std::to_string(rows) + "x" + std::to_string(classes);
  const Tensor target = cast(floor(random_uniform({rows}, seed, 0, classes - 0.5)), DType::Int64);
  const AttrMap attrs = {{"ignore_index", int64_t{-100}}, {"label_smoothing", 0.0}};
  const auto fwd = ds_bench::cuda_op("xent_fwd", "softmax_cross_entropy", {x, target}, attrs);
  if (!fwd->kernel) {
    std::printf("softmax_cross_entropy: no CUDA kernel\n");
    return;
  }
  line(std::string("xent_fwd_") + type_tag(t) + "_" + shape, *fwd,
       bytes_of(fwd->inputs) + bytes_of(fwd->outputs));
  const Tensor lse = fwd->outputs[1].to(Device::cpu());
  const Tensor dloss = Tensor::full({rows}, 1.0 / static_cast<double>(rows), DType::Float32);
  const auto bwd = ds_bench::cuda_op("xent_bwd", "softmax_cross_entropy_backward",
                                     {x, target, lse, dloss}, attrs);
  line(std::string("xent_bwd_") + type_tag(t) + "_" + shape, *bwd,
       bytes_of(bwd->inputs) + bytes_of(bwd->outputs));
}

// What the loss ran before the fused op: cast the bf16 logits to float32, then
// log_softmax over them (the gather, masks and the backward's passes came on top).
// x: bf16 logits on the device.
void bench_composition(const Tensor& x) {
  const std::string shape = std::to_string(x.shape()[0]) + "x" + std::to_string(x.shape()[1]);
  const auto c = ds_bench::cuda_op("cast", "cast", {x}, {{"dtype", DType::Float32}});
  if (c->kernel) line("old_cast_bf16_to_f32_" + shape, *c, bytes_of(c->inputs) + bytes_of(c->outputs));
  const auto ls = ds_bench::cuda_op("log_softmax", "log_softmax", {cast(x, DType::Float32)},
                                    {{"axis", int64_t{1}}});
  if (ls->kernel)
    line("old_log_softmax_f32_" + shape, *ls, bytes_of(ls->inputs) + bytes_of(ls->outputs));
}

}  // namespace

int main() {
  if (!ds_bench::has_device()) return 0;
  std::printf("# %s\n# %-38s %10s %10s\n", cuda::device_info(0).str().c_str(), "name", "ms",
              "GB/s");
  // Drawn once on the host (823M values), widened on the device.
  const Tensor gpt = random_uniform({16384, 50257}, 1, -4, 4, DType::BFloat16).to(Device::cuda());
  bench_xent(gpt, 2);
  bench_xent(cast(gpt, DType::Float32), 3);
  bench_xent(random_uniform({4096, 10}, 4, -4, 4).to(Device::cuda()), 5);
  bench_composition(gpt);
  return 0;
}
