// Pooling (float32, NCHW) through oneDNN pooling_v2 primitives: max and average
// forward and backward, plus global and evenly dividing adaptive average pooling
// (both are plain average pooling with a computed window).
#include "backends/cpu/onednn/onednn_common.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cpu::onednn {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using ops::PoolGeom;

struct PoolDims {
  memory::dims strides, kernel, dilation, pad_l, pad_r;
};

PoolDims pool_dims(const PoolGeom& g) {
  // The right/bottom padding reaches as far as ceil_mode's last window does.
  return {{g.stride.h, g.stride.w},
          {g.kh, g.kw},
          {g.dil.h - 1, g.dil.w - 1},
          {g.pad.h, g.pad.w},
          {std::max(g.pad.h, g.pad_bottom()), std::max(g.pad.w, g.pad_right())}};
}

std::string pool_key(const char* kind, const PoolGeom& g, algorithm alg, int threads) {
  return std::string(kind) + dims_key({g.n, g.c, g.h, g.w, g.kh, g.kw, g.oh, g.ow, g.stride.h,
                                       g.stride.w, g.pad.h, g.pad.w, g.dil.h, g.dil.w}) +
         std::to_string(static_cast<int>(alg)) + "t" + std::to_string(threads);
}

struct Forward {
  dnnl::pooling_v2_forward::primitive_desc pd;
  dnnl::pooling_v2_forward prim;
};

struct Backward {
  Forward fwd;  // a training forward: max pooling's backward needs its workspace
  dnnl::pooling_v2_backward::primitive_desc pd;
  dnnl::pooling_v2_backward prim;
};

Forward make_forward(const PoolGeom& g, algorithm alg, dnnl::prop_kind kind) {
  const PoolDims d = pool_dims(g);
  dnnl::pooling_v2_forward::desc desc(kind, alg, plain_f32(g.x_shape()), plain_f32(g.y_shape()),
                                      d.strides, d.kernel, d.dilation, d.pad_l, d.pad_r);
  dnnl::pooling_v2_forward::primitive_desc pd(desc, user_scratchpad(), engine());
  return {pd, dnnl::pooling_v2_forward(pd)};
}

std::shared_ptr<Forward> forward(const PoolGeom& g, algorithm alg, int threads) {
  return cached<Forward>(pool_key("pool_fwd", g, alg, threads), [&] {
    return std::make_shared<Forward>(make_forward(g, alg, dnnl::prop_kind::forward_inference));
  });
}

std::shared_ptr<Backward> backward(const PoolGeom& g, algorithm alg, int threads) {
  return cached<Backward>(pool_key("pool_bwd", g, alg, threads), [&] {
    Forward fwd = make_forward(g, alg, dnnl::prop_kind::forward_training);
    const PoolDims d = pool_dims(g);
    dnnl::pooling_v2_backward::desc desc(alg, plain_f32(g.x_shape()), plain_f32(g.y_shape()),
                                         d.strides, d.kernel, d.dilation, d.pad_l, d.pad_r);
    dnnl::pooling_v2_backward::primitive_desc pd(desc, user_scratchpad(), engine(), fwd.pd);
    return std::make_shared<Backward>(Backward{fwd, pd, dnnl::pooling_v2_backward(pd)});
  });
}

void run_forward(const PoolGeom& g, algorithm alg, const Tensor& x, Tensor& y) {
  auto p = forward(g, alg, use_ds_threads());
  const Scratchpad scratch(p->pd);
  p->prim.execute(stream(), {{DNNL_ARG_SRC, wrap(plain_f32(g.x_shape()), x)},
                             {DNNL_ARG_DST, wrap(plain_f32(g.y_shape()), y)},
                             {DNNL_ARG_SCRATCHPAD, scratch.mem()}});
  stream().wait();
}

// Max pooling's backward recomputes the forward to get the argmax workspace.
void run_max_backward(const PoolGeom& g, const Tensor& x, const Tensor& gy, Tensor& gx) {
  auto p = backward(g, algorithm::pooling_max, use_ds_threads());
  Tensor y = Tensor::empty(g.y_shape(), DType::Float32);
  Tensor ws_storage =
      Tensor::empty({static_cast<int64_t>(p->fwd.pd.workspace_desc().get_size())}, DType::UInt8);
  memory ws(p->fwd.pd.workspace_desc(), engine(), ws_storage.raw_data());
  const Scratchpad fwd_scratch(p->fwd.pd), scratch(p->pd);
  p->fwd.prim.execute(stream(), {{DNNL_ARG_SRC, wrap(plain_f32(g.x_shape()), x)},
                                 {DNNL_ARG_DST, wrap(plain_f32(g.y_shape()), y)},
                                 {DNNL_ARG_WORKSPACE, ws},
                                 {DNNL_ARG_SCRATCHPAD, fwd_scratch.mem()}});
  p->prim.execute(stream(), {{DNNL_ARG_DIFF_DST, wrap(plain_f32(g.y_shape()), gy)},
                             {DNNL_ARG_DIFF_SRC, wrap(plain_f32(g.x_shape()), gx)},
                             {DNNL_ARG_WORKSPACE, ws},
                             {DNNL_ARG_SCRATCHPAD, scratch.mem()}});
  stream().wait();
}

