// blocked_conv2d, blocked_max_pool2d, to_blocked and from_blocked (float32) on oneDNN: the kernels
// behind the layout propagation pass. Activations arrive and leave in oneDNN's
// nChw8c / nChw16c / nhwc layout (ir/ops/blocked_layout.h), so a chain of convolutions
// reorders only at its edges; the weights of a graph constant are reordered to
// the primitive's layout once and kept.
#include <cstdint>

#include "backends/cpu/onednn/onednn_common.h"
#include "backends/cpu/onednn/onednn_eltwise.h"
#include "ir/ops/blocked_layout.h"
#include "ir/ops/conv_geometry.h"
#include "ir/ops/fused_epilogue.h"
#include "passes/layout_propagation.h"

namespace ds::cpu::onednn {
namespace {

using dnnl::memory;
using ops::Act;
using ops::ConvGeom;

bool supported_block(int64_t block, int64_t channels) {
  return block == 8 || block == 16 || block == channels;
}

// One block of all channels is nhwc (the same bytes as nChw8c for 8 channels).
memory::desc blocked_f32(const Shape& nchw, int64_t block) {
  using tag = memory::format_tag;
  return memory::desc(dims_of(nchw), memory::data_type::f32,
                      block == nchw[1] ? tag::nhwc : block == 16 ? tag::nChw16c : tag::nChw8c);
}

// The convolution's geometry, read as fused_conv2d on the plain shapes.
ConvGeom blocked_geom(const OpContext& c) {
  std::vector<TensorType> plain(c.inputs.begin(), c.inputs.begin() + 2);
  plain[0].shape = ops::plain_shape(c.inputs[0].shape, c.inputs[1].shape[1] * c.i("groups"));
  return ops::conv2d_geom(OpContext{c.op, c.attrs, plain, c.node});
}

struct BlockedForward {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
};

std::string blocked_key(const ConvGeom& g, int64_t x_block, int64_t y_block, bool bias, bool residual, Act act,
                        float alpha, int threads) {
  return "blocked_conv" +
         dims_key({g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.stride.h, g.stride.w, g.pad.h, g.pad.w,
                   g.dil.h, g.dil.w, x_block, y_block}) +
         (bias ? "b" : "") + (residual ? "r" : "") + "a" + std::to_string(static_cast<int>(act)) +
         ":" + std::to_string(alpha) + "t" + std::to_string(threads);
}

// A direct convolution on blocked x and y; the weights in the layout oneDNN picks.
std::shared_ptr<BlockedForward> blocked_forward(const std::string& key, const ConvGeom& g,
                                                int64_t x_block, int64_t y_block, bool bias,
                                                bool residual, Act act, float alpha) {
  return cached<BlockedForward>(key, [&] {
    const memory::desc w({g.o, g.c, g.kh, g.kw}, memory::data_type::f32, memory::format_tag::any);
    const auto pd = fused_conv_pd(g, blocked_f32(g.x_shape(), x_block), w,
                                  blocked_f32(g.y_shape(), y_block), bias, residual, act, alpha);
    return std::make_shared<BlockedForward>(BlockedForward{pd, dnnl::convolution_forward(pd)});
  });
}

// Weights reordered to a primitive's layout. A constant's entry holds the source
// tensor, so its address (part of the key) cannot be reused by other weights.
struct ReorderedWeights {
  Tensor source, reordered;
  memory mem;
};

std::shared_ptr<ReorderedWeights> reorder_weights(const memory::desc& want, const ConvGeom& g,
                                                  const Tensor& w) {
  auto r = std::make_shared<ReorderedWeights>();
  r->source = w;
  memory user = wrap(plain_f32(g.w_shape()), w);
  if (want == plain_f32(g.w_shape())) {
    r->mem = user;
    return r;
  }
  r->reordered = Tensor::empty({static_cast<int64_t>(want.get_size())}, DType::UInt8);
  r->mem = memory(want, engine(), r->reordered.raw_data());
  dnnl::reorder(user, r->mem).execute(stream(), user, r->mem);
  stream().wait();
  return r;
}

void run_blocked_conv(const KernelCall& k) {
  const OpContext& c = k.ctx;
  const ConvGeom g = blocked_geom(c);
  const int64_t x_block = k.inputs[0].dim(4), y_block = c.i("block");
  const bool bias = c.b("has_bias"), residual = c.b("has_residual");
  const Act act = ops::parse_activation(c.s("activation"));
  const float alpha = static_cast<float>(c.f("alpha"));
  const int threads = use_ds_threads();
  const std::string key = blocked_key(g, x_block, y_block, bias, residual, act, alpha, threads);
  auto p = blocked_forward(key, g, x_block, y_block, bias, residual, act, alpha);
  const Tensor& w = k.inputs[1];
  auto weights =
      c.b("weights_constant")
          ? cached<ReorderedWeights>(key + "@" + std::to_string(reinterpret_cast<uintptr_t>(w.raw_data())),
                                     [&] { return reorder_weights(p->pd.weights_desc(), g, w); })
          : reorder_weights(p->pd.weights_desc(), g, w);
  // The sum post-op adds the residual already in the output buffer.
  if (residual) copy_into(k.inputs.back(), k.outputs[0]);
  const Scratchpad scratch(p->pd);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, wrap(p->pd.src_desc(), k.inputs[0])},
                                       {DNNL_ARG_WEIGHTS, weights->mem},
                                       {DNNL_ARG_DST, wrap(p->pd.dst_desc(), k.outputs[0])},
                                       {DNNL_ARG_SCRATCHPAD, scratch.mem()}};
  if (bias) args.emplace(DNNL_ARG_BIAS, wrap(plain_f32({g.o}), k.inputs[2]));
  p->prim.execute(stream(), args);
  stream().wait();
}

