// Shape ops: reshape, permute, broadcast, concat/split, slicing, indexing, padding.
#include <limits>

#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

Shape resolve_reshape(const Shape& in, const Shape& target, const std::string& where) {
  Shape out = target;
  int infer = -1;
  int64_t known = 1;
  const bool in_dynamic = !is_static(in);
  for (int i = 0; i < static_cast<int>(out.size()); ++i) {
    if (out[i] == -1) {
      DS_CHECK(infer < 0, ShapeError, where, "more than one -1 in target shape ", shape_str(target));
      infer = i;
    } else {
      DS_CHECK(out[i] >= 0, ShapeError, where, "invalid extent ", out[i], " in ", shape_str(target));
      known *= out[i];
    }
  }
  if (in_dynamic) {
    // A symbolic input extent flows into the inferred (-1) extent.
    return out;
  }
  const int64_t n = numel(in);
  if (infer >= 0) {
    DS_CHECK(known > 0 && n % known == 0, ShapeError, where, "cannot reshape ", shape_str(in),
             " into ", shape_str(target));
    out[infer] = n / known;
  }
  DS_CHECK(numel(out) == n, ShapeError, where, "cannot reshape ", shape_str(in), " (", n,
           " elements) into ", shape_str(target));
  return out;
}

}  // namespace

