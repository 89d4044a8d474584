// conv2d forward, backward-data, backward-weights and conv_transpose2d through
// oneDNN convolution primitives (float32). Tensors stay plain NCHW/OIHW at the op
// boundary. Inside, either the primitive picks its (blocked) layout and we reorder
// in and out, or it runs on the plain layout directly: see layout_for.
#include <algorithm>

#include "backends/cpu/onednn/onednn_common.h"
#include "backends/cpu/onednn/onednn_conv_layout.h"
#include "core/thread_pool.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cpu::onednn {

// Measured per pass on 2 threads (bench/NOTES.md): blocked layouts win for 3x3
// layers with many channels (and oneDNN's depthwise kernels want them); the plain
// layout (a GEMM over NCHW, no reorders) wins for 1x1 convolutions (1.3-1.5x) and
// for a first layer with few input channels (2-5x in the backward passes), where
// blocking pads the channels up to the block of 8.
bool plain_layout(const ops::ConvGeom& g) {
  const bool pointwise = g.kh == 1 && g.kw == 1 && g.stride.h == 1 && g.stride.w == 1 &&
                         g.pad.h == 0 && g.pad.w == 0 && g.groups == 1;
  const bool few_channels = g.groups == 1 && g.c < 8;
  return pointwise || few_channels;
}

