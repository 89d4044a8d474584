// Reductions over any axes with keepdims; softmax family.
#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

Shape reduced_shape(const Shape& in, const std::vector<int>& axes, bool keep) {
  Shape out;
  for (int d = 0; d < static_cast<int>(in.size()); ++d) {
    const bool r = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (!r)
      out.push_back(in[d]);
    else if (keep)
      out.push_back(1);
  }
  return out;
}

// Calls f(out_index, values) for each output element with the reduced values.
template <typename F>
void for_each_group(const std::vector<double>& x, const Shape& in, const std::vector<int>& axes,
                    F&& f) {
  const int nd = static_cast<int>(in.size());
  Shape kept_shape, red_shape;
  std::vector<int> kept_axes;
  for (int d = 0; d < nd; ++d) {
    if (std::find(axes.begin(), axes.end(), d) != axes.end())
      red_shape.push_back(in[d]);
    else {
      kept_shape.push_back(in[d]);
      kept_axes.push_back(d);
    }
  }
  const Shape st = contiguous_strides(in);
  const int64_t n_out = numel(kept_shape), n_red = numel(red_shape);
  std::vector<double> vals(static_cast<size_t>(n_red));
  for (int64_t o = 0; o < n_out; ++o) {
    int64_t base = 0, rem = o;
    for (int k = static_cast<int>(kept_axes.size()) - 1; k >= 0; --k) {
      base += (rem % kept_shape[k]) * st[kept_axes[k]];
      rem /= kept_shape[k];
    }
    for (int64_t r = 0; r < n_red; ++r) {
      int64_t off = base, rr = r;
      for (int k = static_cast<int>(axes.size()) - 1; k >= 0; --k) {
        off += (rr % red_shape[k]) * st[axes[k]];
        rr /= red_shape[k];
      }
      vals[r] = x[off];
    }
    f(o, vals);
  }
}

}  // namespace

const OpRegistrar reg([] {
  register_op({
      .name = "sum",
      .traits = kReduction | kFusible,
      .num_inputs = 1,
      .attrs = {{"axes", AttrKind::Ints, std::vector<int64_t>{}},
                {"keepdims", AttrKind::Bool, false}},
      .infer =
          [](const OpContext& c) {
            const auto& in = c.inputs[0];
            auto axes = norm_axes(c.ints("axes"), static_cast<int>(in.shape.size()), c.where());
            DType t = in.dtype;
            if (t == DType::Bool || (is_integral(t) && t != DType::Int64)) t = DType::Int64;
            return one(t, reduced_shape(in.shape, axes, c.b("keepdims")));
          },
      .reference =
          [](const KernelCall& k) {
            auto axes = norm_axes(k.ctx.ints("axes"), k.inputs[0].ndim(), "");
            auto x = to_f64(k.inputs[0]);
            std::vector<double> r(static_cast<size_t>(k.outputs[0].numel()));
            for_each_group(x, k.inputs[0].shape(), axes, [&](int64_t o, const std::vector<double>& v) {
              double s = 0;
              for (double e : v) s += e;
              r[o] = s;
            });
            from_f64(r, k.outputs[0]);
          },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            const Tensor& x = a.inputs[0];
            Tensor g = a.grads[0];
            if (!a.ctx.b("keepdims")) {
              auto axes = norm_axes(a.ctx.ints("axes"), x.ndim(), "");
              g = reshape(g, reduced_shape(x.shape(), axes, true));
            }
            return {broadcast_to(g, x.shape())};
          },
      .onnx = "ReduceSum",
  });
});

}  // namespace ops

Tensor sum(const Tensor& x, const Axes& axes, bool keepdims) {
  return apply1("sum", {x}, {{"axes", axes}, {"keepdims", keepdims}});
}

}  // namespace ds
