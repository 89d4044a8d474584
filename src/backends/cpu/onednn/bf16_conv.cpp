// bfloat16 conv2d forward, backward-data and backward-weights through oneDNN
// convolution primitives on CPUs with avx512_bf16: bf16 in, float32 accumulation,
// bf16 out (what the emulated kernel computes, without widening every operand).
// The primitive picks its blocked layout; plain NCHW/OIHW tensors are reordered
// in and out, as the float32 kernels in onednn_conv.cpp do.
#include "backends/cpu/onednn/bf16_common.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cpu::onednn {
namespace {

using dnnl::memory;
using ops::ConvGeom;

memory::desc any_bf16(const memory::dims& d) {
  return memory::desc(d, memory::data_type::bf16, memory::format_tag::any);
}

// A [groups, o/groups, i, kh, kw] view of OIHW weights for grouped convolutions.
memory::desc user_weights(const ConvGeom& g) {
  if (g.groups == 1) return plain_bf16(g.w_shape());
  return memory::desc({g.groups, g.o / g.groups, g.c / g.groups, g.kh, g.kw}, memory::data_type::bf16,
                      memory::format_tag::goihw);
}

struct Dims {
  memory::dims x, w, y, strides, dilates, pad;
};

Dims dims(const ConvGeom& g) {
  memory::dims w = g.groups == 1 ? memory::dims{g.o, g.c, g.kh, g.kw}
                                 : memory::dims{g.groups, g.o / g.groups, g.c / g.groups, g.kh, g.kw};
  // oneDNN's dilation counts the gaps (d - 1); padding is symmetric.
  return {{g.n, g.c, g.h, g.w}, w, {g.n, g.o, g.oh, g.ow}, {g.stride.h, g.stride.w},
          {g.dil.h - 1, g.dil.w - 1}, {g.pad.h, g.pad.w}};
}

std::string key(const char* kind, const ConvGeom& g, bool bias, int threads) {
  return std::string(kind) + dims_key({g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.groups, g.stride.h,
                                       g.stride.w, g.pad.h, g.pad.w, g.dil.h, g.dil.w, bias, threads});
}

dnnl::convolution_forward::desc forward_desc(const ConvGeom& g, dnnl::prop_kind kind, bool bias) {
  const Dims d = dims(g);
  if (bias)
    return {kind, dnnl::algorithm::convolution_direct, any_bf16(d.x), any_bf16(d.w),
            plain_bf16({g.o}), any_bf16(d.y), d.strides, d.dilates, d.pad, d.pad};
  return {kind, dnnl::algorithm::convolution_direct, any_bf16(d.x), any_bf16(d.w), any_bf16(d.y),
          d.strides, d.dilates, d.pad, d.pad};
}

template <class Prim> struct Cached {
  typename Prim::primitive_desc pd;
  Prim prim;
};

using Forward = Cached<dnnl::convolution_forward>;
using BackwardData = Cached<dnnl::convolution_backward_data>;
using BackwardWeights = Cached<dnnl::convolution_backward_weights>;

std::shared_ptr<Forward> forward(const ConvGeom& g, bool bias, int threads) {
  return cached<Forward>(key("bf16_conv_fwd", g, bias, threads), [&] {
    dnnl::convolution_forward::primitive_desc pd(
        forward_desc(g, dnnl::prop_kind::forward_inference, bias), user_scratchpad(), engine());
    return std::make_shared<Forward>(Forward{pd, dnnl::convolution_forward(pd)});
  });
}

std::shared_ptr<BackwardData> backward_data(const ConvGeom& g, int threads) {
  return cached<BackwardData>(key("bf16_conv_bwd_data", g, false, threads), [&] {
    const Dims d = dims(g);
    dnnl::convolution_forward::primitive_desc hint(
        forward_desc(g, dnnl::prop_kind::forward_training, false), engine());
    dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, any_bf16(d.x),
                                               any_bf16(d.w), any_bf16(d.y), d.strides, d.dilates,
                                               d.pad, d.pad);
    dnnl::convolution_backward_data::primitive_desc pd(desc, user_scratchpad(), engine(), hint);
    return std::make_shared<BackwardData>(BackwardData{pd, dnnl::convolution_backward_data(pd)});
  });
}

