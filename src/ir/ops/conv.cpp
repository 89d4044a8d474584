// 2-D convolution (NCHW, weights OIHW): conv2d, its two backward ops (explicit
// ops so that they get library kernels), and conv_transpose2d. conv2d and its
// backward ops take `channels_last`: activations [N, H, W, C], the weight still
// OIHW. Reference kernels compute in float64 (channels-last ones permute to
// NCHW and back); the fast ones live in src/backends.
#include "ds/channels_last.h"
#include "ir/ops/conv_geometry.h"
#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {

Pair2 pair_attr(const OpContext& c, const std::string& name, int64_t min) {
  const auto& v = c.ints(name);
  DS_CHECK(v.size() == 1 || v.size() == 2, ValueError, c.where(), name,
           " takes 1 or 2 values, got ", v.size());
  Pair2 p{v[0], v.size() == 2 ? v[1] : v[0]};
  DS_CHECK(p.h >= min && p.w >= min, ValueError, c.where(), name, " must be >= ", min, ", got [",
           p.h, ", ", p.w, "]");
  return p;
}

bool is_channels_last(const OpContext& c) { return c.has("channels_last") && c.b("channels_last"); }

std::vector<double> nchw_to_nhwc(const std::vector<double>& v, int64_t n, int64_t c, int64_t h,
                                 int64_t w) {
  std::vector<double> out(v.size());
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ic = 0; ic < c; ++ic)
      for (int64_t i = 0; i < h * w; ++i)
        out[(in * h * w + i) * c + ic] = v[(in * c + ic) * h * w + i];
  return out;
}

std::vector<double> nhwc_to_nchw(const std::vector<double>& v, int64_t n, int64_t h, int64_t w,
                                 int64_t c) {
  std::vector<double> out(v.size());
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ic = 0; ic < c; ++ic)
      for (int64_t i = 0; i < h * w; ++i)
        out[(in * c + ic) * h * w + i] = v[(in * h * w + i) * c + ic];
  return out;
}

namespace {

// The layout an activation of the op is described in, for shape errors.
const char* act_layout(const OpContext& c, bool output) {
  if (is_channels_last(c))
    return output ? "[N, OH, OW, O] (channels_last)" : "[N, H, W, C] (channels_last)";
  return output ? "[N, O, OH, OW]" : "[N, C, H, W]";
}

void check_rank4(const OpContext& c, const Shape& s, const char* what, const char* layout) {
  DS_CHECK(s.size() == 4, ShapeError, c.where(), what, " must be 4-D ", layout, ", got ",
           shape_str(s));
}

// Fills the spatial output extents of `g` (input, weights, attrs set) after checking them.
ConvGeom finish(const OpContext& c, ConvGeom g) {
  DS_CHECK(g.h != dyn && g.w != dyn, ShapeError, c.where(), "spatial dims of x ",
           shape_str(g.x_shape()), " must be static");
  DS_CHECK(g.c % g.groups == 0, ShapeError, c.where(), "x ", shape_str(g.x_shape()), " has ", g.c,
           " channels, not divisible by groups=", g.groups);
  DS_CHECK(g.o % g.groups == 0, ShapeError, c.where(), "weight has ", g.o,
           " output channels, not divisible by groups=", g.groups);
  const int64_t ekh = g.dil.h * (g.kh - 1) + 1, ekw = g.dil.w * (g.kw - 1) + 1;
  const int64_t ph = g.h + 2 * g.pad.h, pw = g.w + 2 * g.pad.w;
  DS_CHECK(g.kh > 0 && g.kw > 0 && ekh <= ph && ekw <= pw, ShapeError, c.where(), "kernel ",
           g.kh, "x", g.kw, " (", ekh, "x", ekw, " with dilation) does not fit the padded input ",
           ph, "x", pw, " (x ", shape_str(g.x_shape()), ")");
  g.oh = (ph - ekh) / g.stride.h + 1;
  g.ow = (pw - ekw) / g.stride.w + 1;
  return g;
}

// `x` in the op's layout (NHWC where channels_last).
ConvGeom base(const OpContext& c, const Shape& x, const Shape& w) {
  ConvGeom g{};
  g.channels_last = is_channels_last(c);
  if (g.channels_last)
    g.n = x[0], g.h = x[1], g.w = x[2], g.c = x[3];
  else
    g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  g.o = w[0], g.kh = w[2], g.kw = w[3];
  g.groups = c.i("groups");
  DS_CHECK(g.groups >= 1, ValueError, c.where(), "groups must be >= 1, got ", g.groups);
  g.stride = pair_attr(c, "stride", 1);
  g.pad = pair_attr(c, "padding", 0);
  g.dil = pair_attr(c, "dilation", 1);
  return g;
}

void check_weight(const OpContext& c, const ConvGeom& g, const Shape& w) {
  DS_CHECK(g.c % g.groups != 0 || w[1] * g.groups == g.c, ShapeError, c.where(), "weight ",
           shape_str(w), " expects ", w[1] * g.groups, " input channels (", w[1], " per group x ",
           g.groups, " groups), x ", shape_str(g.x_shape()), " has ", g.c);
}

void check_grad(const OpContext& c, const ConvGeom& g, const Shape& gy) {
  const Shape want = g.y_shape();
  bool ok = gy.size() == 4;
  for (size_t i = 0; ok && i < 4; ++i) ok = gy[i] == want[i] || gy[i] == dyn || want[i] == dyn;
  DS_CHECK(ok, ShapeError, c.where(), "grad_y ", shape_str(gy), " does not match the output ",
           shape_str(want), " of the convolution");
}

// Calls f(x_index, w_index, y_index) for every multiply-add of the convolution:
// the one loop nest that defines all three reference kernels.
template <class F> void for_each_tap(const ConvGeom& g, F&& f) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o) {
      const int64_t c0 = (o / opg) * cpg;
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t yi = ((n * g.o + o) * g.oh + oy) * g.ow + ox;
          for (int64_t ci = 0; ci < cpg; ++ci)
            for (int64_t ky = 0; ky < g.kh; ++ky) {
              const int64_t iy = oy * g.stride.h - g.pad.h + ky * g.dil.h;
              if (iy < 0 || iy >= g.h) continue;
              for (int64_t kx = 0; kx < g.kw; ++kx) {
                const int64_t ix = ox * g.stride.w - g.pad.w + kx * g.dil.w;
                if (ix < 0 || ix >= g.w) continue;
                f(((n * g.c + c0 + ci) * g.h + iy) * g.w + ix, ((o * cpg + ci) * g.kh + ky) * g.kw + kx,
                  yi);
              }
            }
        }
    }
}