namespace {

using dnnl::memory;
using ops::ConvGeom;

// The descriptor of a data or weights tensor the primitive works on.
memory::desc layout_f32(const memory::dims& d, bool plain) {
  if (!plain) return memory::desc(d, memory::data_type::f32, memory::format_tag::any);
  return memory::desc(d, memory::data_type::f32,
                      d.size() == 5 ? memory::format_tag::abcde : memory::format_tag::abcd);
}

// The problem in oneDNN's terms (its dilation counts the gaps: d - 1).
struct ConvDims {
  memory::dims x, w, y, strides, dilates, pad_l, pad_r;
};

ConvDims conv_dims(const ConvGeom& g) {
  memory::dims w = g.groups == 1 ? memory::dims{g.o, g.c, g.kh, g.kw}
                                 : memory::dims{g.groups, g.o / g.groups, g.c / g.groups, g.kh, g.kw};
  // Symmetric padding: PyTorch's floor division then holds on both sides.
  return {{g.n, g.c, g.h, g.w}, w, {g.n, g.o, g.oh, g.ow}, {g.stride.h, g.stride.w},
          {g.dil.h - 1, g.dil.w - 1}, {g.pad.h, g.pad.w}, {g.pad.h, g.pad.w}};
}

std::string conv_key(const char* kind, const ConvGeom& g, bool bias, int threads) {
  return std::string(kind) + dims_key({g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.groups, g.stride.h,
                                       g.stride.w, g.pad.h, g.pad.w, g.dil.h, g.dil.w}) +
         (bias ? "b" : "") + "t" + std::to_string(threads);
}

// Winograd F(4x4, 3x3) (oneDNN's AVX-512 kernels) does 2.25x fewer multiplies
// than the direct convolution, which already runs near the FMA peak. Measured per
// pass, CPU time on 2 threads (Zen 5; bench/NOTES.md training section): 0.52-0.91x
// of direct for 32-128 channels at 14x14-56x56 with a batch, but 1.2-2.2x for a
// batch of one, 16 channels or 7x7 planes; results within 3e-6 of direct.
bool winograd_wins(const ConvGeom& g) {
  return g.groups == 1 && g.kh == 3 && g.kw == 3 && g.stride.h == 1 && g.stride.w == 1 &&
         g.dil.h == 1 && g.dil.w == 1 && g.c % 16 == 0 && g.o % 16 == 0 && g.c >= 32 &&
         g.o >= 32 && g.oh >= 14 && g.ow >= 14 && g.n * g.oh * g.ow >= 16 * 14 * 14;
}

dnnl::convolution_forward::desc forward_desc(const ConvGeom& g, dnnl::prop_kind kind, bool bias,
                                             bool plain, dnnl::algorithm alg) {
  const ConvDims d = conv_dims(g);
  const memory::desc x = layout_f32(d.x, plain), w = layout_f32(d.w, plain), y = layout_f32(d.y, plain);
  if (bias)
    return {kind, alg, x, w, plain_f32({g.o}), y, d.strides, d.dilates, d.pad_l, d.pad_r};
  return {kind, alg, x, w, y, d.strides, d.dilates, d.pad_l, d.pad_r};
}

// Builds a primitive with Winograd where it wins and the CPU has the kernels
// (oneDNN has them for AVX-512 only: creation throws elsewhere), else direct.
template <class Make> auto with_best_algorithm(const ConvGeom& g, Make make) {
  if (winograd_wins(g)) {
    try {
      return make(dnnl::algorithm::convolution_winograd);
    } catch (const dnnl::error&) {
    }
  }
  return make(dnnl::algorithm::convolution_direct);
}

struct Forward {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
};

struct BackwardData {
  dnnl::convolution_backward_data::primitive_desc pd;
  dnnl::convolution_backward_data prim;
};

struct BackwardWeights {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights prim;
};

std::shared_ptr<Forward> forward(const ConvGeom& g, bool bias, int threads) {
  return cached<Forward>(conv_key("conv_fwd", g, bias, threads), [&] {
    return with_best_algorithm(g, [&](dnnl::algorithm alg) {
      // Winograd for inference wants its weights pre-transformed (oneDNN's
      // wino_reorder: 0.54 ms per call for 64x32x3x3, as long as a fifth of the
      // convolution); the training variant transforms them inside the primitive.
      const auto kind = alg == dnnl::algorithm::convolution_winograd
                            ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference;
      dnnl::convolution_forward::primitive_desc pd(
          forward_desc(g, kind, bias, plain_layout(g), alg), user_scratchpad(), engine());
      return std::make_shared<Forward>(Forward{pd, dnnl::convolution_forward(pd)});
    });
  });
}

std::shared_ptr<BackwardData> backward_data(const ConvGeom& g, int threads) {
  return cached<BackwardData>(conv_key("conv_bwd_data", g, false, threads), [&] {
    return with_best_algorithm(g, [&](dnnl::algorithm alg) {
      const ConvDims d = conv_dims(g);
      const bool plain = plain_layout(g);
      dnnl::convolution_forward::primitive_desc hint(
          forward_desc(g, dnnl::prop_kind::forward_training, false, plain, alg), engine());
      dnnl::convolution_backward_data::desc desc(alg, layout_f32(d.x, plain), layout_f32(d.w, plain),
                                                 layout_f32(d.y, plain), d.strides, d.dilates,
                                                 d.pad_l, d.pad_r);
      dnnl::convolution_backward_data::primitive_desc pd(desc, user_scratchpad(), engine(), hint);
      return std::make_shared<BackwardData>(BackwardData{pd, dnnl::convolution_backward_data(pd)});
    });
  });
}

std::shared_ptr<BackwardWeights> backward_weights(const ConvGeom& g, int threads) {
  return cached<BackwardWeights>(conv_key("conv_bwd_weights", g, false, threads), [&] {
    return with_best_algorithm(g, [&](dnnl::algorithm alg) {
      const ConvDims d = conv_dims(g);
      const bool plain = plain_layout(g);
      dnnl::convolution_forward::primitive_desc hint(
          forward_desc(g, dnnl::prop_kind::forward_training, false, plain, alg), engine());
      dnnl::convolution_backward_weights::desc desc(alg, layout_f32(d.x, plain),
                                                    layout_f32(d.w, plain), layout_f32(d.y, plain),
                                                    d.strides, d.dilates, d.pad_l, d.pad_r);
      dnnl::convolution_backward_weights::primitive_desc pd(desc, user_scratchpad(), engine(),
                                                            hint);
      return std::make_shared<BackwardWeights>(
          BackwardWeights{pd, dnnl::convolution_backward_weights(pd)});
    });
  });
}

void run_forward(const ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const int threads = use_ds_threads();
  auto p = forward(g, bias != nullptr, threads);
  Staged xs(p->pd.src_desc(), plain_f32(g.x_shape()), x);
  Staged ws(p->pd.weights_desc(), weights_f32(g.w_shape(), g.groups), w);
  Staged ys(p->pd.dst_desc(), plain_f32(g.y_shape()), y);
  xs.reorder_in();
  ws.reorder_in();
  const Scratchpad scratch(p->pd);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, xs.mem()},
                                       {DNNL_ARG_WEIGHTS, ws.mem()},
                                       {DNNL_ARG_DST, ys.mem()},
                                       {DNNL_ARG_SCRATCHPAD, scratch.mem()}};
  if (bias) args.emplace(DNNL_ARG_BIAS, wrap(plain_f32({g.o}), *bias));
  p->prim.execute(stream(), args);
  ys.reorder_out();
  stream().wait();
}

