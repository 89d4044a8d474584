// batch_norm_train and batch_norm_train_backward on the GPU for x [M, C] (every
// extent after the channels 1): channels-last BatchNorm2d, which normalizes
// [N, H, W, C] as [N*H*W, C]. Three launches per op: per-chunk column sums, a
// per-channel combination, an elementwise pass (device code and design:
// batch_norm_columns_source.h). Registered above the [N, C, H*W] kernels of
// batch_norm_train_kernels.cpp, which read such a column one strided element
// at a time.
#include <algorithm>
#include <cstdint>

#include "backends/cuda/batch_norm_columns_source.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

constexpr int kThreads = 256;

// The column-sum launch: blocks of `pack_columns` pack columns x 256 / pack_columns
// rows (a whole row of fewer than 32 packs when 32 is a multiple of it), about 8
// blocks per SM over all column blocks, each thread with at least 16 rows.
struct Plan {
  long long rows, channels, packs_per_row, rows_per_chunk;
  int vec, pack_columns;
  unsigned column_blocks, chunks;
};

Plan plan_for(const Tensor& x, int vec, int device) {
  Plan p{};
  p.channels = x.dim(1);
  p.rows = p.channels > 0 ? x.numel() / p.channels : 0;
  p.vec = vec;
  p.packs_per_row = p.channels / vec;
  p.pack_columns =
      p.packs_per_row < 32 && 32 % p.packs_per_row == 0 ? static_cast<int>(p.packs_per_row) : 32;
  p.column_blocks = static_cast<unsigned>((p.packs_per_row + p.pack_columns - 1) / p.pack_columns);
  const int64_t lanes = kThreads / p.pack_columns;
  const int64_t want = std::max<int64_t>(1, int64_t{sm_count(device)} * 8 / p.column_blocks);
  const int64_t most = std::max<int64_t>(1, p.rows / (lanes * 16));
  const int64_t chunks = std::min<int64_t>({want, most, 65535});
  p.rows_per_chunk = std::max<int64_t>(1, (p.rows + chunks - 1) / chunks);
  p.chunks = static_cast<unsigned>(
      std::max<int64_t>(1, (p.rows + p.rows_per_chunk - 1) / p.rows_per_chunk));
  return p;
}

const void* optional_input(const KernelCall& kc, size_t i) {
  return kc.inputs.size() > i ? kc.inputs[i].raw_data() : nullptr;
}

// Scratch of the statistics' type A on x's device.
Tensor scratch(const Shape& shape, const KernelCall& kc, const Tensor& x) {
  return Tensor::empty(shape, kc.outputs[1].dtype(), x.device());
}

// A warp per channel.
dim3 finalize_grid(const Plan& p) {
  return dim3(static_cast<unsigned>((p.channels + 7) / 8));
}

void forward(const KernelCall& kc) {
  const Tensor& x = kc.inputs[0];
  if (x.dim(1) == 0) return;
  const int dev = call_device(kc);
  const void* xp = x.raw_data();
  void* yp = kc.outputs[0].raw_data();
  const void* rp = optional_input(kc, 3);  // the residual
  int relu = kc.ctx.b("relu") ? 1 : 0;
  const Plan p = plan_for(x, pack_width(x.dim(1), dtype_size(x.dtype()), {xp, yp, rp ? rp : xp}), dev);
  Tensor partial = scratch({p.chunks, p.channels, 2}, kc, x),
         coef = scratch({4, p.channels}, kc, x);
  const void* wp = optional_input(kc, 1);
  const void* bp = optional_input(kc, 2);
  void *pp = partial.raw_data(), *cp = coef.raw_data();
  void *mp = kc.outputs[1].raw_data(), *vp = kc.outputs[2].raw_data();
  long long rows = p.rows, channels = p.channels, packs_per_row = p.packs_per_row;
  long long per_chunk = p.rows_per_chunk, packs = x.numel() / p.vec;
  int pack_columns = p.pack_columns;
  unsigned chunks = p.chunks;
  double eps = kc.ctx.f("eps");
  const std::string src = batch_norm_columns_source(device_type(x.dtype()), p.vec);
  void* stats_args[] = {&xp, &pp, &rows, &packs_per_row, &pack_columns, &per_chunk};
  launch(dev, get_kernel(dev, src, "ds_bnc_stats"), dim3(p.column_blocks, p.chunks), kThreads,
         stats_args, 0, "batch_norm_train statistics");
  void* fin_args[] = {&xp, &pp, &wp, &bp, &mp, &vp, &cp, &rows, &channels, &chunks, &eps};
  launch(dev, get_kernel(dev, src, "ds_bnc_finalize"), finalize_grid(p), kThreads, fin_args, 0,
         "batch_norm_train statistics");
  if (packs == 0) return;
  const void* ccp = cp;
  void* norm_args[] = {&xp, &ccp, &yp, &packs, &channels, &rp, &relu};
  launch(dev, get_kernel(dev, src, "ds_bnc_normalize"), grid_for(packs, dev), kThreads, norm_args,
         0, "batch_norm_train normalize");
}