// out[n, ch, :, :] += bias[ch] for an NCHW tensor with `channels` channels
// (plane 1: the channels-last out[..., ch]).
void add_bias(std::vector<double>& out, const Tensor& bias, int64_t channels, int64_t plane) {
  const auto b = to_f64(bias);
  for (size_t i = 0; i < out.size(); ++i) out[i] += b[(i / plane) % channels];
}

// The values of activation x / y of `g` in NCHW order (permuted from NHWC where
// g is channels-last), and an NCHW result back in g's layout.
std::vector<double> x_nchw(const ConvGeom& g, const Tensor& x) {
  return g.channels_last ? nhwc_to_nchw(to_f64(x), g.n, g.h, g.w, g.c) : to_f64(x);
}
std::vector<double> y_nchw(const ConvGeom& g, const Tensor& y) {
  return g.channels_last ? nhwc_to_nchw(to_f64(y), g.n, g.oh, g.ow, g.o) : to_f64(y);
}
std::vector<double> x_layout(const ConvGeom& g, std::vector<double> x) {
  return g.channels_last ? nchw_to_nhwc(x, g.n, g.c, g.h, g.w) : x;
}
std::vector<double> y_layout(const ConvGeom& g, std::vector<double> y) {
  return g.channels_last ? nchw_to_nhwc(y, g.n, g.o, g.oh, g.ow) : y;
}

// for_each_tap indexes NCHW activations: the reference kernels run in NCHW.
std::vector<double> conv_forward_f64(const ConvGeom& g, const Tensor& x, const Tensor& w) {
  const auto xv = x_nchw(g, x), wv = to_f64(w);
  std::vector<double> y(static_cast<size_t>(numel(g.y_shape())), 0.0);
  for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { y[yi] += xv[xi] * wv[wi]; });
  return y_layout(g, std::move(y));
}

std::vector<double> conv_backward_input_f64(const ConvGeom& g, const Tensor& gy, const Tensor& w) {
  const auto gv = y_nchw(g, gy), wv = to_f64(w);
  std::vector<double> gx(static_cast<size_t>(numel(g.x_shape())), 0.0);
  for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { gx[xi] += gv[yi] * wv[wi]; });
  return x_layout(g, std::move(gx));
}