const OpRegistrar reg([] {
  register_op({
      .name = "reshape",
      .traits = kShapeOnly | kFusible,
      .num_inputs = 1,
      .attrs = {{"shape", AttrKind::Ints, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            return one(c.inputs[0].dtype,
                       resolve_reshape(c.inputs[0].shape, c.ints("shape"), c.where()));
          },
      .reference = [](const KernelCall& k) {
        Tensor src = k.inputs[0].reshape(k.outputs[0].shape());
        copy_into(src, k.outputs[0]);
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        return {reshape(a.grads[0], a.inputs[0].shape())};
      },
      .onnx = "Reshape",
  });

  register_op({
      .name = "permute",
      .traits = kShapeOnly | kFusible,
      .num_inputs = 1,
      .attrs = {{"axes", AttrKind::Ints, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            const Shape& in = c.inputs[0].shape;
            const auto& axes = c.ints("axes");
            DS_CHECK(axes.size() == in.size(), ValueError, c.where(), axes.size(),
                     " axes given for rank ", in.size());
            Shape out(in.size());
            std::vector<bool> seen(in.size());
            for (size_t i = 0; i < axes.size(); ++i) {
              const int a = normalize_axis(axes[i], static_cast<int>(in.size()), c.where());
              DS_CHECK(!seen[a], ValueError, c.where(), "axis ", axes[i], " repeated");
              seen[a] = true;
              out[i] = in[a];
            }
            return one(c.inputs[0].dtype, out);
          },
      .reference = [](const KernelCall& k) {
        copy_into(k.inputs[0].permute(k.ctx.ints("axes")), k.outputs[0]);
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        const auto& axes = a.ctx.ints("axes");
        std::vector<int64_t> inv(axes.size());
        for (size_t i = 0; i < axes.size(); ++i)
          inv[normalize_axis(axes[i], static_cast<int>(axes.size()), "")] = static_cast<int64_t>(i);
        return {permute(a.grads[0], inv)};
      },
      .onnx = "Transpose",
  });

  register_op({
      .name = "broadcast_to",
      .traits = kShapeOnly | kFusible,
      .num_inputs = 1,
      .attrs = {{"shape", AttrKind::Ints, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            const Shape& target = c.ints("shape");
            Shape b = broadcast_shapes(c.inputs[0].shape, target, c.where());
            DS_CHECK(b.size() == target.size(), ShapeError, c.where(), "cannot broadcast ",
                     shape_str(c.inputs[0].shape), " to ", shape_str(target));
            for (size_t i = 0; i < b.size(); ++i)
              DS_CHECK(target[i] == dyn || b[i] == target[i], ShapeError, c.where(),
                       "cannot broadcast ", shape_str(c.inputs[0].shape), " to ", shape_str(target));
            return one(c.inputs[0].dtype, target);
          },
      .reference = [](const KernelCall& k) {
        const Tensor& x = k.inputs[0];
        const Shape& out = k.outputs[0].shape();
        const int extra = static_cast<int>(out.size()) - x.ndim();
        Shape st(out.size(), 0);
        for (int d = 0; d < x.ndim(); ++d)
          st[d + extra] = x.shape()[d] == 1 ? 0 : x.strides()[d];
        Tensor v = Tensor::from_blob(x.raw_data(), out, st, x.dtype(), nullptr);
        copy_into(v, k.outputs[0]);
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        return {unbroadcast(a.grads[0], a.inputs[0].shape())};
      },
      .onnx = "Expand",
  });

  register_op({
      .name = "slice",
      .traits = kShapeOnly | kFusible,
      .num_inputs = 1,
      .attrs = {{"axis", AttrKind::Int, std::nullopt},
                {"start", AttrKind::Int, int64_t{0}},
                {"stop", AttrKind::Int, std::numeric_limits<int64_t>::max()},
                {"step", AttrKind::Int, int64_t{1}}},
      .infer =
          [](const OpContext& c) {
            Shape s = c.inputs[0].shape;
            const int a = normalize_axis(c.i("axis"), static_cast<int>(s.size()), c.where());
            const int64_t step = c.i("step");
            DS_CHECK(step > 0, ValueError, c.where(), "step must be positive, got ", step);
            DS_CHECK(s[a] != dyn, ShapeError, c.where(), "cannot slice a symbolic axis");
            const int64_t n = s[a];
            auto clamp = [n](int64_t v) { return std::clamp(v < 0 ? v + n : v, int64_t{0}, n); };
            const int64_t b = clamp(c.i("start")), e = clamp(c.i("stop"));
            s[a] = e > b ? (e - b + step - 1) / step : 0;
            return one(c.inputs[0].dtype, s);
          },
      .reference = [](const KernelCall& k) {
        copy_into(k.inputs[0].slice(k.ctx.i("axis"), k.ctx.i("start"), k.ctx.i("stop"),
                                    k.ctx.i("step")),
                  k.outputs[0]);
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        // Scatter the gradient back: pad before/after, interleave zeros for step > 1.
        const Tensor& x = a.inputs[0];
        const int ax = normalize_axis(a.ctx.i("axis"), x.ndim(), "");
        const int64_t n = x.shape()[ax], step = a.ctx.i("step");
        auto clamp = [n](int64_t v) { return std::clamp(v < 0 ? v + n : v, int64_t{0}, n); };
        const int64_t b = clamp(a.ctx.i("start"));
        Tensor g = a.grads[0];
        const int64_t m = g.shape()[ax];
        if (step > 1 && m > 0) {
          // [.., m, ..] -> [.., m, step, ..] with zeros after each element -> [.., m*step, ..]
          Tensor gu = unsqueeze(g, ax + 1);
          std::vector<int64_t> pads(2 * gu.ndim(), 0);
          pads[2 * (ax + 1) + 1] = step - 1;
          g = reshape(pad(gu, pads), [&] {
            Shape s = g.shape();
            s[ax] = m * step;
            return s;
          }());
          g = slice(g, ax, 0, (m - 1) * step + 1);
        }
        std::vector<int64_t> pads(2 * x.ndim(), 0);
        pads[2 * ax] = b;
        pads[2 * ax + 1] = n - b - g.shape()[ax];
        return {pad(g, pads)};
      },
      .onnx = "Slice",
  });

  register_op({
      .name = "pad",
      .traits = kShapeOnly | kFusible,
      .num_inputs = 1,
      .attrs = {{"pads", AttrKind::Ints, std::nullopt},
                {"mode", AttrKind::String, std::string("constant")},
                {"value", AttrKind::Float, 0.0}},
      .infer =
          [](const OpContext& c) {
            Shape s = c.inputs[0].shape;
            const auto& p = c.ints("pads");
            DS_CHECK(p.size() <= 2 * s.size() && p.size() % 2 == 0, ValueError, c.where(),
                     "pads needs (before, after) pairs for at most ", s.size(), " axes, got ",
                     p.size(), " values");
            const std::string& mode = c.s("mode");
            DS_CHECK(mode == "constant" || mode == "reflect", ValueError, c.where(),
                     "mode must be 'constant' or 'reflect', got '", mode, "'");
            for (size_t i = 0; i < p.size() / 2; ++i) {
              DS_CHECK(p[2 * i] >= 0 && p[2 * i + 1] >= 0, ValueError, c.where(),
                       "negative padding on axis ", i);
              if (s[i] == dyn) {
                DS_CHECK(p[2 * i] == 0 && p[2 * i + 1] == 0, ShapeError, c.where(),
                         "cannot pad the symbolic axis ", i);
                continue;
              }
              if (mode == "reflect")
                DS_CHECK(p[2 * i] < s[i] && p[2 * i + 1] < s[i], ValueError, c.where(),
                         "reflect padding on axis ", i, " must be smaller than its extent ", s[i]);
              s[i] += p[2 * i] + p[2 * i + 1];
            }
            return one(c.inputs[0].dtype, s);
          },
      .reference = [](const KernelCall& k) {
        const Tensor& x = k.inputs[0];
        const Shape& in = x.shape();
        const Shape& out = k.outputs[0].shape();
        const auto& p = k.ctx.ints("pads");
        const bool reflect = k.ctx.s("mode") == "reflect";
        auto xv = to_f64(x);
        const Shape ist = contiguous_strides(in);
        std::vector<double> r(static_cast<size_t>(numel(out)));
        for (int64_t i = 0; i < static_cast<int64_t>(r.size()); ++i) {
          int64_t rem = i, src = 0;
          bool inside = true;
          for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
            int64_t c = rem % out[d] - (2 * d < static_cast<int>(p.size()) ? p[2 * d] : 0);
            rem /= out[d];
            if (c < 0 || c >= in[d]) {
              if (!reflect) {
                inside = false;
                break;
              }
              c = c < 0 ? -c : 2 * (in[d] - 1) - c;
            }
            src += c * ist[d];
          }
          r[i] = inside ? xv[src] : k.ctx.f("value");
        }
        from_f64(r, k.outputs[0]);
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        DS_CHECK(a.ctx.s("mode") == "constant", UnavailableError,
                 "pad: the gradient of reflect padding is not implemented");
        const auto& p = a.ctx.ints("pads");
        Tensor g = a.grads[0];
        for (size_t d = 0; d < p.size() / 2; ++d)
          if (p[2 * d] || p[2 * d + 1])
            g = slice(g, static_cast<int64_t>(d), p[2 * d], p[2 * d] + a.inputs[0].shape()[d]);
        return {g};
      },
      .onnx = "Pad",
  });
});

}  // namespace ops

Tensor permute(const Tensor& x, const std::vector<int64_t>& axes) {
  return apply1("permute", {x}, {{"axes", axes}});
}
Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  std::vector<int64_t> axes(x.ndim());
  for (int i = 0; i < x.ndim(); ++i) axes[i] = i;
  std::swap(axes[normalize_axis(a, x.ndim(), "transpose")], axes[normalize_axis(b, x.ndim(), "transpose")]);
  return permute(x, axes);
}
Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  return apply1("broadcast_to", {x}, {{"shape", shape}});
}
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step) {
  return apply1("slice", {x}, {{"axis", axis}, {"start", start}, {"stop", stop}, {"step", step}});
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, const std::string& mode,
           double value) {
  return apply1("pad", {x}, {{"pads", pads}, {"mode", mode}, {"value", value}});
}
Tensor unsqueeze(const Tensor& x, int64_t axis) {
  const int a = normalize_axis(axis, x.ndim() + 1, "unsqueeze");
  Shape s = x.shape();
  s.insert(s.begin() + a, 1);
  return reshape(x, s);
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  return apply1("reshape", {x}, {{"shape", shape}});
}

}  // namespace ds