void run_backward_data(const ConvGeom& g, const Tensor& gy, const Tensor& w, Tensor& gx) {
  const int threads = use_ds_threads();
  auto p = backward_data(g, threads);
  Staged gys(p->pd.diff_dst_desc(), plain_f32(g.y_shape()), gy);
  Staged ws(p->pd.weights_desc(), weights_f32(g.w_shape(), g.groups), w);
  Staged gxs(p->pd.diff_src_desc(), plain_f32(g.x_shape()), gx);
  gys.reorder_in();
  ws.reorder_in();
  const Scratchpad scratch(p->pd);
  p->prim.execute(stream(), {{DNNL_ARG_DIFF_DST, gys.mem()},
                             {DNNL_ARG_WEIGHTS, ws.mem()},
                             {DNNL_ARG_DIFF_SRC, gxs.mem()},
                             {DNNL_ARG_SCRATCHPAD, scratch.mem()}});
  gxs.reorder_out();
  stream().wait();
}

void run_backward_weights(const ConvGeom& g, const Tensor& x, const Tensor& gy, Tensor& gw) {
  const int threads = use_ds_threads();
  auto p = backward_weights(g, threads);
  Staged xs(p->pd.src_desc(), plain_f32(g.x_shape()), x);
  Staged gys(p->pd.diff_dst_desc(), plain_f32(g.y_shape()), gy);
  Staged gws(p->pd.diff_weights_desc(), weights_f32(g.w_shape(), g.groups), gw);
  xs.reorder_in();
  gys.reorder_in();
  const Scratchpad scratch(p->pd);
  p->prim.execute(stream(), {{DNNL_ARG_SRC, xs.mem()},
                             {DNNL_ARG_DIFF_DST, gys.mem()},
                             {DNNL_ARG_DIFF_WEIGHTS, gws.mem()},
                             {DNNL_ARG_SCRATCHPAD, scratch.mem()}});
  gws.reorder_out();
  stream().wait();
}

// y[n, c, :, :] += bias[c] for conv_transpose2d (computed as a backward-data convolution).
void add_channel_bias(Tensor& y, const Tensor& bias) {
  const int64_t channels = y.dim(1), plane = y.dim(2) * y.dim(3);
  float* py = y.data<float>();
  const float* pb = bias.data<float>();
  parallel_for(y.dim(0) * channels, std::max<int64_t>(1, 16384 / std::max<int64_t>(plane, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t i = b; i < e; ++i) {
                   const float v = pb[i % channels];
                   float* row = py + i * plane;
                   for (int64_t j = 0; j < plane; ++j) row[j] += v;
                 }
               });
}

bool float32_nonempty(const OpContext& c, const ConvGeom& g) {
  for (const auto& t : c.inputs)
    if (t.dtype != DType::Float32) return false;
  return g.n > 0 && g.c > 0 && g.o > 0;
}

const OpRegistrar reg([] {
  register_kernel("conv2d", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     const ConvGeom g = ops::conv2d_geom(k.ctx);
                     run_forward(g, k.inputs[0], k.inputs[1],
                                 k.inputs.size() > 2 ? &k.inputs[2] : nullptr, k.outputs[0]);
                   },
                   [](const OpContext& c) { return float32_nonempty(c, ops::conv2d_geom(c)); },
                   "onednn", 20});
  register_kernel("conv2d_backward_input", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     run_backward_data(ops::conv2d_backward_input_geom(k.ctx), k.inputs[0],
                                       k.inputs[1], k.outputs[0]);
                   },
                   [](const OpContext& c) {
                     return float32_nonempty(c, ops::conv2d_backward_input_geom(c));
                   },
                   "onednn", 20});
  register_kernel("conv2d_backward_weight", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     run_backward_weights(ops::conv2d_backward_weight_geom(k.ctx), k.inputs[0],
                                          k.inputs[1], k.outputs[0]);
                   },
                   [](const OpContext& c) {
                     return float32_nonempty(c, ops::conv2d_backward_weight_geom(c));
                   },
                   "onednn", 20});
  register_kernel("conv_transpose2d", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     run_backward_data(ops::conv_transpose2d_geom(k.ctx), k.inputs[0], k.inputs[1],
                                       k.outputs[0]);
                     if (k.inputs.size() > 2) add_channel_bias(k.outputs[0], k.inputs[2]);
                   },
                   [](const OpContext& c) {
                     return float32_nonempty(c, ops::conv_transpose2d_geom(c));
                   },
                   "onednn", 20});
});

}  // namespace
}  // namespace ds::cpu::onednn
