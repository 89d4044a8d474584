// fused_conv2d (float32) through one oneDNN convolution with post-ops: the
// residual as a sum post-op (the output buffer starts as the residual), then the
// activation as an eltwise post-op, applied by the convolution kernel to each
// output block it writes.
#include "backends/cpu/onednn/onednn_common.h"
#include "backends/cpu/onednn/onednn_conv_layout.h"
#include "backends/cpu/onednn/onednn_eltwise.h"
#include "ir/ops/conv_geometry.h"
#include "ir/ops/fused_epilogue.h"

namespace ds::cpu::onednn {

using dnnl::algorithm;
using ops::Act;

std::pair<algorithm, float> eltwise_of(Act a, float alpha) {
  switch (a) {
    case Act::Relu: return {algorithm::eltwise_relu, 0.0f};
    case Act::LeakyRelu: return {algorithm::eltwise_relu, alpha};
    case Act::Gelu: return {algorithm::eltwise_gelu_erf, 0.0f};
    case Act::GeluTanh: return {algorithm::eltwise_gelu_tanh, 0.0f};
    case Act::Silu: return {algorithm::eltwise_swish, 1.0f};
    case Act::Sigmoid: return {algorithm::eltwise_logistic, 0.0f};
    case Act::Tanh: return {algorithm::eltwise_tanh, 0.0f};
    case Act::None: break;
  }
  return {algorithm::undef, 0.0f};
}

dnnl::convolution_forward::primitive_desc fused_conv_pd(const ops::ConvGeom& g,
                                                        const dnnl::memory::desc& x,
                                                        const dnnl::memory::desc& w,
                                                        const dnnl::memory::desc& y, bool bias,
                                                        bool residual, Act act, float alpha) {
  const dnnl::memory::dims strides{g.stride.h, g.stride.w}, dil{g.dil.h - 1, g.dil.w - 1},
      pad{g.pad.h, g.pad.w};
  const auto kind = dnnl::prop_kind::forward_inference;
  const auto alg = algorithm::convolution_direct;
  auto desc = bias ? dnnl::convolution_forward::desc(kind, alg, x, w, plain_f32({g.o}), y, strides,
                                                     dil, pad, pad)
                   : dnnl::convolution_forward::desc(kind, alg, x, w, y, strides, dil, pad, pad);
  dnnl::post_ops ops;
  if (residual) ops.append_sum(1.0f);
  if (act != Act::None) {
    const auto [elt, a] = eltwise_of(act, alpha);
    ops.append_eltwise(1.0f, elt, a, 0.0f);
  }
  // A fresh attribute: copying user_scratchpad() would share (and change) its handle.
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_post_ops(ops);
  return dnnl::convolution_forward::primitive_desc(desc, attr, engine());
}

namespace {

using dnnl::memory;
using ops::ConvGeom;

struct FusedForward {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
};

std::shared_ptr<FusedForward> fused_forward(const ConvGeom& g, bool bias, bool residual, Act act,
                                            float alpha, int threads) {
  const std::string key = "fused_conv" +
                          dims_key({g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.groups, g.stride.h,
                                    g.stride.w, g.pad.h, g.pad.w, g.dil.h, g.dil.w}) +
                          (bias ? "b" : "") + (residual ? "r" : "") + "a" +
                          std::to_string(static_cast<int>(act)) + ":" + std::to_string(alpha) +
                          "t" + std::to_string(threads);
  return cached<FusedForward>(key, [&] {
    // The layout conv2d picks for this geometry (plain or oneDNN's blocked choice).
    const bool plain = plain_layout(g);
    auto layout = [plain](const memory::dims& d) {
      using tag = memory::format_tag;
      return memory::desc(d, memory::data_type::f32,
                          !plain ? tag::any : d.size() == 5 ? tag::abcde : tag::abcd);
    };
    auto of_shape = [&](const Shape& s) { return layout(dims_of(s)); };
    const memory::desc wd = layout(
        g.groups == 1 ? memory::dims{g.o, g.c, g.kh, g.kw}
                      : memory::dims{g.groups, g.o / g.groups, g.c / g.groups, g.kh, g.kw});
    const auto pd = fused_conv_pd(g, of_shape(g.x_shape()), wd, of_shape(g.y_shape()), bias,
                                  residual, act, alpha);
    return std::make_shared<FusedForward>(FusedForward{pd, dnnl::convolution_forward(pd)});
  });
}

void run_fused_conv(const KernelCall& k) {
  const OpContext& c = k.ctx;
  const ConvGeom g = ops::conv2d_geom(c);
  const bool bias = c.b("has_bias"), residual = c.b("has_residual");
  const int threads = use_ds_threads();
  auto p = fused_forward(g, bias, residual, ops::parse_activation(c.s("activation")),
                         static_cast<float>(c.f("alpha")), threads);
  Staged xs(p->pd.src_desc(), plain_f32(g.x_shape()), k.inputs[0]);
  Staged ws(p->pd.weights_desc(), weights_f32(g.w_shape(), g.groups), k.inputs[1]);
  Staged ys(p->pd.dst_desc(), plain_f32(g.y_shape()), k.outputs[0]);
  xs.reorder_in();
  ws.reorder_in();
  if (residual) {
    copy_into(k.inputs.back(), k.outputs[0]);
    ys.reorder_in();
  }
  const Scratchpad scratch(p->pd);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, xs.mem()},
                                       {DNNL_ARG_WEIGHTS, ws.mem()},
                                       {DNNL_ARG_DST, ys.mem()},
                                       {DNNL_ARG_SCRATCHPAD, scratch.mem()}};
  if (bias) args.emplace(DNNL_ARG_BIAS, wrap(plain_f32({g.o}), k.inputs[2]));
  p->prim.execute(stream(), args);
  ys.reorder_out();
  stream().wait();
}

const OpRegistrar reg([] {
  register_kernel("fused_conv2d", DeviceKind::CPU,
                  {run_fused_conv,
                   [](const OpContext& c) {
                     for (const auto& t : c.inputs)
                       if (t.dtype != DType::Float32) return false;
                     const ConvGeom g = ops::conv2d_geom(c);
                     return g.n > 0 && g.c > 0 && g.o > 0;
                   },
                   "onednn+post-ops", 20});
});

}  // namespace
}  // namespace ds::cpu::onednn