std::vector<double> conv_backward_weight_f64(const ConvGeom& g, const Tensor& x, const Tensor& gy) {
  const auto xv = x_nchw(g, x), gv = y_nchw(g, gy);
  std::vector<double> gw(static_cast<size_t>(numel(g.w_shape())), 0.0);
  for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { gw[wi] += xv[xi] * gv[yi]; });
  return gw;
}

DType conv_dtype(const OpContext& c) {
  DType t = c.inputs[0].dtype;
  for (const auto& in : c.inputs) t = promote_types(t, in.dtype);
  DS_CHECK(is_floating(t), TypeError, c.where(), "expects floating inputs, got ", dtype_name(t));
  return t;
}

void check_bias(const OpContext& c, int64_t channels) {
  if (c.inputs.size() > 2)
    DS_CHECK(c.inputs[2].shape == Shape{channels}, ShapeError, c.where(), "bias ",
             shape_str(c.inputs[2].shape), " must be [", channels, "]");
}

Cost conv_cost(const OpContext& c, const ConvGeom& g) {
  double bytes = 0;
  auto add = [&](const Shape& s) {
    double p = 1;
    for (int64_t e : s) p *= static_cast<double>(e == dyn ? 1 : e);
    bytes += p * dtype_size(c.inputs[0].dtype);
  };
  add(g.x_shape()), add(g.w_shape()), add(g.y_shape());
  const double taps = static_cast<double>(g.n == dyn ? 1 : g.n) * static_cast<double>(g.o) *
                      static_cast<double>(g.oh * g.ow) * static_cast<double>(g.c / g.groups) *
                      static_cast<double>(g.kh * g.kw);
  return {2.0 * taps, bytes};
}

std::vector<AttrSpec> conv_attrs() {
  return {{"stride", AttrKind::Ints, std::vector<int64_t>{1}},
          {"padding", AttrKind::Ints, std::vector<int64_t>{0}},
          {"dilation", AttrKind::Ints, std::vector<int64_t>{1}},
          {"groups", AttrKind::Int, int64_t{1}}};
}

std::vector<AttrSpec> with(std::vector<AttrSpec> attrs, AttrSpec extra) {
  attrs.push_back(std::move(extra));
  return attrs;
}

// conv2d and its backward ops: activations NHWC where set.
std::vector<AttrSpec> layout_conv_attrs() {
  return with(conv_attrs(), {"channels_last", AttrKind::Bool, false});
}

// The forward geometry as attributes for the backward ops.
AttrMap geometry_attrs(const OpContext& c) {
  return {{"stride", c.ints("stride")}, {"padding", c.ints("padding")},
          {"dilation", c.ints("dilation")}, {"groups", c.i("groups")}};
}

Tensor channel_sum(const Tensor& g, bool channels_last = false) {
  return channels_last ? sum(g, {0, 1, 2}) : sum(g, {0, 2, 3});
}

}  // namespace

ConvGeom conv2d_geom(const OpContext& c) {
  const Shape &x = c.inputs[0].shape, &w = c.inputs[1].shape;
  check_rank4(c, x, "x", act_layout(c, false));
  check_rank4(c, w, "weight", "[O, C/groups, kH, kW]");
  ConvGeom g = base(c, x, w);
  check_weight(c, g, w);
  return finish(c, g);
}

ConvGeom conv2d_backward_input_geom(const OpContext& c) {
  const Shape &gy = c.inputs[0].shape, &w = c.inputs[1].shape;
  check_rank4(c, gy, "grad_y", act_layout(c, true));
  check_rank4(c, w, "weight", "[O, C/groups, kH, kW]");
  const Pair2 in = pair_attr(c, "input_size", 1);
  const int64_t groups = c.i("groups");
  const Shape x = is_channels_last(c) ? Shape{gy[0], in.h, in.w, w[1] * groups}
                                      : Shape{gy[0], w[1] * groups, in.h, in.w};
  ConvGeom g = finish(c, base(c, x, w));
  check_grad(c, g, gy);
  return g;
}

ConvGeom conv2d_backward_weight_geom(const OpContext& c) {
  const Shape &x = c.inputs[0].shape, &gy = c.inputs[1].shape;
  check_rank4(c, x, "x", act_layout(c, false));
  check_rank4(c, gy, "grad_y", act_layout(c, true));
  const Pair2 k = pair_attr(c, "kernel_size", 1);
  const int64_t groups = std::max<int64_t>(c.i("groups"), 1);
  const bool last = is_channels_last(c);
  const int64_t o = last ? gy[3] : gy[1], channels = last ? x[3] : x[1];
  ConvGeom g = finish(c, base(c, x, {o, channels / groups, k.h, k.w}));
  check_grad(c, g, gy);
  return g;
}

