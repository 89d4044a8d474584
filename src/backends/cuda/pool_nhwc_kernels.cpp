// max_pool2d and max_pool2d_backward with `channels_last` (x [N, H, W, C]) on
// the GPU: NVRTC kernels over the NHWC output elements (device code and design:
// pool_nhwc_source.h). The NCHW kernels are pool_kernels.cpp's.
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <memory>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "backends/cuda/pool_nhwc_source.h"
#include "ds/cuda.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cuda {
namespace {

// The device code's PoolNhwcArgs, field for field (32-bit: supported() checks).
struct PoolNhwcArgs {
  int n, h, w, c, oh, ow;
  int kh, kw, sh, sw, ph, pw, dh, dw;
};

PoolNhwcArgs args_of(const ops::PoolGeom& g) {
  auto i32 = [](int64_t v) { return static_cast<int>(v); };
  return {i32(g.n),     i32(g.h),     i32(g.w),     i32(g.c),        i32(g.oh),
          i32(g.ow),    i32(g.kh),    i32(g.kw),    i32(g.stride.h), i32(g.stride.w),
          i32(g.pad.h), i32(g.pad.w), i32(g.dil.h), i32(g.dil.w)};
}

std::string source_of(const Tensor& t) {
  return max_pool_nhwc_source(device_type(t.dtype()));
}

bool aligned16(const Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0;
}

// Whether the _vec kernels (16-byte packs of channels) serve these tensors.
bool packs_channels(const ops::PoolGeom& g, std::initializer_list<const Tensor*> ts) {
  if (g.c % (16 / static_cast<int64_t>(dtype_size(ts.begin()[0]->dtype()))) != 0) return false;
  for (const Tensor* t : ts)
    if (!aligned16(*t)) return false;
  return true;
}

void forward(const KernelCall& kc) {
  const int64_t n = kc.outputs[0].numel();
  if (n == 0) return;
  const int dev = call_device(kc);
  const ops::PoolGeom geom = ops::pool_geom(kc.ctx, kc.inputs[0].shape());
  PoolNhwcArgs g = args_of(geom);
  const void* x = kc.inputs[0].raw_data();
  void* y = kc.outputs[0].raw_data();
  void* args[] = {&x, &y, &g};
  const bool vec = packs_channels(geom, {&kc.inputs[0], &kc.outputs[0]});
  const int64_t per = vec ? 16 / static_cast<int64_t>(dtype_size(kc.outputs[0].dtype())) : 1;
  const char* name = vec ? "ds_max_pool_nhwc_vec" : "ds_max_pool_nhwc";
  launch(dev, get_kernel(dev, source_of(kc.outputs[0]), name), grid_for(n / per, dev), 256, args, 0,
         "max_pool2d");
}

// Over channel packs: each window's argmax tap as a byte, then each x pack
// gathers the gradients of the windows whose tap it is. Otherwise each output's
// gradient is added at its window's argmax: into the zeroed output
// (float32/float64) or a zeroed float buffer rounded into it.
void backward(const KernelCall& kc) {
  Tensor& gx = kc.outputs[0];
  if (gx.numel() == 0) return;
  const int dev = call_device(kc);
  const DType t = gx.dtype();
  const ops::PoolGeom geom = ops::pool_geom(kc.ctx, kc.inputs[0].shape());
  PoolNhwcArgs g = args_of(geom);
  const void* x = kc.inputs[0].raw_data();
  const void* gy = kc.inputs[1].raw_data();
  const std::string src = source_of(gx);
  const int64_t outputs = kc.inputs[1].numel();
  const int64_t per = 16 / static_cast<int64_t>(dtype_size(t));
  if (packs_channels(geom, {&kc.inputs[0], &kc.inputs[1], &gx}) && geom.kh * geom.kw < 255) {
    std::shared_ptr<void> taps_buffer =
        outputs > 0 ? allocate(static_cast<size_t>(outputs), dev) : nullptr;
    void* taps = taps_buffer.get();
    if (outputs > 0) {
      void* args[] = {&x, &taps, &g};
      launch(dev, get_kernel(dev, src, "ds_max_pool_nhwc_taps_vec"), grid_for(outputs / per, dev),
             256, args, 0, "max_pool2d_backward (taps)");
    }
    const void* tp = taps;
    void* out = gx.raw_data();
    void* args[] = {&tp, &gy, &out, &g};
    launch(dev, get_kernel(dev, src, "ds_max_pool_nhwc_backward_taps_vec"),
           grid_for(gx.numel() / per, dev), 256, args, 0, "max_pool2d_backward");
    return;
  }
  const bool direct = t == DType::Float32 || t == DType::Float64;
  const size_t acc_bytes =
      static_cast<size_t>(gx.numel()) * (direct ? dtype_size(t) : sizeof(float));
  std::shared_ptr<void> scratch;
  void* acc = gx.raw_data();
  if (!direct) {
    scratch = allocate(acc_bytes, dev);
    acc = scratch.get();
  }
  set_device(dev);
  DS_CUDA_CHECK(cudaMemsetAsync(acc, 0, acc_bytes, stream_of(dev)));
  if (outputs > 0) {
    void* args[] = {&x, &gy, &acc, &g};
    launch(dev, get_kernel(dev, src, "ds_max_pool_nhwc_backward"), grid_for(outputs, dev), 256,
           args, 0, "max_pool2d_backward");
  }
  if (!direct) {
    const void* ap = acc;
    void* op = gx.raw_data();
    int n = static_cast<int>(gx.numel());
    void* args[] = {&ap, &op, &n};
    launch(dev, get_kernel(dev, src, "ds_max_pool_nhwc_round"), grid_for(n, dev), 256, args, 0,
           "max_pool2d_backward");
  }
}

// Channels-last float calls (one dtype) whose element indices fit the kernels'
// 32-bit arithmetic.
bool supported(const OpContext& c) {
  if (!ops::is_channels_last(c) || !nvrtc_float(c.inputs[0].dtype)) return false;
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  const ops::PoolGeom g = ops::pool_geom(c, c.inputs[0].shape);
  const int64_t limit = INT_MAX / 4;
  for (int64_t v : {g.n * g.h * g.w * g.c, g.n * g.oh * g.ow * g.c, g.h + g.kh * g.dil.h + g.pad.h,
                    g.w + g.kw * g.dil.w + g.pad.w, g.oh * g.stride.h, g.ow * g.stride.w})
    if (v >= limit || v < 0) return false;
  return true;
}

const OpRegistrar reg([] {
  register_kernel("max_pool2d", DeviceKind::CUDA, {forward, supported, "nvrtc-nhwc", 30});
  register_kernel("max_pool2d_backward", DeviceKind::CUDA, {backward, supported, "nvrtc-nhwc", 30});
});

}  // namespace
}  // namespace ds::cuda