void run_avg_backward(const PoolGeom& g, algorithm alg, const Tensor& gy, Tensor& gx) {
  auto p = backward(g, alg, use_ds_threads());
  const Scratchpad scratch(p->pd);
  p->prim.execute(stream(), {{DNNL_ARG_DIFF_DST, wrap(plain_f32(g.y_shape()), gy)},
                             {DNNL_ARG_DIFF_SRC, wrap(plain_f32(g.x_shape()), gx)},
                             {DNNL_ARG_SCRATCHPAD, scratch.mem()}});
  stream().wait();
}

algorithm avg_algorithm(const OpContext& c) {
  return c.b("count_include_pad") ? algorithm::pooling_avg_include_padding
                                   : algorithm::pooling_avg_exclude_padding;
}

// oneDNN counts all padding of a window, including the extra right padding of a
// ceil_mode window, while PyTorch counts only up to `padding`: decline those.
bool avg_matches(const OpContext& c, const PoolGeom& g) {
  return !c.b("count_include_pad") || (g.pad_bottom() <= g.pad.h && g.pad_right() <= g.pad.w);
}

bool f32_nonempty(const OpContext& c, const Shape& x) {
  return c.inputs[0].dtype == DType::Float32 && numel(x) > 0;
}

// Average pooling with window = the whole plane (global) or an even split (adaptive).
PoolGeom plain_windows(const Shape& x, int64_t oh, int64_t ow) {
  PoolGeom g{};
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  g.oh = oh, g.ow = ow;
  g.kh = g.h / oh, g.kw = g.w / ow;
  g.stride = {g.kh, g.kw};
  g.dil = {1, 1};
  return g;
}

bool adaptive_even(const Shape& x, const Shape& y) {
  return y[2] > 0 && y[3] > 0 && x[2] % y[2] == 0 && x[3] % y[3] == 0;
}

void reg(const char* op, KernelFn fn, std::function<bool(const OpContext&)> supports) {
  register_kernel(op, DeviceKind::CPU, {std::move(fn), std::move(supports), "onednn", 20});
}

const OpRegistrar registrar([] {
  reg(
      "max_pool2d",
      [](const KernelCall& k) {
        run_forward(ops::pool_geom(k.ctx, k.inputs[0].shape()), algorithm::pooling_max,
                    k.inputs[0], k.outputs[0]);
      },
      [](const OpContext& c) { return f32_nonempty(c, c.inputs[0].shape); });
  reg(
      "max_pool2d_backward",
      [](const KernelCall& k) {
        run_max_backward(ops::pool_geom(k.ctx, k.inputs[0].shape()), k.inputs[0], k.inputs[1],
                         k.outputs[0]);
      },
      [](const OpContext& c) {
        return f32_nonempty(c, c.inputs[0].shape) && c.inputs[1].dtype == DType::Float32;
      });
  reg(
      "avg_pool2d",
      [](const KernelCall& k) {
        run_forward(ops::pool_geom(k.ctx, k.inputs[0].shape()), avg_algorithm(k.ctx),
                    k.inputs[0], k.outputs[0]);
      },
      [](const OpContext& c) {
        return f32_nonempty(c, c.inputs[0].shape) &&
               avg_matches(c, ops::pool_geom(c, c.inputs[0].shape));
      });
  reg(
      "avg_pool2d_backward",
      [](const KernelCall& k) {
        run_avg_backward(ops::pool_geom(k.ctx, k.outputs[0].shape()), avg_algorithm(k.ctx),
                         k.inputs[0], k.outputs[0]);
      },
      [](const OpContext& c) {
        const Shape& gy = c.inputs[0].shape;
        const auto& in = c.ints("input_size");
        const Shape x{gy[0], gy[1], in[0], in.size() > 1 ? in[1] : in[0]};
        return f32_nonempty(c, gy) && numel(x) > 0 && avg_matches(c, ops::pool_geom(c, x));
      });
  reg(
      "adaptive_avg_pool2d",
      [](const KernelCall& k) {
        const Shape &x = k.inputs[0].shape(), &y = k.outputs[0].shape();
        run_forward(plain_windows(x, y[2], y[3]), algorithm::pooling_avg_exclude_padding,
                    k.inputs[0], k.outputs[0]);
      },
      [](const OpContext& c) {
        const Shape& x = c.inputs[0].shape;
        const auto& o = c.ints("output_size");
        const Shape y{x[0], x[1], o[0], o.size() > 1 ? o[1] : o[0]};
        return f32_nonempty(c, x) && adaptive_even(x, y);
      });
  reg(
      "adaptive_avg_pool2d_backward",
      [](const KernelCall& k) {
        const Shape &y = k.inputs[0].shape(), &x = k.outputs[0].shape();
        run_avg_backward(plain_windows(x, y[2], y[3]), algorithm::pooling_avg_exclude_padding,
                         k.inputs[0], k.outputs[0]);
      },
      [](const OpContext& c) {
        const Shape& y = c.inputs[0].shape;
        const auto& in = c.ints("input_size");
        const Shape x{y[0], y[1], in[0], in.size() > 1 ? in[1] : in[0]};
        return f32_nonempty(c, y) && numel(x) > 0 && adaptive_even(x, y);
      });
  reg(
      "global_avg_pool2d",
      [](const KernelCall& k) {
        run_forward(plain_windows(k.inputs[0].shape(), 1, 1),
                    algorithm::pooling_avg_exclude_padding, k.inputs[0], k.outputs[0]);
      },
      [](const OpContext& c) { return f32_nonempty(c, c.inputs[0].shape); });
});

}  // namespace
}  // namespace ds::cpu::onednn
