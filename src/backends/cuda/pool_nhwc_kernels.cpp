// max_pool2d and max_pool2d_backward with `channels_last` (x [N, H, W, C]) on
// the GPU: NVRTC kernels over the NHWC elements (device code and design:
// pool_nhwc_source.h). The NCHW kernels are pool_kernels.cpp's.
#include <climits>

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "backends/cuda/pool_nhwc_source.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cuda {
namespace {

// The device code's PoolNhwcArgs, field for field.
struct PoolNhwcArgs {
  long long n, h, w, c, oh, ow;
  int kh, kw, sh, sw, ph, pw, dh, dw;
};

PoolNhwcArgs args_of(const ops::PoolGeom& g) {
  auto i32 = [](int64_t v) { return static_cast<int>(v); };
  return {g.n,
          g.h,
          g.w,
          g.c,
          g.oh,
          g.ow,
          i32(g.kh),
          i32(g.kw),
          i32(g.stride.h),
          i32(g.stride.w),
          i32(g.pad.h),
          i32(g.pad.w),
          i32(g.dil.h),
          i32(g.dil.w)};
}

// Grid-stride launch over `n` elements of kernel `name` with args (inputs..., out, geometry).
void run(const KernelCall& kc, const char* name, int64_t n) {
  if (n == 0) return;
  const int dev = call_device(kc);
  PoolNhwcArgs g = args_of(ops::pool_geom(kc.ctx, kc.inputs[0].shape()));
  const void* x = kc.inputs[0].raw_data();
  const void* gy = kc.inputs.size() > 1 ? kc.inputs[1].raw_data() : nullptr;
  void* out = kc.outputs[0].raw_data();
  void* forward_args[] = {&x, &out, &g};
  void* backward_args[] = {&x, &gy, &out, &g};
  const std::string src = max_pool_nhwc_source(device_type(kc.outputs[0].dtype()));
  launch(dev, get_kernel(dev, src, name), grid_for(n, dev), 256, gy ? backward_args : forward_args,
         0, kc.ctx.op.name.c_str());
}

// Channels-last float calls (one dtype) whose in-image positions and window
// geometry fit the kernels' 32-bit arithmetic.
bool supported(const OpContext& c) {
  if (!ops::is_channels_last(c) || !nvrtc_float(c.inputs[0].dtype)) return false;
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  const ops::PoolGeom g = ops::pool_geom(c, c.inputs[0].shape);
  const int64_t limit = INT_MAX / 4;
  for (int64_t v : {g.h * g.w, g.oh * g.ow, g.h + g.kh * g.dil.h + g.pad.h,
                    g.w + g.kw * g.dil.w + g.pad.w, g.oh * g.stride.h, g.ow * g.stride.w})
    if (v >= limit) return false;
  return true;
}

const OpRegistrar reg([] {
  register_kernel("max_pool2d", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { run(kc, "ds_max_pool_nhwc", kc.outputs[0].numel()); },
                   supported, "nvrtc-nhwc", 30});
  register_kernel(
      "max_pool2d_backward", DeviceKind::CUDA,
      {[](const KernelCall& kc) { run(kc, "ds_max_pool_nhwc_backward", kc.outputs[0].numel()); },
       supported, "nvrtc-nhwc", 30});
});

}  // namespace
}  // namespace ds::cuda