struct BlockedPool {
  dnnl::pooling_v2_forward::primitive_desc pd;
  dnnl::pooling_v2_forward prim;
};

// max_pool2d on blocked x and y (floor mode: oneDNN's output size formula is
// PyTorch's then; ceil_mode falls back to the reference kernel).
void run_blocked_max_pool(const KernelCall& k) {
  const int64_t channels = k.ctx.i("channels"), block = k.inputs[0].dim(4);
  const ops::PoolGeom g = ops::pool_geom(k.ctx, ops::plain_shape(k.inputs[0].shape(), channels));
  const Shape x_shape{g.n, g.c, g.h, g.w};
  const int threads = use_ds_threads();
  const std::string key = "blocked_max_pool" +
                          dims_key({g.n, g.c, g.h, g.w, g.kh, g.kw, g.stride.h, g.stride.w, g.pad.h,
                                    g.pad.w, g.dil.h, g.dil.w, block}) +
                          "t" + std::to_string(threads);
  auto p = cached<BlockedPool>(key, [&] {
    const memory::dims pad{g.pad.h, g.pad.w};
    const dnnl::pooling_v2_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::pooling_max,
        blocked_f32(x_shape, block), blocked_f32(g.y_shape(), block), {g.stride.h, g.stride.w},
        {g.kh, g.kw}, {g.dil.h - 1, g.dil.w - 1}, pad, pad);
    dnnl::pooling_v2_forward::primitive_desc pd(desc, user_scratchpad(), engine());
    return std::make_shared<BlockedPool>(BlockedPool{pd, dnnl::pooling_v2_forward(pd)});
  });
  const Scratchpad scratch(p->pd);
  p->prim.execute(stream(), {{DNNL_ARG_SRC, wrap(p->pd.src_desc(), k.inputs[0])},
                             {DNNL_ARG_DST, wrap(p->pd.dst_desc(), k.outputs[0])},
                             {DNNL_ARG_SCRATCHPAD, scratch.mem()}});
  stream().wait();
}

