// The GEMMs of a GPT-2 output layer (16384 tokens x 768 -> 50257-word vocabulary,
// bf16) next to the same with a 16-byte-aligned vocabulary (50264), and the
// head-split permute of attention: what the padded leading dimensions and the wide
// strided copies (cublaslt_support.cpp, strided_copy.cpp) cost. One line per case:
//   name  median_ms  TFLOP/s  GB/s
// PyTorch's time for the same GEMMs is printed by the queue line that runs this.
#include <cstdio>
#include <string>

#include "cuda_bench.h"

using namespace ds;

namespace {

void bench(const std::string& label, const std::string& op, const std::vector<Tensor>& in,
           const AttrMap& attrs, double flops) {
  const auto c = ds_bench::cuda_op(label, op, in, attrs);
  if (!c->kernel) {
    std::printf("%-28s no CUDA kernel\n", label.c_str());
    return;
  }
  double bytes = 0;
  for (const Tensor& t : c->inputs) bytes += static_cast<double>(t.nbytes());
  for (const Tensor& t : c->outputs) bytes += static_cast<double>(t.nbytes());
  const double ms = c->time_ms(10);
  std::printf("%-28s %10.4f %10.1f %10.1f\n", label.c_str(), ms, flops / ms / 1e9,
              bytes / ms / 1e6);
  std::fflush(stdout);
}

}  // namespace

int main() {
  if (!ds_bench::has_device()) return 0;
  std::printf("# %-26s %10s %10s %10s\n", "name", "median_ms", "TFLOP/s", "GB/s");
  const DType bf = DType::BFloat16;
  const int64_t tokens = 16384, width = 768;
  for (int64_t vocab : {50257, 50264}) {
    const std::string v = std::to_string(vocab);
    const Tensor x = random_uniform({tokens, width}, 1, -1, 1).to(bf);
    const Tensor w = random_uniform({vocab, width}, 2, -1, 1).to(bf);
    const Tensor dy = random_uniform({tokens, vocab}, 3, -1, 1).to(bf);
    const double flops = 2.0 * tokens * width * vocab;
    bench("logits_fwd_" + v, "linear", {x, w}, {}, flops);
    bench("logits_dx_" + v, "matmul", {dy, w}, {}, flops);
    bench("logits_dx_batched_" + v, "matmul", {dy.reshape({16, tokens / 16, vocab}), w}, {}, flops);
    bench("logits_dw_" + v, "gemm", {dy, x},
          {{"trans_a", true}, {"trans_b", false}, {"alpha", 1.0}, {"beta", 0.0}}, flops);
  }
  const Tensor heads = random_uniform({16, 1024, 12, 64}, 4, -1, 1).to(bf);
  bench("permute_heads_bf16", "permute", {heads}, {{"axes", std::vector<int64_t>{0, 2, 1, 3}}}, 0);
  const Tensor qkv = random_uniform({16, 1024, 2304}, 5, -1, 1).to(bf);
  bench("slice_qkv_bf16", "slice",
        {qkv}, {{"axis", int64_t{2}}, {"start", int64_t{768}}, {"stop", int64_t{1536}}}, 0);
  return 0;
}
