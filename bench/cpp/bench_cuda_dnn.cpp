// CUDA timings of the ResNet-50 / GPT-2 training kernels other than matmul:
// cuDNN convolutions (forward, backward-data, backward-filter, fused
// bias+relu) at ResNet-50's shapes for batch 256 in bf16, pooling, batch-norm
// statistics, embedding and its gradient, GPT-2's MLP linear (fused bias+gelu)
// and its weight gradient. Convolutions and max pooling also channels-last
// (`_cl`: x [N, H, W, C], against PyTorch's channels_last cases of the same name).
// Each op runs through its registered
// CUDA kernel on device tensors, timed with CUDA events after warm-up (which
// includes cuDNN's algorithm search); one line per case, the columns of
// bench_cuda.cpp:
//   name  flops  bytes  median_ms  TFLOP/s  GB/s
// bench/gpu/torch_dnn_cases.py times the same cases in PyTorch and prints ratios.
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

using ds_bench::median_ms;

double bytes_of(const std::vector<Tensor>& ts) {
  double b = 0;
  for (const Tensor& t : ts) b += static_cast<double>(t.nbytes());
  return b;
}

// Runs `op` on device copies of `inputs` through the CUDA kernel the executor would
// pick; flops from the op's cost model, bytes = inputs + outputs.
void bench_op(const std::string& label, const std::string& op, const std::vector<Tensor>& inputs,
              const AttrMap& attrs, int runs) {
  const auto c = ds_bench::cuda_op(label, op, inputs, attrs);
  if (!c->kernel) {
    std::printf("%-28s no CUDA kernel\n", label.c_str());
    return;
  }
  const double flops = c->def.estimate(*c->ctx, c->out_types).flops;
  const double bytes = bytes_of(c->inputs) + bytes_of(c->outputs);
  const double ms = c->time_ms(runs);
  std::printf("%-28s %12.4g %12.4g %10.4f %10.2f %10.1f\n", label.c_str(), flops, bytes, ms,
              flops / ms / 1e9, bytes / ms / 1e6);
  std::fflush(stdout);
}

Tensor rnd(const Shape& s, uint64_t seed, DType t = DType::BFloat16) {
  return random_uniform(s, seed, -1, 1, t);
}

struct Conv {
  const char* name;
  int64_t c, hw, o, k, stride, pad;
};

}  // namespace