std::shared_ptr<BackwardWeights> backward_weights(const ConvGeom& g, int threads) {
  return cached<BackwardWeights>(key("bf16_conv_bwd_weights", g, false, threads), [&] {
    const Dims d = dims(g);
    dnnl::convolution_forward::primitive_desc hint(
        forward_desc(g, dnnl::prop_kind::forward_training, false), engine());
    dnnl::convolution_backward_weights::desc desc(dnnl::algorithm::convolution_direct,
                                                  any_bf16(d.x), any_bf16(d.w), any_bf16(d.y),
                                                  d.strides, d.dilates, d.pad, d.pad);
    dnnl::convolution_backward_weights::primitive_desc pd(desc, user_scratchpad(), engine(), hint);
    return std::make_shared<BackwardWeights>(
        BackwardWeights{pd, dnnl::convolution_backward_weights(pd)});
  });
}

// Runs `p` with two reordered inputs and one output: (arg, want, user md, tensor) each.
struct Operand {
  int arg;
  memory::desc want, user;
  const Tensor* tensor;
};

template <class P> void execute(const P& p, const Operand& in0, const Operand& in1,
                                const Operand& out, const Tensor* bias = nullptr) {
  Staged a(in0.want, in0.user, *in0.tensor), b(in1.want, in1.user, *in1.tensor);
  Staged y(out.want, out.user, *out.tensor);
  a.reorder_in();
  b.reorder_in();
  const Scratchpad scratch(p.pd);
  std::unordered_map<int, memory> args{{in0.arg, a.mem()},
                                       {in1.arg, b.mem()},
                                       {out.arg, y.mem()},
                                       {DNNL_ARG_SCRATCHPAD, scratch.mem()}};
  if (bias) args.emplace(DNNL_ARG_BIAS, wrap(plain_bf16(bias->shape()), *bias));
  p.prim.execute(stream(), args);
  y.reorder_out();
  stream().wait();
}

void run_forward(const KernelCall& k) {
  const ConvGeom g = ops::conv2d_geom(k.ctx);
  const Tensor* bias = k.inputs.size() > 2 ? &k.inputs[2] : nullptr;
  auto p = forward(g, bias != nullptr, use_ds_threads());
  execute(*p, {DNNL_ARG_SRC, p->pd.src_desc(), plain_bf16(g.x_shape()), &k.inputs[0]},
          {DNNL_ARG_WEIGHTS, p->pd.weights_desc(), user_weights(g), &k.inputs[1]},
          {DNNL_ARG_DST, p->pd.dst_desc(), plain_bf16(g.y_shape()), &k.outputs[0]}, bias);
}

void run_backward_data(const KernelCall& k) {
  const ConvGeom g = ops::conv2d_backward_input_geom(k.ctx);
  auto p = backward_data(g, use_ds_threads());
  execute(*p, {DNNL_ARG_DIFF_DST, p->pd.diff_dst_desc(), plain_bf16(g.y_shape()), &k.inputs[0]},
          {DNNL_ARG_WEIGHTS, p->pd.weights_desc(), user_weights(g), &k.inputs[1]},
          {DNNL_ARG_DIFF_SRC, p->pd.diff_src_desc(), plain_bf16(g.x_shape()), &k.outputs[0]});
}

void run_backward_weights(const KernelCall& k) {
  const ConvGeom g = ops::conv2d_backward_weight_geom(k.ctx);
  auto p = backward_weights(g, use_ds_threads());
  execute(*p, {DNNL_ARG_SRC, p->pd.src_desc(), plain_bf16(g.x_shape()), &k.inputs[0]},
          {DNNL_ARG_DIFF_DST, p->pd.diff_dst_desc(), plain_bf16(g.y_shape()), &k.inputs[1]},
          {DNNL_ARG_DIFF_WEIGHTS, p->pd.diff_weights_desc(), user_weights(g), &k.outputs[0]});
}

// bf16 blocked layouts pad the input channels to 16: a first layer with a few
// (Fashion-MNIST's 1) runs 2-5x slower than the emulation, whose float32 kernels
// use the plain layout or a direct kernel for it (measured in bench/NOTES.md).
template <ConvGeom (*geom)(const OpContext&)> bool supports(const OpContext& c) {
  return bf16_call(c) && geom(c).c / geom(c).groups >= 8;
}

const OpRegistrar reg([] {
  register_kernel("conv2d", DeviceKind::CPU,
                  {run_forward, supports<ops::conv2d_geom>, "onednn-bf16", 30});
  register_kernel("conv2d_backward_input", DeviceKind::CPU,
                  {run_backward_data, supports<ops::conv2d_backward_input_geom>, "onednn-bf16", 30});
  register_kernel("conv2d_backward_weight", DeviceKind::CPU,
                  {run_backward_weights, supports<ops::conv2d_backward_weight_geom>, "onednn-bf16",
                   30});
});

}  // namespace
}  // namespace ds::cpu::onednn
