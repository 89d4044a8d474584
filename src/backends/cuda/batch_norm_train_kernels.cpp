// CUDA kernels of batch_norm_train and batch_norm_train_backward (device code and
// the pass structure: batch_norm_train_source.h). Two launches per op: a
// statistics pass writing per-(channel, chunk) partial sums, then an elementwise
// pass that combines them and writes y (or dx).
#include <algorithm>
#include <cstdint>

#include "backends/cuda/batch_norm_train_source.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

constexpr unsigned kThreads = 256;

// The launch shape shared by a statistics pass and its elementwise pass.
struct Plan {
  long long channels = 0;
  unsigned plane_packs = 1, packs = 0, per_block = 1, chunks = 1;
  int vec = 1;
};

Plan plan_for(const Tensor& x, int vec, int device) {
  Plan p;
  const int64_t n = x.dim(0), ch = x.dim(1), inner = n * ch > 0 ? x.numel() / (n * ch) : 0;
  p.channels = ch;
  p.vec = vec;
  p.plane_packs = static_cast<unsigned>(std::max<int64_t>(inner / vec, 1));
  p.packs = static_cast<unsigned>(n * inner / vec);
  // About 32 blocks per SM over all channels (several waves, so the last one's
  // tail is short), each with at least 4 packs per thread.
  const int64_t want = std::max<int64_t>(1, (int64_t{sm_count(device)} * 32 + ch - 1) / ch);
  const int64_t most = std::max<int64_t>(1, p.packs / (kThreads * 4));
  const int64_t chunks = std::min<int64_t>({want, most, 1024});
  p.per_block = static_cast<unsigned>(std::max<int64_t>(1, (p.packs + chunks - 1) / chunks));
  p.chunks = static_cast<unsigned>(std::max<int64_t>(1, (p.packs + p.per_block - 1) / p.per_block));
  return p;
}

std::string source_for(DType t, int vec) { return batch_norm_train_source(device_type(t), vec); }

void forward(const KernelCall& kc) {
  const Tensor& x = kc.inputs[0];
  if (x.dim(1) == 0) return;
  const int dev = call_device(kc);
  const void* xp = x.raw_data();
  void* yp = kc.outputs[0].raw_data();
  const void* rp = kc.inputs.size() > 3 ? kc.inputs[3].raw_data() : nullptr;  // the residual
  int relu = kc.ctx.b("relu") ? 1 : 0;
  const Plan p = plan_for(x, pack_width(x.numel() / std::max<int64_t>(x.dim(0) * x.dim(1), 1),
                                        dtype_size(x.dtype()), {xp, yp, rp ? rp : xp}), dev);
  const DType acc = kc.outputs[1].dtype();
  Tensor partial = Tensor::empty({p.channels, p.chunks, 2}, acc, x.device());
  void* pp = partial.raw_data();
  const void* wp = kc.inputs.size() > 1 ? kc.inputs[1].raw_data() : nullptr;
  const void* bp = kc.inputs.size() > 2 ? kc.inputs[2].raw_data() : nullptr;
  void* mp = kc.outputs[1].raw_data();
  void* vp = kc.outputs[2].raw_data();
  long long channels = p.channels;
  unsigned plane = p.plane_packs, packs = p.packs, per_block = p.per_block, chunks = p.chunks;
  double eps = kc.ctx.f("eps");
  const std::string src = source_for(x.dtype(), p.vec);
  const dim3 grid(static_cast<unsigned>(p.channels), p.chunks);
  void* stats_args[] = {&xp, &pp, &channels, &plane, &packs, &per_block};
  launch(dev, get_kernel(dev, src, "ds_bnt_stats"), grid, kThreads, stats_args, 0,
         "batch_norm_train statistics");
  void* norm_args[] = {&xp,    &pp,        &wp,     &bp,  &yp, &mp,   &vp, &channels, &plane,
                       &packs, &per_block, &chunks, &eps, &rp, &relu};
  launch(dev, get_kernel(dev, src, "ds_bnt_normalize"), grid, kThreads, norm_args, 0,
         "batch_norm_train normalize");
}

void backward(const KernelCall& kc) {
  const Tensor& x = kc.inputs[1];
  if (x.dim(1) == 0) return;
  const int dev = call_device(kc);
  const void* dyp = kc.inputs[0].raw_data();
  const void* xp = x.raw_data();
  void* dxp = kc.outputs[0].raw_data();
  const Plan p = plan_for(x, pack_width(x.numel() / std::max<int64_t>(x.dim(0) * x.dim(1), 1),
                                        dtype_size(x.dtype()), {dyp, xp, dxp}), dev);
  const DType acc = kc.outputs[1].dtype();
  Tensor partial = Tensor::empty({p.channels, p.chunks, 2}, acc, x.device());
  void* pp = partial.raw_data();
  const void* mp = kc.inputs[2].raw_data();
  const void* vp = kc.inputs[3].raw_data();
  const void* wp = kc.inputs.size() > 4 ? kc.inputs[4].raw_data() : nullptr;
  void* dwp = kc.outputs[1].raw_data();
  void* dbp = kc.outputs[2].raw_data();
  long long channels = p.channels;
  unsigned plane = p.plane_packs, packs = p.packs, per_block = p.per_block, chunks = p.chunks;
  double eps = kc.ctx.f("eps");
  const std::string src = source_for(x.dtype(), p.vec);
  const dim3 grid(static_cast<unsigned>(p.channels), p.chunks);
  void* stats_args[] = {&dyp, &xp, &mp, &pp, &channels, &plane, &packs, &per_block};
  launch(dev, get_kernel(dev, src, "ds_bnt_grad_stats"), grid, kThreads, stats_args, 0,
         "batch_norm_train_backward statistics");
  void* dx_args[] = {&dyp, &xp, &mp, &vp, &wp, &pp, &dxp, &dwp, &dbp, &channels, &plane, &packs,
                     &per_block, &chunks, &eps};
  launch(dev, get_kernel(dev, src, "ds_bnt_grad_input"), grid, kThreads, dx_args, 0,
         "batch_norm_train_backward dx");
}

// Float data; a channel's N*H*W values counted in 32 bits; channels on grid x.
bool supported(const OpContext& c, size_t x_index) {
  const TensorType& x = c.inputs[x_index];
  if (!nvrtc_float(x.dtype)) return false;
  int64_t per_channel = 1;
  for (size_t d = 0; d < x.shape.size(); ++d)
    if (d != 1) per_channel *= x.shape[d];
  return per_channel < (int64_t{1} << 31) && x.shape[1] < (int64_t{1} << 31);
}

const OpRegistrar reg([] {
  register_kernel("batch_norm_train", DeviceKind::CUDA,
                  {forward, [](const OpContext& c) { return supported(c, 0); }, "nvrtc", 10});
  register_kernel("batch_norm_train_backward", DeviceKind::CUDA,
                  {backward, [](const OpContext& c) { return supported(c, 1); }, "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