int main() {
  if (!ds_bench::has_device()) return 1;
  std::printf("# %s\n", cuda::device_info(0).str().c_str());
  std::printf("%-28s %12s %12s %10s %10s %10s\n", "case", "flops", "bytes", "median_ms", "TFLOP/s",
              "GB/s");
  const int64_t n = 256;
  // ResNet-50 (torchvision v1.5: the stride on the 3x3), batch 256, bf16.
  const Conv convs[] = {{"stem7x7s2", 3, 224, 64, 7, 2, 3},     {"l1_3x3", 64, 56, 64, 3, 1, 1},
                        {"l1_1x1up", 64, 56, 256, 1, 1, 0},     {"l2_3x3s2", 128, 56, 128, 3, 2, 1},
                        {"l3_3x3", 256, 14, 256, 3, 1, 1},      {"l4_1x1down", 2048, 7, 512, 1, 1, 0}};
  uint64_t seed = 1;
  for (const Conv& c : convs) {
    const Tensor x = rnd({n, c.c, c.hw, c.hw}, ++seed), w = rnd({c.o, c.c, c.k, c.k}, ++seed);
    const AttrMap attrs = {{"stride", std::vector<int64_t>{c.stride}},
                           {"padding", std::vector<int64_t>{c.pad}}};
    const std::string base = std::string("conv_") + c.name;
    bench_op(base + "_fwd", "conv2d", {x, w}, attrs, 10);
    const int64_t oh = (c.hw + 2 * c.pad - c.k) / c.stride + 1;
    const Tensor gy = rnd({n, c.o, oh, oh}, ++seed);
    AttrMap in_attrs = attrs, w_attrs = attrs;
    in_attrs["input_size"] = std::vector<int64_t>{c.hw, c.hw};
    w_attrs["kernel_size"] = std::vector<int64_t>{c.k, c.k};
    if (c.c > 3) bench_op(base + "_bwd_data", "conv2d_backward_input", {gy, w}, in_attrs, 10);
    bench_op(base + "_bwd_filter", "conv2d_backward_weight", {x, gy}, w_attrs, 10);
    if (std::string(c.name) == "l1_3x3") {
      AttrMap fused = attrs;
      fused["activation"] = std::string("relu");
      fused["has_bias"] = true;
      bench_op(base + "_bias_relu", "fused_conv2d", {x, w, rnd({c.o}, ++seed)}, fused, 10);
    }
    const Tensor x_cl = rnd({n, c.hw, c.hw, c.c}, ++seed), gy_cl = rnd({n, oh, oh, c.o}, ++seed);
    AttrMap cl = attrs, in_cl = in_attrs, w_cl = w_attrs;
    cl["channels_last"] = in_cl["channels_last"] = w_cl["channels_last"] = true;
    bench_op(base + "_fwd_cl", "conv2d", {x_cl, w}, cl, 10);
    if (c.c > 3) bench_op(base + "_bwd_data_cl", "conv2d_backward_input", {gy_cl, w}, in_cl, 10);
    bench_op(base + "_bwd_filter_cl", "conv2d_backward_weight", {x_cl, gy_cl}, w_cl, 10);
  }
  {
    const Tensor x = rnd({n, 64, 112, 112}, ++seed);
    const AttrMap pool = {{"kernel_size", std::vector<int64_t>{3}},
                          {"stride", std::vector<int64_t>{2}},
                          {"padding", std::vector<int64_t>{1}}};
    bench_op("maxpool3x3s2_fwd", "max_pool2d", {x}, pool, 10);
    bench_op("maxpool3x3s2_bwd", "max_pool2d_backward", {x, rnd({n, 64, 56, 56}, ++seed)}, pool,
             10);
    AttrMap pool_cl = pool;
    pool_cl["channels_last"] = true;
    const Tensor x_cl = rnd({n, 112, 112, 64}, ++seed);
    bench_op("maxpool3x3s2_fwd_cl", "max_pool2d", {x_cl}, pool_cl, 10);
    bench_op("maxpool3x3s2_bwd_cl", "max_pool2d_backward", {x_cl, rnd({n, 56, 56, 64}, ++seed)},
             pool_cl, 10);
    bench_op("bn_stats_mean", "mean", {x}, {{"axes", std::vector<int64_t>{0, 2, 3}}}, 10);
    bench_op("bn_stats_var", "var", {x}, {{"axes", std::vector<int64_t>{0, 2, 3}}}, 10);
    const Tensor f = rnd({n, 2048, 7, 7}, ++seed);
    bench_op("global_avgpool", "global_avg_pool2d", {f}, {}, 20);
    // Channels-last BatchNorm2d in training: layer1's [256, 56, 56, 256] as
    // [N*H*W, C, 1, 1] (the column kernels), bf16 with float32 statistics.
    const Shape cols{n * 56 * 56, 256, 1, 1};
    const Tensor xb = rnd(cols, ++seed), gb = rnd(cols, ++seed);
    const Tensor wb = rnd({256}, ++seed, DType::Float32), bb = rnd({256}, ++seed, DType::Float32);
    const Tensor mb = rnd({256}, ++seed, DType::Float32);
    const Tensor vb = random_uniform({256}, ++seed, 0.5, 1.5, DType::Float32);
    bench_op("bn_train_fwd_cl", "batch_norm_train", {xb, wb, bb}, {}, 10);
    bench_op("bn_train_bwd_cl", "batch_norm_train_backward", {gb, xb, mb, vb, wb}, {}, 10);
  }
  {
    // GPT-2 124M: 16 x 1024 tokens, vocabulary 50257, width 768.
    const Tensor wte = rnd({50257, 768}, ++seed);
    const Tensor tokens = cast(floor(random_uniform({16, 1024}, ++seed, 0, 50257, DType::Float64)),
                               DType::Int64);
    bench_op("embedding_fwd", "embedding", {tokens, wte}, {}, 20);
    bench_op("embedding_bwd", "index_add",
             {reshape(tokens, {16 * 1024}), rnd({16 * 1024, 768}, ++seed)},
             {{"axis", int64_t{0}}, {"size", int64_t{50257}}}, 20);
    bench_op("bias_grad_sum0", "sum", {rnd({16 * 1024, 768}, ++seed)},
             {{"axes", std::vector<int64_t>{0}}}, 20);
    // The MLP's first layer: linear + bias + tanh-gelu in one cuBLASLt call, and its
    // weight gradient g^T x as autodiff emits it (gemm with a transposed operand).
    const Tensor x = rnd({16 * 1024, 768}, ++seed), w = rnd({3072, 768}, ++seed);
    bench_op("mlp_fc_bias_gelu", "fused_linear", {x, w, rnd({3072}, ++seed)},
             {{"activation", std::string("gelu_tanh")}, {"has_bias", true}}, 20);
    bench_op("mlp_fc_wgrad_gemm", "gemm", {rnd({16 * 1024, 3072}, ++seed), x},
             {{"trans_a", true}}, 20);
  }
  return 0;
}
