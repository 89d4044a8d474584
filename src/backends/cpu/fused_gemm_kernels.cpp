// fused_linear (float32): SGEMM over a tile of rows, then the epilogue (bias,
// residual, activation) over that tile while it is still in cache.
#include <algorithm>

#include "backends/cpu/gemm_kernels.h"
#include "core/thread_pool.h"
#include "ir/ops/fused_epilogue.h"

namespace ds::cpu {
namespace {

// Rows per tile: about 256 KiB of output (L2-sized), at least one row.
int64_t tile_rows(int64_t cols) { return std::max<int64_t>(1, (256 * 1024 / 4) / std::max<int64_t>(cols, 1)); }

void run_fused_linear(SgemmFn sgemm, const KernelCall& kc) {
  const OpContext& c = kc.ctx;
  const Tensor &x = kc.inputs[0], &w = kc.inputs[1];
  Tensor& y = kc.outputs[0];
  const bool linear = c.s("base") == "linear";  // weight [out, in]; matmul's is [in, out]
  const int64_t out = linear ? w.dim(0) : w.dim(1), in = linear ? w.dim(1) : w.dim(0);
  const int64_t rows = out == 0 ? 0 : y.numel() / out;
  if (rows == 0) return;
  const float* bias = c.b("has_bias") ? kc.inputs[2].data<float>() : nullptr;
  const float* residual = c.b("has_residual") ? kc.inputs.back().data<float>() : nullptr;
  const ops::Act act = ops::parse_activation(c.s("activation"));
  const float alpha = static_cast<float>(c.f("alpha"));
  float* py = y.data<float>();
  const int64_t step = tile_rows(out);
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t r1 = std::min(rows, r0 + step);
    float* tile = py + r0 * out;
    if (in == 0)
      std::fill(tile, py + r1 * out, 0.0f);
    else
      sgemm(false, linear, r1 - r0, out, in, 1.0f, x.data<float>() + r0 * in, in, w.data<float>(),
            linear ? in : out, 0.0f, tile, out);
    // The epilogue: elementwise over the tile, split over threads by rows.
    parallel_for(r1 - r0, std::max<int64_t>(1, 4096 / std::max<int64_t>(out, 1)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t r = b; r < e; ++r) {
                     float* row = tile + r * out;
                     const float* res = residual ? residual + (r0 + r) * out : nullptr;
                     for (int64_t j = 0; j < out; ++j) {
                       float v = row[j];
                       if (bias) v += bias[j];
                       if (res) v += res[j];
                       row[j] = ops::activate(act, v, alpha);
                     }
                   }
                 });
  }
}

}  // namespace

void register_fused_gemm_kernel(SgemmFn sgemm, const std::string& impl, int priority,
                                std::function<bool(const GemmSize&)> prefer) {
  auto supports = [prefer](const OpContext& c) {
    for (const auto& t : c.inputs)
      if (t.dtype != DType::Float32) return false;
    const Shape& w = c.inputs[1].shape;
    const bool linear = c.s("base") == "linear";
    const int64_t out = linear ? w[0] : w[1], in = linear ? w[1] : w[0];
    const int64_t x_numel = numel(c.inputs[0].shape);
    return prefer({in == 0 ? 0 : x_numel / in, out, in});
  };
  register_kernel("fused_linear", DeviceKind::CPU,
                  {[sgemm](const KernelCall& k) { run_fused_linear(sgemm, k); }, supports,
                   impl + "+epilogue", priority});
}

}  // namespace ds::cpu