// to_blocked / from_blocked: one cached reorder primitive per shape and direction.
void run_reorder(const Tensor& src, const memory::desc& src_md, Tensor& dst,
                 const memory::desc& dst_md, const std::string& key) {
  use_ds_threads();
  auto prim = cached<dnnl::reorder>(key, [&] {
    return std::make_shared<dnnl::reorder>(dnnl::reorder::primitive_desc(engine(), src_md, engine(), dst_md));
  });
  memory from = wrap(src_md, src), to = wrap(dst_md, dst);
  prim->execute(stream(), from, to);
  stream().wait();
}

// The layout oneDNN picks for a typical chain convolution (64 -> 64 channels,
// 3x3 on 28x28) when it is left to it: 16, 8, kChannelsLast (oneDNN 2.6's
// AVX-512 brgemm kernels), or 0 for plain NCHW.
int64_t picked_block() {
  use_ds_threads();
  const memory::desc any_x({1, 64, 28, 28}, memory::data_type::f32, memory::format_tag::any);
  const memory::desc any_w({64, 64, 3, 3}, memory::data_type::f32, memory::format_tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, any_x, any_w, any_x,
      {1, 1}, {0, 0}, {1, 1}, {1, 1});
  const dnnl::convolution_forward::primitive_desc pd(desc, engine());
  for (int64_t block : {16, 8})
    if (pd.src_desc() == blocked_f32({1, 64, 28, 28}, block)) return block;
  if (pd.src_desc() == blocked_f32({1, 64, 28, 28}, 64)) return ops::kChannelsLast;
  return 0;
}

bool float32_inputs(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != DType::Float32) return false;
  return true;
}

bool nonempty(const Shape& s) {
  for (int64_t d : s)
    if (d <= 0) return false;
  return true;
}

const OpRegistrar reg([] {
  passes::set_conv_channel_block_provider(picked_block);
  register_kernel("blocked_conv2d", DeviceKind::CPU,
                  {run_blocked_conv,
                   [](const OpContext& c) {
                     const Shape& w = c.inputs[1].shape;
                     return float32_inputs(c) && c.i("groups") == 1 && nonempty(c.inputs[0].shape) &&
                            supported_block(c.inputs[0].shape[4], w[1]) &&
                            supported_block(c.i("block"), w[0]);
                   },
                   "onednn-blocked", 20});
  register_kernel("blocked_max_pool2d", DeviceKind::CPU,
                  {run_blocked_max_pool,
                   [](const OpContext& c) {
                     return float32_inputs(c) && !c.b("ceil_mode") && nonempty(c.inputs[0].shape) &&
                            supported_block(c.inputs[0].shape[4], c.i("channels"));
                   },
                   "onednn-blocked", 20});
  register_kernel("to_blocked", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     const int64_t block = k.ctx.i("block");
                     const Shape& s = k.inputs[0].shape();
                     run_reorder(k.inputs[0], plain_f32(s), k.outputs[0], blocked_f32(s, block),
                                 "to_blocked" + dims_key(s) + "/" + std::to_string(block));
                   },
                   [](const OpContext& c) {
                     return float32_inputs(c) && supported_block(c.i("block"), c.inputs[0].shape[1]) &&
                            nonempty(c.inputs[0].shape);
                   },
                   "onednn-reorder", 20});
  register_kernel("from_blocked", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     const int64_t block = k.inputs[0].dim(4);
                     const Shape& s = k.outputs[0].shape();
                     run_reorder(k.inputs[0], blocked_f32(s, block), k.outputs[0], plain_f32(s),
                                 "from_blocked" + dims_key(s) + "/" + std::to_string(block));
                   },
                   [](const OpContext& c) {
                     return float32_inputs(c) &&
                            supported_block(c.inputs[0].shape[4], c.i("channels")) &&
                            nonempty(c.inputs[0].shape);
                   },
                   "onednn-reorder", 20});
});

}  // namespace
}  // namespace ds::cpu::onednn
