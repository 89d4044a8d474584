// batch_norm_train and batch_norm_train_backward on the GPU for x [M, C] (every
// extent after the channels 1): channels-last BatchNorm2d, which normalizes
// [N, H, W, C] as [N*H*W, C]. Three launches per op: per-chunk column sums, a
// per-channel combination, an elementwise pass (device code and design:
// batch_norm_columns_source.h). Registered above the [N, C, H*W] kernels of
// batch_norm_train_kernels.cpp, which read such a column one strided element
// at a time.
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "backends/cuda/batch_norm_columns_source.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

// Row chunks: about 8 blocks per SM over all column blocks, each thread with at
// least 16 rows, within the grid's y limit.
struct Plan {
  long long rows, channels, rows_per_chunk;
  unsigned column_blocks, chunks;
};

// (device_info() reads every property: slow per call.)
int sm_count(int device) {
  int sms = 0;
  DS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

Plan plan_for(const Tensor& x, int device) {
  Plan p{};
  p.channels = x.dim(1);
  p.rows = p.channels > 0 ? x.numel() / p.channels : 0;
  p.column_blocks = static_cast<unsigned>((p.channels + 31) / 32);
  const int64_t want = std::max<int64_t>(1, int64_t{sm_count(device)} * 8 / p.column_blocks);
  const int64_t most = std::max<int64_t>(1, p.rows / (8 * 16));
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

void launch_sums(int dev, const std::string& src, const char* name, const Plan& p, void** args,
                 const char* what) {
  launch(dev, get_kernel(dev, src, name), dim3(p.column_blocks, p.chunks), dim3(32, 8), args, 0,
         what);
}

// Values per pack of the elementwise passes: the widest of 16/8/4/2 bytes that
// divides the channel count and every pointer's alignment.
int pack_width(int64_t channels, size_t elem, std::initializer_list<const void*> ptrs) {
  for (int v = static_cast<int>(16 / elem); v > 1; v /= 2) {
    bool ok = channels % v == 0;
    for (const void* p : ptrs) ok = ok && reinterpret_cast<uintptr_t>(p) % (v * elem) == 0;
    if (ok) return v;
  }
  return 1;
}

// A warp per channel.
dim3 finalize_grid(const Plan& p) {
  return dim3(static_cast<unsigned>((p.channels + 7) / 8));
}

void forward(const KernelCall& kc) {
  const Tensor& x = kc.inputs[0];
  if (x.dim(1) == 0) return;
  const int dev = call_device(kc);
  const Plan p = plan_for(x, dev);
  Tensor partial = scratch({p.chunks, p.channels, 2}, kc, x),
         coef = scratch({p.channels, 4}, kc, x);
  const void* xp = x.raw_data();
  const void* wp = optional_input(kc, 1);
  const void* bp = optional_input(kc, 2);
  void *pp = partial.raw_data(), *cp = coef.raw_data(), *yp = kc.outputs[0].raw_data();
  void *mp = kc.outputs[1].raw_data(), *vp = kc.outputs[2].raw_data();
  long long rows = p.rows, channels = p.channels, per_chunk = p.rows_per_chunk, n = x.numel();
  unsigned chunks = p.chunks;
  double eps = kc.ctx.f("eps");
  const int vec = pack_width(channels, dtype_size(x.dtype()), {xp, yp});
  const std::string src = batch_norm_columns_source(device_type(x.dtype()), vec);
  void* stats_args[] = {&xp, &pp, &rows, &channels, &per_chunk};
  launch_sums(dev, src, "ds_bnc_stats", p, stats_args, "batch_norm_train statistics");
  void* fin_args[] = {&xp, &pp, &wp, &bp, &mp, &vp, &cp, &rows, &channels, &chunks, &eps};
  launch(dev, get_kernel(dev, src, "ds_bnc_finalize"), finalize_grid(p), 256, fin_args, 0,
         "batch_norm_train statistics");
  if (n == 0) return;
  const void* ccp = cp;
  long long packs = n / vec;
  void* norm_args[] = {&xp, &ccp, &yp, &packs, &channels};
  launch(dev, get_kernel(dev, src, "ds_bnc_normalize"), grid_for(packs, dev), 256, norm_args, 0,
         "batch_norm_train normalize");
}

void backward(const KernelCall& kc) {
  const Tensor& x = kc.inputs[1];
  if (x.dim(1) == 0) return;
  const int dev = call_device(kc);
  const Plan p = plan_for(x, dev);
  Tensor partial = scratch({p.chunks, p.channels, 2}, kc, x),
         coef = scratch({p.channels, 4}, kc, x);
  const void *dyp = kc.inputs[0].raw_data(), *xp = x.raw_data();
  const void *mp = kc.inputs[2].raw_data(), *vp = kc.inputs[3].raw_data();
  const void* wp = optional_input(kc, 4);
  void *pp = partial.raw_data(), *cp = coef.raw_data(), *dxp = kc.outputs[0].raw_data();
  void *dwp = kc.outputs[1].raw_data(), *dbp = kc.outputs[2].raw_data();
  long long rows = p.rows, channels = p.channels, per_chunk = p.rows_per_chunk, n = x.numel();
  unsigned chunks = p.chunks;
  double eps = kc.ctx.f("eps");
  const int vec = pack_width(channels, dtype_size(x.dtype()), {dyp, xp, dxp});
  const std::string src = batch_norm_columns_source(device_type(x.dtype()), vec);
  void* stats_args[] = {&dyp, &xp, &mp, &pp, &rows, &channels, &per_chunk};
  launch_sums(dev, src, "ds_bnc_grad_stats", p, stats_args, "batch_norm_train_backward statistics");
  void* fin_args[] = {&pp, &mp, &vp, &wp, &dwp, &dbp, &cp, &rows, &channels, &chunks, &eps};
  launch(dev, get_kernel(dev, src, "ds_bnc_grad_finalize"), finalize_grid(p), 256, fin_args, 0,
         "batch_norm_train_backward statistics");
  if (n == 0) return;
  const void* ccp = cp;
  long long packs = n / vec;
  void* dx_args[] = {&dyp, &xp, &ccp, &dxp, &packs, &channels};
  launch(dev, get_kernel(dev, src, "ds_bnc_grad_input"), grid_for(packs, dev), 256, dx_args, 0,
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