ConvGeom conv_transpose2d_geom(const OpContext& c) {
  const Shape &x = c.inputs[0].shape, &w = c.inputs[1].shape;
  check_rank4(c, x, "x", "[N, C, H, W]");
  check_rank4(c, w, "weight", "[C, O/groups, kH, kW]");
  DS_CHECK(x[1] == w[0], ShapeError, c.where(), "weight ", shape_str(w), " expects ", w[0],
           " input channels, x ", shape_str(x), " has ", x[1]);
  DS_CHECK(x[2] != dyn && x[3] != dyn, ShapeError, c.where(), "spatial dims of x ", shape_str(x),
           " must be static");
  const int64_t groups = std::max<int64_t>(c.i("groups"), 1);
  const Pair2 s = pair_attr(c, "stride", 1), p = pair_attr(c, "padding", 0),
              d = pair_attr(c, "dilation", 1), op = pair_attr(c, "output_padding", 0);
  // (PyTorch also allows output_padding < dilation; then the output is not the input of
  // any convolution over x, so the gradient rules below would not hold.)
  DS_CHECK(op.h < s.h && op.w < s.w, ValueError, c.where(), "output_padding [", op.h, ", ",
           op.w, "] must be smaller than stride [", s.h, ", ", s.w, "]");
  const int64_t oh = (x[2] - 1) * s.h - 2 * p.h + d.h * (w[2] - 1) + op.h + 1;
  const int64_t ow = (x[3] - 1) * s.w - 2 * p.w + d.w * (w[3] - 1) + op.w + 1;
  DS_CHECK(oh > 0 && ow > 0, ShapeError, c.where(), "output size ", oh, "x", ow,
           " is not positive for x ", shape_str(x), " and weight ", shape_str(w));
  // The convolution that conv_transpose2d is the input-gradient of: its input is our output.
  return finish(c, base(c, {x[0], w[1] * groups, oh, ow}, w));
}

