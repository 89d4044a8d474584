// 2-D pooling (NCHW): max_pool2d, avg_pool2d, adaptive_avg_pool2d,
// global_avg_pool2d, and explicit backward ops for the first three (so that they
// get library kernels). max_pool2d and its backward take `channels_last` (x
// [N, H, W, C]). Reference kernels compute in float64, channels-last ones on
// values permuted to NCHW and back.
#include <cmath>

#include "ds/channels_last.h"
#include "ir/ops/conv_geometry.h"
#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {

PoolGeom pool_geom(const OpContext& c, const Shape& x) {
  const bool last = is_channels_last(c);
  DS_CHECK(x.size() == 4, ShapeError, c.where(), "x must be 4-D ",
           last ? "[N, H, W, C] (channels_last)" : "[N, C, H, W]", ", got ", shape_str(x));
  PoolGeom g{};
  g.channels_last = last;
  if (last)
    g.n = x[0], g.h = x[1], g.w = x[2], g.c = x[3];
  else
    g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  DS_CHECK(g.h != dyn && g.w != dyn, ShapeError, c.where(), "spatial dims of x ", shape_str(x),
           " must be static");
  const Pair2 k = pair_attr(c, "kernel_size", 1);
  g.kh = k.h, g.kw = k.w;
  g.stride = c.ints("stride").empty() ? k : pair_attr(c, "stride", 1);
  g.pad = pair_attr(c, "padding", 0);
  g.dil = c.has("dilation") ? pair_attr(c, "dilation", 1) : Pair2{1, 1};
  DS_CHECK(2 * g.pad.h <= g.kh && 2 * g.pad.w <= g.kw, ValueError, c.where(), "padding [",
           g.pad.h, ", ", g.pad.w, "] must be at most half the kernel [", g.kh, ", ", g.kw, "]");
  const bool ceil_mode = c.b("ceil_mode");
  auto out = [&](int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
    const int64_t span = in + 2 * p - d * (k - 1) - 1;
    DS_CHECK(span >= 0, ShapeError, c.where(), "kernel ", k, " (dilation ", d,
             ") is larger than the padded input ", in + 2 * p, " along ", axis, " (x ",
             shape_str(x), ")");
    int64_t o = (span + (ceil_mode ? s - 1 : 0)) / s + 1;
    // The last window must start inside the input or its left padding.
    if (ceil_mode && (o - 1) * s >= in + p) --o;
    return o;
  };
  g.oh = out(g.h, g.kh, g.stride.h, g.pad.h, g.dil.h, "H");
  g.ow = out(g.w, g.kw, g.stride.w, g.pad.w, g.dil.w, "W");
  return g;
}

namespace {

// The input indices of output (n, c, oy, ox)'s window inside the input, and for
// average pooling PyTorch's divisor with padding counted (the window clipped to
// the padded input).
struct Window {
  int64_t y0, y1, x0, x1;  // inside the input, [y0, y1) x [x0, x1) before dilation
  int64_t padded_count;
};

Window window(const PoolGeom& g, int64_t oy, int64_t ox) {
  const int64_t ys = oy * g.stride.h - g.pad.h, xs = ox * g.stride.w - g.pad.w;
  const int64_t ye = std::min(ys + (g.kh - 1) * g.dil.h + 1, g.h + g.pad.h);
  const int64_t xe = std::min(xs + (g.kw - 1) * g.dil.w + 1, g.w + g.pad.w);
  return {ys, ye, xs, xe, (ye - ys) * (xe - xs)};
}

// Calls f(out_index, in_indices, padded_count) for every pooling window.
template <class F> void for_each_window(const PoolGeom& g, F&& f) {
  std::vector<int64_t> taps;
  for (int64_t nc = 0; nc < g.n * g.c; ++nc)
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const Window win = window(g, oy, ox);
        taps.clear();
        for (int64_t y = win.y0; y < win.y1; y += g.dil.h)
          for (int64_t x = win.x0; x < win.x1; x += g.dil.w)
            if (y >= 0 && y < g.h && x >= 0 && x < g.w) taps.push_back((nc * g.h + y) * g.w + x);
        f((nc * g.oh + oy) * g.ow + ox, taps, win.padded_count);
      }
}

