// Channels-last 1x1 convolutions without padding (ResNet-50's bottleneck ends and
// downsampling shortcuts) are plain GEMMs over the M = N*OH*OW output pixels, no
// permute needed: y [M, O] = x [M, C] @ W^T (the OIHW weight is [O, C]),
// dx [M, C] = dy [M, O] @ W, and dW [O, C] = dy^T @ x. With a stride, x is the
// strided sample of the input: gathered into a temporary, and dx scattered into
// a zeroed input gradient. cuDNN's legacy API picks slow NHWC kernels for these
// (H200, bf16, batch 256: 0.22-0.59x PyTorch's channels_last convolutions,
// bench_cuda_dnn's conv_*1x1*_cl cases); cuBLASLt runs them as one matmul each.
#include <memory>

#include "backends/cuda/cublaslt_support.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/strided_copy.h"
#include "ds/cuda.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cuda {
namespace {

// Channels-last, one float dtype cuBLASLt multiplies in, 1x1 without padding or
// groups, channel counts a multiple of 8 (16-byte rows for bf16), and pixels to
// multiply.
bool pointwise_nhwc(const OpContext& c, const ops::ConvGeom& g) {
  if (!ops::is_channels_last(c)) return false;
  const DType t = c.inputs[0].dtype;
  if (t != DType::Float32 && t != DType::Float16 && t != DType::BFloat16) return false;
  for (const auto& in : c.inputs)
    if (in.dtype != t) return false;
  return g.kh == 1 && g.kw == 1 && g.pad.h == 0 && g.pad.w == 0 && g.groups == 1 && g.c % 8 == 0 &&
         g.o % 8 == 0 && g.n * g.oh * g.ow > 0;
}

int64_t pixels(const ops::ConvGeom& g) {
  return g.n * g.oh * g.ow;
}

bool strided(const ops::ConvGeom& g) {
  return g.stride.h != 1 || g.stride.w != 1;
}

// The input pixels a strided 1x1 convolution reads: [N, OH, OW, C] inside x, and
// packed.
Shape sampled_shape(const ops::ConvGeom& g) {
  return {g.n, g.oh, g.ow, g.c};
}
Shape sampled_strides(const ops::ConvGeom& g) {
  return {g.h * g.w * g.c, g.stride.h * g.w * g.c, g.stride.w * g.c, 1};
}
Shape packed_strides(const ops::ConvGeom& g) {
  return {g.oh * g.ow * g.c, g.ow * g.c, g.c, 1};
}

std::shared_ptr<void> packed_buffer(const ops::ConvGeom& g, DType t, int dev) {
  return allocate(static_cast<size_t>(pixels(g) * g.c) * dtype_size(t), dev);
}

// x's sampled pixels as a packed [M, C] matrix: x itself without a stride, else a
// gathered copy kept alive by `keep`.
const void* sampled_input(const ops::ConvGeom& g, const Tensor& x, int dev,
                          std::shared_ptr<void>* keep) {
  if (!strided(g)) return x.raw_data();
  *keep = packed_buffer(g, x.dtype(), dev);
  strided_copy(dev, x.raw_data(), sampled_shape(g), sampled_strides(g), keep->get(),
               packed_strides(g), dtype_size(x.dtype()), "strided 1x1 convolution input");
  return keep->get();
}

// In cuBLASLt's column-major terms a row-major [M, K] matrix is K x M (ld K):
// y^T (O x M) = W (stored C x O, transposed) @ x^T (C x M).
void forward(const KernelCall& kc) {
  const ops::ConvGeom g = ops::conv2d_geom(kc.ctx);
  Tensor& y = kc.outputs[0];
  const int dev = call_device(kc);
  std::shared_ptr<void> keep;
  LtMatmul m;
  m.dtype = y.dtype();
  m.rows = g.o, m.cols = pixels(g), m.inner = g.c;
  m.a = kc.inputs[1].raw_data(), m.trans_a = true;
  m.b = sampled_input(g, kc.inputs[0], dev, &keep);
  m.d = y.raw_data();
  lt_matmul(dev, m, kc.ctx.where().c_str());
}

// dx^T (C x M) = W (stored C x O) @ dy^T (O x M); with a stride, into the sampled
// pixels of a zeroed dx.
void backward_input(const KernelCall& kc) {
  const ops::ConvGeom g = ops::conv2d_backward_input_geom(kc.ctx);
  Tensor& dx = kc.outputs[0];
  const int dev = call_device(kc);
  LtMatmul m;
  m.dtype = dx.dtype();
  m.rows = g.c, m.cols = pixels(g), m.inner = g.o;
  m.a = kc.inputs[1].raw_data();
  m.b = kc.inputs[0].raw_data();
  if (!strided(g)) {
    m.d = dx.raw_data();
    return lt_matmul(dev, m, kc.ctx.where().c_str());
  }
  const auto packed = packed_buffer(g, dx.dtype(), dev);
  m.d = packed.get();
  lt_matmul(dev, m, kc.ctx.where().c_str());
  fill(dx, 0.0, "strided 1x1 convolution input gradient");
  strided_copy(dev, packed.get(), sampled_shape(g), packed_strides(g), dx.raw_data(),
               sampled_strides(g), dtype_size(dx.dtype()),
               "strided 1x1 convolution input gradient");
}

// dW^T (C x O) = x^T (C x M) @ dy (stored O x M, transposed).
void backward_weight(const KernelCall& kc) {
  const ops::ConvGeom g = ops::conv2d_backward_weight_geom(kc.ctx);
  Tensor& dw = kc.outputs[0];
  const int dev = call_device(kc);
  std::shared_ptr<void> keep;
  LtMatmul m;
  m.dtype = dw.dtype();
  m.rows = g.c, m.cols = g.o, m.inner = pixels(g);
  m.a = sampled_input(g, kc.inputs[0], dev, &keep);
  m.b = kc.inputs[1].raw_data(), m.trans_b = true;
  m.d = dw.raw_data();
  lt_matmul(dev, m, kc.ctx.where().c_str());
}

const OpRegistrar reg([] {
  // Above cuDNN's NHWC kernels (priority 30); conv2d with a bias stays with them.
  register_kernel("conv2d", DeviceKind::CUDA,
                  {forward,
                   [](const OpContext& c) {
                     return c.inputs.size() == 2 && pointwise_nhwc(c, ops::conv2d_geom(c));
                   },
                   "cublaslt-1x1-nhwc", 40});
  register_kernel(
      "conv2d_backward_input", DeviceKind::CUDA,
      {backward_input,
       [](const OpContext& c) { return pointwise_nhwc(c, ops::conv2d_backward_input_geom(c)); },
       "cublaslt-1x1-nhwc", 40});
  register_kernel(
      "conv2d_backward_weight", DeviceKind::CUDA,
      {backward_weight,
       [](const OpContext& c) { return pointwise_nhwc(c, ops::conv2d_backward_weight_geom(c)); },
       "cublaslt-1x1-nhwc", 40});
});

}  // namespace
}  // namespace ds::cuda