namespace {

const OpRegistrar reg([] {
  register_op({
      .name = "conv2d",
      .traits = kLibrary,
      .num_inputs = 3,
      .min_inputs = 2,
      .attrs = layout_conv_attrs(),
      .infer =
          [](const OpContext& c) {
            const ConvGeom g = conv2d_geom(c);
            check_bias(c, g.o);
            return one(conv_dtype(c), g.y_shape());
          },
      .cost = [](const OpContext& c) { return conv_cost(c, conv2d_geom(c)); },
      .reference =
          [](const KernelCall& k) {
            const ConvGeom g = conv2d_geom(k.ctx);
            auto y = conv_forward_f64(g, k.inputs[0], k.inputs[1]);
            if (k.inputs.size() > 2)
              add_bias(y, k.inputs[2], g.o, g.channels_last ? 1 : g.oh * g.ow);
            from_f64(y, k.outputs[0]);
          },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            const Tensor &x = a.inputs[0], &w = a.inputs[1], &gy = a.grads[0];
            const bool last = is_channels_last(a.ctx);
            AttrMap in_attrs = geometry_attrs(a.ctx);
            in_attrs["channels_last"] = last;
            AttrMap w_attrs = in_attrs;
            const Shape& xs = x.shape();
            in_attrs["input_size"] =
                last ? std::vector<int64_t>{xs[1], xs[2]} : std::vector<int64_t>{xs[2], xs[3]};
            w_attrs["kernel_size"] = std::vector<int64_t>{w.shape()[2], w.shape()[3]};
            std::vector<Tensor> grads{apply1("conv2d_backward_input", {gy, w}, in_attrs),
                                      apply1("conv2d_backward_weight", {x, gy}, w_attrs)};
            if (a.inputs.size() > 2 && a.inputs[2].defined())
              grads.push_back(channel_sum(gy, last));
            return grads;
          },
      .onnx = "Conv",
  });

  register_op({
      .name = "conv2d_backward_input",
      .traits = kLibrary,
      .num_inputs = 2,
      .attrs = with(layout_conv_attrs(), {"input_size", AttrKind::Ints, std::nullopt}),
      .infer =
          [](const OpContext& c) {
            return one(conv_dtype(c), conv2d_backward_input_geom(c).x_shape());
          },
      .cost = [](const OpContext& c) { return conv_cost(c, conv2d_backward_input_geom(c)); },
      .reference =
          [](const KernelCall& k) {
            const ConvGeom g = conv2d_backward_input_geom(k.ctx);
            from_f64(conv_backward_input_f64(g, k.inputs[0], k.inputs[1]), k.outputs[0]);
          },
  });

  register_op({
      .name = "conv2d_backward_weight",
      .traits = kLibrary,
      .num_inputs = 2,
      .attrs = with(layout_conv_attrs(), {"kernel_size", AttrKind::Ints, std::nullopt}),
      .infer =
          [](const OpContext& c) {
            return one(conv_dtype(c), conv2d_backward_weight_geom(c).w_shape());
          },
      .cost = [](const OpContext& c) { return conv_cost(c, conv2d_backward_weight_geom(c)); },
      .reference =
          [](const KernelCall& k) {
            const ConvGeom g = conv2d_backward_weight_geom(k.ctx);
            from_f64(conv_backward_weight_f64(g, k.inputs[0], k.inputs[1]), k.outputs[0]);
          },
  });

  register_op({
      .name = "conv_transpose2d",
      .traits = kLibrary,
      .num_inputs = 3,
      .min_inputs = 2,
      .attrs = with(conv_attrs(), {"output_padding", AttrKind::Ints, std::vector<int64_t>{0}}),
      .infer =
          [](const OpContext& c) {
            const ConvGeom g = conv_transpose2d_geom(c);
            check_bias(c, g.c);
            return one(conv_dtype(c), g.x_shape());
          },
      .cost = [](const OpContext& c) { return conv_cost(c, conv_transpose2d_geom(c)); },
      .reference =
          [](const KernelCall& k) {
            const ConvGeom g = conv_transpose2d_geom(k.ctx);
            auto y = conv_backward_input_f64(g, k.inputs[0], k.inputs[1]);
            if (k.inputs.size() > 2) add_bias(y, k.inputs[2], g.c, g.h * g.w);
            from_f64(y, k.outputs[0]);
          },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            const Tensor &x = a.inputs[0], &w = a.inputs[1], &gy = a.grads[0];
            // conv_transpose2d is the input-gradient of a convolution, so its own
            // gradients are that convolution and its weight-gradient.
            AttrMap attrs = geometry_attrs(a.ctx);
            Tensor gx = apply1("conv2d", {gy, w}, attrs);
            attrs["kernel_size"] = std::vector<int64_t>{w.shape()[2], w.shape()[3]};
            std::vector<Tensor> grads{gx, apply1("conv2d_backward_weight", {gy, x}, attrs)};
            if (a.inputs.size() > 2 && a.inputs[2].defined()) grads.push_back(channel_sum(gy));
            return grads;
          },
      .onnx = "ConvTranspose",
  });
});

}  // namespace
}  // namespace ops

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Pair& stride,
              const Pair& padding, const Pair& dilation, int64_t groups) {
  return apply1("conv2d", {x, w, bias},
                {{"stride", stride}, {"padding", padding}, {"dilation", dilation}, {"groups", groups}});
}

Tensor conv2d_channels_last(const Tensor& x, const Tensor& w, const Tensor& bias,
                            const Pair& stride, const Pair& padding, const Pair& dilation,
                            int64_t groups) {
  return apply1("conv2d", {x, w, bias},
                {{"stride", stride},
                 {"padding", padding},
                 {"dilation", dilation},
                 {"groups", groups},
                 {"channels_last", true}});
}

Tensor to_channels_last(const Tensor& x) {
  DS_CHECK(x.ndim() == 4, ShapeError, "to_channels_last: expected [N, C, H, W], got ",
           shape_str(x.shape()));
  return permute(x, {0, 2, 3, 1});
}

Tensor from_channels_last(const Tensor& x) {
  DS_CHECK(x.ndim() == 4, ShapeError, "from_channels_last: expected [N, H, W, C], got ",
           shape_str(x.shape()));
  return permute(x, {0, 3, 1, 2});
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Pair& stride,
                        const Pair& padding, const Pair& output_padding, const Pair& dilation,
                        int64_t groups) {
  return apply1("conv_transpose2d", {x, w, bias},
                {{"stride", stride},
                 {"padding", padding},
                 {"output_padding", output_padding},
                 {"dilation", dilation},
                 {"groups", groups}});
}

}  // namespace ds