// The first maximum (NaN counts as the maximum, like PyTorch).
int64_t argmax_of(const std::vector<double>& x, const std::vector<int64_t>& taps) {
  int64_t best = taps[0];
  for (int64_t t : taps)
    if (x[t] > x[best] || (std::isnan(x[t]) && !std::isnan(x[best]))) best = t;
  return best;
}

double avg_divisor(const OpContext& c, const std::vector<int64_t>& taps, int64_t padded) {
  return c.b("count_include_pad") ? static_cast<double>(padded) : static_cast<double>(taps.size());
}

// PyTorch's adaptive bins: [floor(i * in / out), ceil((i + 1) * in / out)).
int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

template <class F> void for_each_bin(const Shape& x, const Shape& y, F&& f) {
  std::vector<int64_t> taps;
  const int64_t h = x[2], w = x[3], oh = y[2], ow = y[3];
  for (int64_t nc = 0; nc < x[0] * x[1]; ++nc)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        taps.clear();
        for (int64_t iy = bin_start(oy, h, oh); iy < bin_end(oy, h, oh); ++iy)
          for (int64_t ix = bin_start(ox, w, ow); ix < bin_end(ox, w, ow); ++ix)
            taps.push_back((nc * h + iy) * w + ix);
        f((nc * oh + oy) * ow + ox, taps);
      }
}

DType pool_dtype(const OpContext& c) {
  const DType t = c.inputs[0].dtype;
  DS_CHECK(is_floating(t), TypeError, c.where(), "expects a floating input, got ", dtype_name(t));
  return t;
}

void check_same(const OpContext& c, const Shape& grad, const Shape& want) {
  bool ok = grad.size() == want.size();
  for (size_t i = 0; ok && i < grad.size(); ++i)
    ok = grad[i] == want[i] || grad[i] == dyn || want[i] == dyn;
  DS_CHECK(ok, ShapeError, c.where(), "grad_y ", shape_str(grad), " does not match the output ",
           shape_str(want));
}

// x of the avg/adaptive backward ops: the batch and channels of grad_y, input_size.
Shape input_from(const OpContext& c, const Shape& gy) {
  DS_CHECK(gy.size() == 4, ShapeError, c.where(), "grad_y must be 4-D, got ", shape_str(gy));
  const Pair2 in = pair_attr(c, "input_size", 1);
  return {gy[0], gy[1], in.h, in.w};
}

Shape adaptive_out(const OpContext& c, const Shape& x) {
  DS_CHECK(x.size() == 4, ShapeError, c.where(), "x must be 4-D [N, C, H, W], got ", shape_str(x));
  DS_CHECK(x[2] != dyn && x[3] != dyn, ShapeError, c.where(), "spatial dims of x ", shape_str(x),
           " must be static");
  const Pair2 o = pair_attr(c, "output_size", 1);
  return {x[0], x[1], o.h, o.w};
}

std::vector<AttrSpec> max_attrs() {
  return {{"kernel_size", AttrKind::Ints, std::nullopt},
          {"stride", AttrKind::Ints, std::vector<int64_t>{}},
          {"padding", AttrKind::Ints, std::vector<int64_t>{0}},
          {"dilation", AttrKind::Ints, std::vector<int64_t>{1}},
          {"ceil_mode", AttrKind::Bool, false},
          {"channels_last", AttrKind::Bool, false}};
}

// The values of an activation of `g` (x, or y with `out`) in NCHW order, and an
// NCHW result back in g's layout: for_each_window indexes NCHW.
std::vector<double> pool_nchw(const PoolGeom& g, const Tensor& t, bool out) {
  if (!g.channels_last) return to_f64(t);
  return nhwc_to_nchw(to_f64(t), g.n, out ? g.oh : g.h, out ? g.ow : g.w, g.c);
}
std::vector<double> pool_layout(const PoolGeom& g, std::vector<double> v, bool out) {
  if (!g.channels_last) return v;
  return nchw_to_nhwc(v, g.n, g.c, out ? g.oh : g.h, out ? g.ow : g.w);
}

std::vector<AttrSpec> avg_attrs() {
  return {{"kernel_size", AttrKind::Ints, std::nullopt},
          {"stride", AttrKind::Ints, std::vector<int64_t>{}},
          {"padding", AttrKind::Ints, std::vector<int64_t>{0}},
          {"ceil_mode", AttrKind::Bool, false},
          {"count_include_pad", AttrKind::Bool, true}};
}

AttrMap copy_attrs(const OpContext& c) { return c.attrs; }