void backward(const KernelCall& kc) {
  const Tensor& x = kc.inputs[1];
  if (x.dim(1) == 0) return;
  const int dev = call_device(kc);
  const void *dyp = kc.inputs[0].raw_data(), *xp = x.raw_data();
  void* dxp = kc.outputs[0].raw_data();
  const Plan p = plan_for(x, pack_width(x.dim(1), dtype_size(x.dtype()), {dyp, xp, dxp}), dev);
  Tensor partial = scratch({p.chunks, p.channels, 2}, kc, x),
         coef = scratch({4, p.channels}, kc, x);
  const void *mp = kc.inputs[2].raw_data(), *vp = kc.inputs[3].raw_data();
  const void* wp = optional_input(kc, 4);
  void *pp = partial.raw_data(), *cp = coef.raw_data();
  void *dwp = kc.outputs[1].raw_data(), *dbp = kc.outputs[2].raw_data();
  long long rows = p.rows, channels = p.channels, packs_per_row = p.packs_per_row;
  long long per_chunk = p.rows_per_chunk, packs = x.numel() / p.vec;
  int pack_columns = p.pack_columns;
  unsigned chunks = p.chunks;
  double eps = kc.ctx.f("eps");
  const std::string src = batch_norm_columns_source(device_type(x.dtype()), p.vec);
  void* stats_args[] = {&dyp, &xp, &mp, &pp, &rows, &packs_per_row, &pack_columns, &per_chunk};
  launch(dev, get_kernel(dev, src, "ds_bnc_grad_stats"), dim3(p.column_blocks, p.chunks), kThreads,
         stats_args, 0, "batch_norm_train_backward statistics");
  void* fin_args[] = {&pp, &mp, &vp, &wp, &dwp, &dbp, &cp, &rows, &channels, &chunks, &eps};
  launch(dev, get_kernel(dev, src, "ds_bnc_grad_finalize"), finalize_grid(p), kThreads, fin_args, 0,
         "batch_norm_train_backward statistics");
  if (packs == 0) return;
  const void* ccp = cp;
  void* dx_args[] = {&dyp, &xp, &ccp, &dxp, &packs, &channels};
  launch(dev, get_kernel(dev, src, "ds_bnc_grad_input"), grid_for(packs, dev), kThreads, dx_args, 0,
         "batch_norm_train_backward dx");
}

// Float x whose extents after the channels are all 1 (channel counts fit the grids).
bool columns(const OpContext& c, size_t x_index) {
  const TensorType& x = c.inputs[x_index];
  if (!nvrtc_float(x.dtype) || x.shape.size() < 2) return false;
  for (size_t d = 2; d < x.shape.size(); ++d)
    if (x.shape[d] != 1) return false;
  return x.shape[1] < (int64_t{1} << 31);
}

const OpRegistrar reg([] {
  register_kernel("batch_norm_train", DeviceKind::CUDA,
                  {forward, [](const OpContext& c) { return columns(c, 0); }, "nvrtc-columns", 20});
  register_kernel(
      "batch_norm_train_backward", DeviceKind::CUDA,
      {backward, [](const OpContext& c) { return columns(c, 1); }, "nvrtc-columns", 20});
});

}  // namespace
}  // namespace ds::cuda
