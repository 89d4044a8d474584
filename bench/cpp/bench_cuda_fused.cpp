// Fused CUDA kernels on the H200: generated elementwise/row regions (NVRTC from
// the kernel IR), the row kernels and flash attention, each through the kernel
// the executor picks, on device tensors, timed with CUDA events (median after
// warm-up). Same columns as bench_cuda.cpp:
//   name  flops  bytes  median_ms  TFLOP/s  GB/s
// then, for the memory-bound cases, the share of the device-to-device copy
// bandwidth measured in the same run (the ceiling: ~4.3 TB/s on an H200).
#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <vector>

#include "backends/cuda/device_allocator.h"
#include "codegen/kernel_ir.h"
#include "ds/cuda.h"
#include "ds/ds.h"
#include "ds/op.h"
#include "cuda_bench.h"

using namespace ds;

namespace {

using ds_bench::median_ms;

std::map<std::string, double> gbps;  // memory-bound cases, for the copy-ceiling lines

void report(const std::string& name, double flops, double bytes, double ms, bool memory_bound) {
  std::printf("%-32s %12.4g %12.4g %10.4f %10.2f %10.1f\n", name.c_str(), flops, bytes, ms,
              flops / ms / 1e9, bytes / ms / 1e6);
  if (memory_bound) gbps[name] = bytes / ms / 1e6;
}

// Runs `op` through the CUDA kernel the executor would pick on device copies of `inputs`.
void bench_op(const std::string& name, const std::string& op, const std::vector<Tensor>& inputs,
              const AttrMap& attrs, double flops, double bytes, int runs, bool memory_bound) {
  const auto c = ds_bench::cuda_op(name, op, inputs, attrs);
  if (!c->kernel) {
    std::printf("%-32s no CUDA kernel\n", name.c_str());
    return;
  }
  // Compute-bound rows name their kernel (attention has several).
  report(memory_bound ? name : name + " " + c->kernel->impl, flops, bytes, c->time_ms(runs),
         memory_bound);
}

codegen::KernelInst inst(const std::string& op, std::vector<int> args, DType t = DType::Float32) {
  return {op, {}, std::move(args), t};
}

// gelu(x + bias) * scale over x's shape as autocast leaves it around a bf16 matmul:
// x bfloat16 widened, float32 bias and scale, the result narrowed to bfloat16.
codegen::KernelIR gelu_bias_scale_bf16(int64_t rows, int64_t cols) {
  const DType f = DType::Float32, b = DType::BFloat16;
  codegen::KernelIR ir;
  ir.shape = {rows, cols};
  ir.inputs = {{b, {rows, cols}}, {f, {cols}}, {f, {}}};
  ir.insts = {{"cast", {{"dtype", f}}, {0}, f}, inst("add", {3, 1}), inst("gelu", {4}),
              inst("mul", {5, 2}), {"cast", {{"dtype", b}}, {6}, b}};
  ir.outputs = {7};
  return ir;
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive a failure later in the run
  if (!ds_bench::has_device()) return 1;
  std::printf("# %s\n", cuda::device_info(0).str().c_str());
  std::printf("%-32s %12s %12s %10s %10s %10s\n", "case", "flops", "bytes", "median_ms", "TFLOP/s",
              "GB/s");
  const int64_t rows = 8192, cols = 8192, n = rows * cols;  // 256 MiB of float32
  const Tensor x = random_uniform({rows, cols}, 1, -2, 2);
  const Tensor bias = random_uniform({cols}, 2, -1, 1);
  const Tensor scale = random_uniform({}, 3, 0.5, 1.5);
  {  // the ceiling: one device-to-device copy of the same bytes
    const Tensor src = x.to(Device::cuda());
    Tensor dst = Tensor::empty(src.shape(), src.dtype(), Device::cuda());
    report("copy_fp32_8192x8192", 0, 8.0 * n, median_ms([&] { cuda::copy_tensor(src, dst); }, 20),
           true);
  }
  {  // gelu(x + bias) * scale: one generated kernel (16-byte vector path)
    codegen::KernelIR ir;
    ir.shape = {rows, cols};
    ir.inputs = {{DType::Float32, {rows, cols}}, {DType::Float32, {cols}}, {DType::Float32, {}}};
    ir.insts = {inst("add", {0, 1}), inst("gelu", {3}), inst("mul", {4, 2})};
    ir.outputs = {5};
    bench_op("fused_gelu_bias_scale_fp32", "fused", {x, bias, scale}, {{"region", ir.str()}},
             10.0 * n, 8.0 * n, 20, true);
    // The same chain as three unfused kernels, for the fusion gain.
    const Tensor dx = x.to(Device::cuda()), db = bias.to(Device::cuda());
    const Tensor dsc = scale.to(Device::cuda());
    std::vector<Tensor> t1 = {Tensor::empty(x.shape(), x.dtype(), Device::cuda())};
    std::vector<Tensor> t2 = {Tensor::empty(x.shape(), x.dtype(), Device::cuda())};
    std::vector<Tensor> t3 = {Tensor::empty(x.shape(), x.dtype(), Device::cuda())};
    const TensorType big{DType::Float32, x.shape()}, row{DType::Float32, bias.shape()},
        one{DType::Float32, {}};
    const AttrMap plain, gelu_attrs = complete_attrs(get_op("gelu"), {}, "gelu");
    const OpContext add_ctx{get_op("add"), plain, {big, row}, "add"};
    const OpContext gelu_ctx{get_op("gelu"), gelu_attrs, {big}, "gelu"};
    const OpContext mul_ctx{get_op("mul"), plain, {big, one}, "mul"};
    const KernelEntry& ka = select_kernel(add_ctx, DeviceKind::CUDA);
    const KernelEntry& kg = select_kernel(gelu_ctx, DeviceKind::CUDA);
    const KernelEntry& km = select_kernel(mul_ctx, DeviceKind::CUDA);
    const std::vector<Tensor> in1 = {dx, db}, in3 = {t2[0], dsc};
    const double ms = median_ms(
        [&] {
          ka.fn(KernelCall{add_ctx, in1, t1});
          kg.fn(KernelCall{gelu_ctx, t1, t2});
          km.fn(KernelCall{mul_ctx, in3, t3});
        },
        20);
    report("unfused_gelu_bias_scale_fp32", 10.0 * n, 8.0 * n, ms, false);
    // Without the gelu: what the loads, broadcast and stores cost alone.
    codegen::KernelIR no_gelu;
    no_gelu.shape = ir.shape;
    no_gelu.inputs = ir.inputs;
    no_gelu.insts = {inst("add", {0, 1}), inst("mul", {3, 2})};
    no_gelu.outputs = {4};
    bench_op("fused_bias_scale_fp32", "fused", {x, bias, scale}, {{"region", no_gelu.str()}},
             2.0 * n, 8.0 * n, 20, true);
  }
  {  // the bf16 chain (16-bit in and out, float32 inside), on the same shape and GPT-2's MLP
    const Tensor xb = x.to(DType::BFloat16);
    bench_op("fused_gelu_bias_scale_bf16", "fused", {xb, bias, scale},
             {{"region", gelu_bias_scale_bf16(rows, cols).str()}}, 10.0 * n, 4.0 * n, 20, true);
    const int64_t mrows = 16384, mcols = 3072, mn = mrows * mcols;
    const Tensor mx = random_uniform({mrows, mcols}, 11, -2, 2).to(DType::BFloat16);
    const Tensor mb = random_uniform({mcols}, 12, -1, 1);
    bench_op("fused_gelu_bias_scale_bf16_16384x3072", "fused", {mx, mb, scale},
             {{"region", gelu_bias_scale_bf16(mrows, mcols).str()}}, 10.0 * mn, 4.0 * mn, 20,
             true);
  }
  {  // sum over rows of exp(x - rowmax-like bias): a generated reduction region
    const Tensor shift = random_uniform({rows, 1}, 4, -1, 1);
    codegen::KernelIR ir;
    ir.shape = {rows, cols};
    ir.inputs = {{DType::Float32, {rows, cols}}, {DType::Float32, {rows, 1}}};
    ir.insts = {inst("sub", {0, 1}), inst("exp", {2})};
    ir.reduce = codegen::KernelReduce{"sum", 3, true};
    bench_op("fused_sum_exp_rows_fp32", "fused", {x, shift}, {{"region", ir.str()}}, 3.0 * n,
             4.0 * n, 20, true);
  }
  {  // softmax and layer_norm as loop fusion spells them: row regions, the row kept in registers
    const Tensor eps = Tensor::scalar(1e-5);
    codegen::KernelIR sm;
    sm.shape = {rows, cols};
    sm.inputs = {{DType::Float32, {rows, cols}}};
    sm.insts = {inst("max", {0}), inst("sub", {0, 1}), inst("exp", {2}), inst("sum", {3}),
                inst("div", {3, 4})};
    sm.outputs = {5};
    bench_op("fused_softmax_fp32_8192x8192", "fused", {x}, {{"region", sm.str()}}, 5.0 * n,
             8.0 * n, 20, true);
    codegen::KernelIR ln;
    ln.shape = {rows, cols};
    ln.inputs = {{DType::Float32, {rows, cols}}, {DType::Float32, {}}};
    ln.insts = {inst("mean", {0}),  inst("sub", {0, 2}),  inst("square", {3}), inst("mean", {4}),
                inst("add", {5, 1}), inst("rsqrt", {6}), inst("mul", {3, 7})};
    ln.outputs = {8};
    bench_op("fused_layer_norm_fp32_8192x8192", "fused", {x, eps}, {{"region", ln.str()}},
             8.0 * n, 8.0 * n, 20, true);
  }
  {  // GPT-2's log-softmax rows over its vocabulary, log-probabilities and probabilities out:
     // rows past the register cache, each read once into shared memory for the three passes
    const int64_t vr = 2048, vc = 50257, vn = vr * vc;
    const Tensor logits = random_uniform({vr, vc}, 13, -4, 4);
    codegen::KernelIR ls;
    ls.shape = {vr, vc};
    ls.inputs = {{DType::Float32, {vr, vc}}};
    ls.insts = {inst("max", {0}), inst("sub", {0, 1}), inst("exp", {2}), inst("sum", {3}),
                inst("log", {4}), inst("sub", {2, 5}), inst("exp", {6})};
    ls.outputs = {6, 7};
    bench_op("fused_log_softmax_rows_fp32_2048x50257", "fused", {logits}, {{"region", ls.str()}},
             6.0 * vn, 12.0 * vn, 10, true);
  }
  bench_op("layer_norm_fp32_8192x8192", "layer_norm", {x},
           {{"normalized_shape", std::vector<int64_t>{cols}}}, 8.0 * n, 8.0 * n, 20, true);
  bench_op("softmax_fp32_8192x8192", "softmax", {x}, {}, 5.0 * n, 8.0 * n, 20, true);
  // Attention, GPT-2 124M shapes: batch 16, 12 heads, 1024 tokens, head size 64.
  for (DType t : {DType::BFloat16, DType::Float16})
    for (bool causal : {false, true}) {
      const int64_t b = 16, h = 12, s = 1024, d = 64;
      const Shape shape{b, h, s, d};
      const Tensor q = random_uniform(shape, 5, -1, 1, t), k = random_uniform(shape, 6, -1, 1, t);
      const Tensor v = random_uniform(shape, 7, -1, 1, t);
      const double pairs = static_cast<double>(b * h * s * s) * (causal ? 0.5 : 1.0);
      const double io = 4.0 * static_cast<double>(b * h * s * d) * 2;
      const std::string name = std::string("sdpa_") + dtype_name(t) + (causal ? "_causal" : "") +
                               "_16x12x1024x64";
      bench_op(name + "_fwd", "scaled_dot_product_attention", {q, k, v}, {{"causal", causal}},
               4.0 * pairs * d, io, 10, false);
      // The backward reads the forward's out and lse (log-sum-exp); "_bwd_no_lse"
      // leaves lse out, so the kernels recompute it.
      const auto fwd = apply("scaled_dot_product_attention", {q, k, v}, {{"causal", causal}});
      const Tensor g = random_uniform(shape, 8, -1, 1, t);
      bench_op(name + "_bwd", "scaled_dot_product_attention_backward",
               {q, k, v, fwd[0], g, fwd[1]}, {{"causal", causal}}, 10.0 * pairs * d, 2 * io, 5,
               false);
      bench_op(name + "_bwd_no_lse", "scaled_dot_product_attention_backward",
               {q, k, v, fwd[0], g}, {{"causal", causal}}, 10.0 * pairs * d, 2 * io, 5, false);
    }
  const double ceiling = gbps["copy_fp32_8192x8192"];
  std::printf("# share of the copy bandwidth measured above (%.1f GB/s):\n", ceiling);
  for (const auto& [name, g] : gbps)
    if (name != "copy_fp32_8192x8192")
      std::printf("#   %-32s %8.1f GB/s  %5.1f%%\n", name.c_str(), g, 100.0 * g / ceiling);
  return 0;
}