const OpRegistrar reg([] {
  register_op({
      .name = "max_pool2d",
      .num_inputs = 1,
      .attrs = max_attrs(),
      .infer =
          [](const OpContext& c) {
            return one(pool_dtype(c), pool_geom(c, c.inputs[0].shape).y_shape());
          },
      .reference =
          [](const KernelCall& k) {
            const PoolGeom g = pool_geom(k.ctx, k.inputs[0].shape());
            const auto x = pool_nchw(g, k.inputs[0], false);
            std::vector<double> y(static_cast<size_t>(k.outputs[0].numel()));
            for_each_window(g, [&](int64_t o, const std::vector<int64_t>& taps, int64_t) {
              y[o] = taps.empty() ? -INFINITY : x[argmax_of(x, taps)];
            });
            from_f64(pool_layout(g, std::move(y), true), k.outputs[0]);
          },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            return {apply1("max_pool2d_backward", {a.inputs[0], a.grads[0]}, copy_attrs(a.ctx))};
          },
      .onnx = "MaxPool",
  });

  register_op({
      .name = "max_pool2d_backward",
      .num_inputs = 2,
      .attrs = max_attrs(),
      .infer =
          [](const OpContext& c) {
            check_same(c, c.inputs[1].shape, pool_geom(c, c.inputs[0].shape).y_shape());
            return one(pool_dtype(c), c.inputs[0].shape);
          },
      .reference =
          [](const KernelCall& k) {
            const PoolGeom g = pool_geom(k.ctx, k.inputs[0].shape());
            const auto x = pool_nchw(g, k.inputs[0], false), gy = pool_nchw(g, k.inputs[1], true);
            std::vector<double> gx(x.size(), 0.0);
            for_each_window(g, [&](int64_t o, const std::vector<int64_t>& taps, int64_t) {
              if (!taps.empty()) gx[argmax_of(x, taps)] += gy[o];
            });
            from_f64(pool_layout(g, std::move(gx), false), k.outputs[0]);
          },
  });

  register_op({
      .name = "avg_pool2d",
      .num_inputs = 1,
      .attrs = avg_attrs(),
      .infer =
          [](const OpContext& c) {
            return one(pool_dtype(c), pool_geom(c, c.inputs[0].shape).y_shape());
          },
      .reference =
          [](const KernelCall& k) {
            const PoolGeom g = pool_geom(k.ctx, k.inputs[0].shape());
            const auto x = to_f64(k.inputs[0]);
            std::vector<double> y(static_cast<size_t>(k.outputs[0].numel()));
            for_each_window(g, [&](int64_t o, const std::vector<int64_t>& taps, int64_t padded) {
              double s = 0;
              for (int64_t t : taps) s += x[t];
              y[o] = s / avg_divisor(k.ctx, taps, padded);
            });
            from_f64(y, k.outputs[0]);
          },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            AttrMap attrs = copy_attrs(a.ctx);
            const Shape& x = a.inputs[0].shape();
            attrs["input_size"] = std::vector<int64_t>{x[2], x[3]};
            return {apply1("avg_pool2d_backward", {a.grads[0]}, attrs)};
          },
      .onnx = "AveragePool",
  });

  std::vector<AttrSpec> avg_back = avg_attrs();
  avg_back.push_back({"input_size", AttrKind::Ints, std::nullopt});
  register_op({
      .name = "avg_pool2d_backward",
      .num_inputs = 1,
      .attrs = avg_back,
      .infer =
          [](const OpContext& c) {
            const Shape x = input_from(c, c.inputs[0].shape);
            check_same(c, c.inputs[0].shape, pool_geom(c, x).y_shape());
            return one(pool_dtype(c), x);
          },
      .reference =
          [](const KernelCall& k) {
            const PoolGeom g = pool_geom(k.ctx, k.outputs[0].shape());
            const auto gy = to_f64(k.inputs[0]);
            std::vector<double> gx(static_cast<size_t>(k.outputs[0].numel()), 0.0);
            for_each_window(g, [&](int64_t o, const std::vector<int64_t>& taps, int64_t padded) {
              const double share = gy[o] / avg_divisor(k.ctx, taps, padded);
              for (int64_t t : taps) gx[t] += share;
            });
            from_f64(gx, k.outputs[0]);
          },
  });

  register_op({
      .name = "adaptive_avg_pool2d",
      .num_inputs = 1,
      .attrs = {{"output_size", AttrKind::Ints, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            return one(pool_dtype(c), adaptive_out(c, c.inputs[0].shape));
          },
      .reference =
          [](const KernelCall& k) {
            const auto x = to_f64(k.inputs[0]);
            std::vector<double> y(static_cast<size_t>(k.outputs[0].numel()));
            for_each_bin(k.inputs[0].shape(), k.outputs[0].shape(),
                         [&](int64_t o, const std::vector<int64_t>& taps) {
                           double s = 0;
                           for (int64_t t : taps) s += x[t];
                           y[o] = s / static_cast<double>(taps.size());
                         });
            from_f64(y, k.outputs[0]);
          },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            const Shape& x = a.inputs[0].shape();
            return {apply1("adaptive_avg_pool2d_backward", {a.grads[0]},
                           {{"input_size", std::vector<int64_t>{x[2], x[3]}}})};
          },
  });

  register_op({
      .name = "adaptive_avg_pool2d_backward",
      .num_inputs = 1,
      .attrs = {{"input_size", AttrKind::Ints, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            return one(pool_dtype(c), input_from(c, c.inputs[0].shape));
          },
      .reference =
          [](const KernelCall& k) {
            const auto gy = to_f64(k.inputs[0]);
            std::vector<double> gx(static_cast<size_t>(k.outputs[0].numel()), 0.0);
            for_each_bin(k.outputs[0].shape(), k.inputs[0].shape(),
                         [&](int64_t o, const std::vector<int64_t>& taps) {
                           for (int64_t t : taps) gx[t] += gy[o] / static_cast<double>(taps.size());
                         });
            from_f64(gx, k.outputs[0]);
          },
  });

  register_op({
      .name = "global_avg_pool2d",
      .traits = kReduction,
      .num_inputs = 1,
      .infer =
          [](const OpContext& c) {
            const Shape& x = c.inputs[0].shape;
            DS_CHECK(x.size() == 4, ShapeError, c.where(), "x must be 4-D [N, C, H, W], got ",
                     shape_str(x));
            return one(pool_dtype(c), {x[0], x[1], 1, 1});
          },
      .reference =
          [](const KernelCall& k) {
            const auto x = to_f64(k.inputs[0]);
            const int64_t plane = k.inputs[0].dim(2) * k.inputs[0].dim(3);
            std::vector<double> y(static_cast<size_t>(k.outputs[0].numel()), 0.0);
            for (size_t i = 0; i < x.size(); ++i) y[i / plane] += x[i] / static_cast<double>(plane);
            from_f64(y, k.outputs[0]);
          },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            const Shape& x = a.inputs[0].shape();
            return {broadcast_to(a.grads[0], x) * (1.0 / static_cast<double>(x[2] * x[3]))};
          },
      .onnx = "GlobalAveragePool",
  });
});

}  // namespace
}  // namespace ops

