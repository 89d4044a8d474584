// Channels-last 1x1 convolutions with stride 1 (ResNet-50's bottleneck ends) are
// plain GEMMs over the M = N*H*W pixels, no permute needed: y [M, O] = x [M, C]
// @ W^T (the OIHW weight is [O, C]), dx [M, C] = dy [M, O] @ W, and dW [O, C] =
// dy^T @ x. cuDNN's legacy API picks slow NHWC kernels for them (H200, bf16,
// batch 256: 0.22-0.59x PyTorch's channels_last convolutions, bench_cuda_dnn's
// conv_*1x1*_cl cases); cuBLASLt runs them as one matmul each.
#include "backends/cuda/cublaslt_support.h"
#include "backends/cuda/kernel_support.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cuda {
namespace {

// Channels-last, one float dtype cuBLASLt multiplies in, 1x1 stride 1 without
// padding or groups, channel counts a multiple of 8 (16-byte rows for bf16), and
// pixels to multiply.
bool pointwise_nhwc(const OpContext& c, const ops::ConvGeom& g) {
  if (!ops::is_channels_last(c)) return false;
  const DType t = c.inputs[0].dtype;
  if (t != DType::Float32 && t != DType::Float16 && t != DType::BFloat16) return false;
  for (const auto& in : c.inputs)
    if (in.dtype != t) return false;
  return g.kh == 1 && g.kw == 1 && g.stride.h == 1 && g.stride.w == 1 && g.pad.h == 0 &&
         g.pad.w == 0 && g.groups == 1 && g.c % 8 == 0 && g.o % 8 == 0 && g.n * g.h * g.w > 0;
}

int64_t pixels(const ops::ConvGeom& g) {
  return g.n * g.h * g.w;
}

// In cuBLASLt's column-major terms a row-major [M, K] matrix is K x M (ld K):
// y^T (O x M) = W (stored C x O, transposed) @ x^T (C x M).
void forward(const KernelCall& kc) {
  const ops::ConvGeom g = ops::conv2d_geom(kc.ctx);
  Tensor& y = kc.outputs[0];
  LtMatmul m;
  m.dtype = y.dtype();
  m.rows = g.o, m.cols = pixels(g), m.inner = g.c;
  m.a = kc.inputs[1].raw_data(), m.trans_a = true;
  m.b = kc.inputs[0].raw_data();
  m.d = y.raw_data();
  lt_matmul(call_device(kc), m, kc.ctx.where().c_str());
}

// dx^T (C x M) = W (stored C x O) @ dy^T (O x M).
void backward_input(const KernelCall& kc) {
  const ops::ConvGeom g = ops::conv2d_backward_input_geom(kc.ctx);
  Tensor& dx = kc.outputs[0];
  LtMatmul m;
  m.dtype = dx.dtype();
  m.rows = g.c, m.cols = pixels(g), m.inner = g.o;
  m.a = kc.inputs[1].raw_data();
  m.b = kc.inputs[0].raw_data();
  m.d = dx.raw_data();
  lt_matmul(call_device(kc), m, kc.ctx.where().c_str());
}

// dW^T (C x O) = x^T (C x M) @ dy (stored O x M, transposed).
void backward_weight(const KernelCall& kc) {
  const ops::ConvGeom g = ops::conv2d_backward_weight_geom(kc.ctx);
  Tensor& dw = kc.outputs[0];
  LtMatmul m;
  m.dtype = dw.dtype();
  m.rows = g.c, m.cols = g.o, m.inner = pixels(g);
  m.a = kc.inputs[0].raw_data();
  m.b = kc.inputs[1].raw_data(), m.trans_b = true;
  m.d = dw.raw_data();
  lt_matmul(call_device(kc), m, kc.ctx.where().c_str());
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
