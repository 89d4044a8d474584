// Ops on oneDNN's channel-blocked layout (see blocked_layout.h), made by the
// layout propagation pass: to_blocked / from_blocked reorder at the edges of a
// convolution chain, blocked_conv2d is fused_conv2d on blocked x, residual and
// result (weights and bias stay plain). The reference kernels reorder plainly in
// float64; blocked_conv2d's is from_blocked -> fused_conv2d -> to_blocked (with
// its `block`: the result's block may differ from x's under channels-last), and
// blocked_max_pool2d's from_blocked -> max_pool2d -> to_blocked.
#include "ir/ops/blocked_layout.h"
#include "ir/ops/conv_geometry.h"
#include "ir/ops/op_helpers.h"

namespace ds::ops {
namespace {

// Calls f(plain_index, blocked_index) for every element of the NCHW tensor.
template <class F> void for_each_element(const Shape& nchw, int64_t block, F&& f) {
  const int64_t n = nchw[0], c = nchw[1], plane = nchw[2] * nchw[3];
  const int64_t cb = channel_blocks(c, block);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < plane; ++p)
        f((i * c + ch) * plane + p, ((i * cb + ch / block) * plane + p) * block + ch % block);
}

void check_static_nchw(const OpContext& c, const Shape& s, const char* what) {
  DS_CHECK(s.size() == 4, ShapeError, c.where(), what, " must be 4-D NCHW, got ", shape_str(s));
  DS_CHECK(s[1] != dyn && s[2] != dyn && s[3] != dyn, ShapeError, c.where(), what, " ",
           shape_str(s), " must have static channels and spatial dims");
}

// The block of a blocked input (its last extent), checked against `channels`.
int64_t check_blocked(const OpContext& c, const TensorType& t, int64_t channels, const char* what) {
  DS_CHECK(t.shape.size() == 5, ShapeError, c.where(), what,
           " must be 5-D blocked [n, c/block, h, w, block], got ", shape_str(t.shape));
  const int64_t block = t.shape[4];
  DS_CHECK(block > 0 && t.shape[1] == channel_blocks(channels, block), ShapeError, c.where(), what,
           " ", shape_str(t.shape), " does not hold ", channels, " channels in blocks of ", block);
  return block;
}

std::vector<double> blocked_f64(const std::vector<double>& plain, const Shape& nchw, int64_t block) {
  std::vector<double> out(static_cast<size_t>(numel(blocked_shape(nchw, block))), 0.0);
  for_each_element(nchw, block, [&](int64_t p, int64_t b) { out[b] = plain[p]; });
  return out;
}

std::vector<double> plain_f64(const std::vector<double>& blocked, const Shape& nchw, int64_t block) {
  std::vector<double> out(static_cast<size_t>(numel(nchw)));
  for_each_element(nchw, block, [&](int64_t p, int64_t b) { out[p] = blocked[b]; });
  return out;
}

Tensor plain_tensor(const Tensor& blocked, int64_t channels) {
  const Shape nchw = plain_shape(blocked.shape(), channels);
  return Tensor::from_vector(plain_f64(to_f64(blocked), nchw, blocked.dim(4)), nchw);
}

// The fused_conv2d a blocked_conv2d computes: its attributes less `block` and `weights_constant`.
AttrMap fused_attrs(const OpContext& c) {
  return {{"stride", c.ints("stride")},       {"padding", c.ints("padding")},
          {"dilation", c.ints("dilation")},   {"groups", c.i("groups")},
          {"activation", c.s("activation")},  {"alpha", c.f("alpha")},
          {"has_bias", c.b("has_bias")},      {"has_residual", c.b("has_residual")}};
}

std::vector<TensorType> infer_blocked_conv(const OpContext& c) {
  DS_CHECK(c.inputs.size() >= 2, ValueError, c.where(), "expects x, w[, bias][, residual], got ",
           c.inputs.size(), " inputs");
  const Shape& w = c.inputs[1].shape;
  DS_CHECK(w.size() == 4 && w[1] != dyn, ShapeError, c.where(), "weight must be 4-D OIHW, got ",
           shape_str(w));
  const int64_t channels = w[1] * c.i("groups");
  check_blocked(c, c.inputs[0], channels, "x");
  std::vector<TensorType> plain = c.inputs;
  plain[0].shape = plain_shape(c.inputs[0].shape, channels);
  if (c.b("has_residual")) {
    const int64_t out_channels = w[0];
    check_blocked(c, c.inputs.back(), out_channels, "residual");
    plain.back().shape = plain_shape(c.inputs.back().shape, out_channels);
  }
  DS_CHECK(c.i("block") > 0, ValueError, c.where(), "block must be > 0, got ", c.i("block"));
  const AttrMap attrs = fused_attrs(c);
  const OpContext fc{get_op("fused_conv2d"), attrs, plain, c.node};
  std::vector<TensorType> out = get_op("fused_conv2d").infer(fc);
  out[0].shape = blocked_shape(out[0].shape, c.i("block"));
  return out;
}

// The max_pool2d a blocked_max_pool2d computes: its attributes less `channels`.
AttrMap pool_attrs(const OpContext& c) {
  AttrMap a = c.attrs;
  a.erase("channels");
  return a;
}

const OpRegistrar reg([] {
  register_op({
      .name = "to_blocked",
      .attrs = {{"block", AttrKind::Int, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            check_static_nchw(c, c.inputs[0].shape, "x");
            DS_CHECK(c.i("block") > 0, ValueError, c.where(), "block must be > 0, got ", c.i("block"));
            return one(c.inputs[0].dtype, blocked_shape(c.inputs[0].shape, c.i("block")));
          },
      .reference =
          [](const KernelCall& k) {
            from_f64(blocked_f64(to_f64(k.inputs[0]), k.inputs[0].shape(), k.ctx.i("block")),
                     k.outputs[0]);
          },
  });
  register_op({
      .name = "from_blocked",
      .attrs = {{"channels", AttrKind::Int, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            DS_CHECK(c.i("channels") > 0, ValueError, c.where(), "channels must be > 0, got ",
                     c.i("channels"));
            check_blocked(c, c.inputs[0], c.i("channels"), "x");
            return one(c.inputs[0].dtype, plain_shape(c.inputs[0].shape, c.i("channels")));
          },
      .reference =
          [](const KernelCall& k) {
            const Shape nchw = k.outputs[0].shape();
            from_f64(plain_f64(to_f64(k.inputs[0]), nchw, k.inputs[0].dim(4)), k.outputs[0]);
          },
  });
  register_op({
      .name = "blocked_max_pool2d",
      .attrs = {{"kernel_size", AttrKind::Ints, std::nullopt},
                {"stride", AttrKind::Ints, std::vector<int64_t>{}},
                {"padding", AttrKind::Ints, std::vector<int64_t>{0}},
                {"dilation", AttrKind::Ints, std::vector<int64_t>{1}},
                {"ceil_mode", AttrKind::Bool, false},
                {"channels", AttrKind::Int, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            const int64_t block = check_blocked(c, c.inputs[0], c.i("channels"), "x");
            const Shape y = pool_geom(c, plain_shape(c.inputs[0].shape, c.i("channels"))).y_shape();
            return one(c.inputs[0].dtype, blocked_shape(y, block));
          },
      .reference =
          [](const KernelCall& k) {
            const Tensor x = plain_tensor(cast(k.inputs[0], DType::Float64), k.ctx.i("channels"));
            const Tensor y = apply1("max_pool2d", {x}, pool_attrs(k.ctx));
            from_f64(blocked_f64(to_f64(y), y.shape(), k.inputs[0].dim(4)), k.outputs[0]);
          },
  });
  register_op({
      .name = "blocked_conv2d",
      .traits = kLibrary,
      .num_inputs = -1,
      .attrs = {{"stride", AttrKind::Ints, std::vector<int64_t>{1}},
                {"padding", AttrKind::Ints, std::vector<int64_t>{0}},
                {"dilation", AttrKind::Ints, std::vector<int64_t>{1}},
                {"groups", AttrKind::Int, int64_t{1}},
                {"activation", AttrKind::String, std::string("none")},
                {"alpha", AttrKind::Float, 0.0},
                {"has_bias", AttrKind::Bool, false},
                {"has_residual", AttrKind::Bool, false},
                {"block", AttrKind::Int, std::nullopt},  // of the result
                // The weights are a graph constant: kernels may keep them reordered.
                {"weights_constant", AttrKind::Bool, false}},
      .infer = infer_blocked_conv,
      .cost =
          [](const OpContext& c) {
            const Shape& w = c.inputs[1].shape;
            const int64_t channels = w[1] * c.i("groups");
            std::vector<TensorType> plain = c.inputs;
            plain[0].shape = plain_shape(c.inputs[0].shape, channels);
            if (c.b("has_residual")) plain.back().shape = plain_shape(plain.back().shape, w[0]);
            const AttrMap attrs = fused_attrs(c);
            const OpContext fc{get_op("fused_conv2d"), attrs, plain, c.node};
            return get_op("fused_conv2d").cost(fc);
          },
      .reference =
          [](const KernelCall& k) {
            const OpContext& c = k.ctx;
            std::vector<Tensor> in;
            for (const Tensor& t : k.inputs) in.push_back(cast(t, DType::Float64));
            in[0] = plain_tensor(in[0], k.inputs[1].dim(1) * c.i("groups"));
            if (c.b("has_residual")) in.back() = plain_tensor(in.back(), k.inputs[1].dim(0));
            const Tensor y = apply1("fused_conv2d", in, fused_attrs(c));
            from_f64(blocked_f64(to_f64(y), y.shape(), c.i("block")), k.outputs[0]);
          },
  });
});

}  // namespace
}  // namespace ds::ops