Tensor max_pool2d(const Tensor& x, const Pair& kernel, const Pair& stride, const Pair& padding,
                  const Pair& dilation, bool ceil_mode) {
  return apply1("max_pool2d", {x},
                {{"kernel_size", kernel},
                 {"stride", stride},
                 {"padding", padding},
                 {"dilation", dilation},
                 {"ceil_mode", ceil_mode}});
}

Tensor max_pool2d_channels_last(const Tensor& x, const Pair& kernel, const Pair& stride,
                                const Pair& padding, const Pair& dilation, bool ceil_mode) {
  return apply1("max_pool2d", {x},
                {{"kernel_size", kernel},
                 {"stride", stride},
                 {"padding", padding},
                 {"dilation", dilation},
                 {"ceil_mode", ceil_mode},
                 {"channels_last", true}});
}

Tensor avg_pool2d(const Tensor& x, const Pair& kernel, const Pair& stride, const Pair& padding,
                  bool ceil_mode, bool count_include_pad) {
  return apply1("avg_pool2d", {x},
                {{"kernel_size", kernel},
                 {"stride", stride},
                 {"padding", padding},
                 {"ceil_mode", ceil_mode},
                 {"count_include_pad", count_include_pad}});
}

Tensor adaptive_avg_pool2d(const Tensor& x, const Pair& output_size) {
  return apply1("adaptive_avg_pool2d", {x}, {{"output_size", output_size}});
}

Tensor global_avg_pool2d(const Tensor& x) { return apply1("global_avg_pool2d", {x}); }

}  // namespace ds
