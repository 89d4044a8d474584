// Shape ops: reshape, flatten, squeeze, permute, broadcast, concat/stack/split, slicing,
// padding, tril/triu. Indexing ops (gather, scatter) live in index.cpp.
#include <algorithm>
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

// Extents agree when equal or when either is symbolic (checked at run time).
bool extents_match(int64_t a, int64_t b) { return a == b || a == dyn || b == dyn; }

int64_t sum_extents(int64_t a, int64_t b) { return a == dyn || b == dyn ? dyn : a + b; }

// Checks that `t` matches `first` on every axis except `skip` (-1: none).
void check_same_extents(const TensorType& first, const TensorType& t, int skip, size_t index,
                        const OpContext& c) {
  DS_CHECK(t.shape.size() == first.shape.size(), ShapeError, c.where(), "input ", index,
           " has rank ", t.shape.size(), " but input 0 has rank ", first.shape.size(), " (",
           shape_str(t.shape), " vs ", shape_str(first.shape), ")");
  for (int d = 0; d < static_cast<int>(t.shape.size()); ++d)
    DS_CHECK(d == skip || extents_match(t.shape[d], first.shape[d]), ShapeError, c.where(),
             "input ", index, " has shape ", shape_str(t.shape), " but input 0 has ",
             shape_str(first.shape), "; they must agree on axis ", d);
}

DType promoted_dtype(const std::vector<TensorType>& in) {
  DType t = in[0].dtype;
  for (const auto& x : in) t = promote_types(t, x.dtype);
  return t;
}

// The gradient of a concat/stack input: cast back to its dtype; none for integers.
Tensor grad_as(const Tensor& g, const Tensor& input) {
  if (!is_floating(input.dtype())) return Tensor();
  return cast(g, input.dtype());
}

// Keeps x[..., i, j] where keep(j - i), zero elsewhere (over the last two axes).
template <typename Keep> void triangle_reference(const KernelCall& k, Keep keep) {
  const Shape& s = k.inputs[0].shape();
  const int64_t rows = s[s.size() - 2], cols = s[s.size() - 1];
  auto v = to_f64(k.inputs[0]);
  for (size_t idx = 0; idx < v.size(); ++idx) {
    const int64_t j = static_cast<int64_t>(idx) % cols;
    const int64_t i = (static_cast<int64_t>(idx) / cols) % rows;
    if (!keep(j - i)) v[idx] = 0.0;
  }
  from_f64(v, k.outputs[0]);
}

std::vector<TensorType> infer_triangle(const OpContext& c) {
  DS_CHECK(c.inputs[0].shape.size() >= 2, ShapeError, c.where(),
           "input must have rank >= 2 (a matrix or a batch of them), got ",
           shape_str(c.inputs[0].shape));
  return one(c.inputs[0].dtype, c.inputs[0].shape);
}

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

  register_op({
      .name = "flatten",
      .traits = kShapeOnly | kFusible,
      .num_inputs = 1,
      .attrs = {{"start_axis", AttrKind::Int, int64_t{1}}, {"end_axis", AttrKind::Int, int64_t{-1}}},
      .infer =
          [](const OpContext& c) {
            const Shape& in = c.inputs[0].shape;
            const int r = static_cast<int>(in.size());
            const int b = normalize_axis(c.i("start_axis"), r, c.where());
            const int e = normalize_axis(c.i("end_axis"), r, c.where());
            DS_CHECK(b <= e, ValueError, c.where(), "start_axis ", c.i("start_axis"),
                     " comes after end_axis ", c.i("end_axis"), " for rank ", r);
            Shape out(in.begin(), in.begin() + b);
            int64_t n = 1;
            for (int d = b; d <= e; ++d) n = (n == dyn || in[d] == dyn) ? dyn : n * in[d];
            out.push_back(n);
            out.insert(out.end(), in.begin() + e + 1, in.end());
            return one(c.inputs[0].dtype, out);
          },
      .reference = [](const KernelCall& k) {
        copy_into(k.inputs[0].reshape(k.outputs[0].shape()), k.outputs[0]);
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        return {reshape(a.grads[0], a.inputs[0].shape())};
      },
  });

  register_op({
      .name = "squeeze",
      .traits = kShapeOnly | kFusible,
      .num_inputs = 1,
      .attrs = {{"axes", AttrKind::Ints, std::vector<int64_t>{}}},
      .infer =
          [](const OpContext& c) {
            const Shape& in = c.inputs[0].shape;
            const int r = static_cast<int>(in.size());
            std::vector<bool> drop(in.size(), false);
            if (c.ints("axes").empty()) {
              for (int d = 0; d < r; ++d) drop[d] = in[d] == 1;
            } else {
              for (int d : norm_axes(c.ints("axes"), r, c.where())) {
                DS_CHECK(in[d] == 1, ShapeError, c.where(), "cannot squeeze axis ", d,
                         " of shape ", shape_str(in), ": its extent is ",
                         in[d] == dyn ? std::string("symbolic") : std::to_string(in[d]),
                         ", expected 1");
                drop[d] = true;
              }
            }
            Shape out;
            for (int d = 0; d < r; ++d)
              if (!drop[d]) out.push_back(in[d]);
            return one(c.inputs[0].dtype, out);
          },
      .reference = [](const KernelCall& k) {
        copy_into(k.inputs[0].reshape(k.outputs[0].shape()), k.outputs[0]);
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        return {reshape(a.grads[0], a.inputs[0].shape())};
      },
      .onnx = "Squeeze",
  });

  register_op({
      .name = "concat",
      .traits = kShapeOnly,
      .num_inputs = -1,
      .attrs = {{"axis", AttrKind::Int, int64_t{0}}},
      .infer =
          [](const OpContext& c) {
            DS_CHECK(!c.inputs.empty(), ValueError, c.where(), "needs at least one input");
            const TensorType& first = c.inputs[0];
            DS_CHECK(!first.shape.empty(), ShapeError, c.where(),
                     "cannot concatenate rank-0 tensors (use stack)");
            const int axis = normalize_axis(c.i("axis"), static_cast<int>(first.shape.size()),
                                            c.where());
            Shape out = first.shape;
            for (size_t i = 1; i < c.inputs.size(); ++i) {
              check_same_extents(first, c.inputs[i], axis, i, c);
              out[axis] = sum_extents(out[axis], c.inputs[i].shape[axis]);
            }
            return one(promoted_dtype(c.inputs), out);
          },
      .reference = [](const KernelCall& k) {
        const int axis = normalize_axis(k.ctx.i("axis"), k.outputs[0].ndim(), "");
        int64_t offset = 0;
        for (const Tensor& x : k.inputs) {
          Tensor dst = k.outputs[0].slice(axis, offset, offset + x.shape()[axis]);
          copy_into(x, dst);
          offset += x.shape()[axis];
        }
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        const int axis = normalize_axis(a.ctx.i("axis"), a.grads[0].ndim(), "");
        std::vector<Tensor> grads;
        int64_t offset = 0;
        for (const Tensor& x : a.inputs) {
          const int64_t n = x.shape()[axis];
          grads.push_back(grad_as(slice(a.grads[0], axis, offset, offset + n), x));
          offset += n;
        }
        return grads;
      },
      .onnx = "Concat",
  });

  register_op({
      .name = "stack",
      .traits = kShapeOnly,
      .num_inputs = -1,
      .attrs = {{"axis", AttrKind::Int, int64_t{0}}},
      .infer =
          [](const OpContext& c) {
            DS_CHECK(!c.inputs.empty(), ValueError, c.where(), "needs at least one input");
            const TensorType& first = c.inputs[0];
            for (size_t i = 1; i < c.inputs.size(); ++i) check_same_extents(first, c.inputs[i], -1, i, c);
            const int axis = normalize_axis(c.i("axis"), static_cast<int>(first.shape.size()) + 1,
                                            c.where());
            Shape out = first.shape;
            out.insert(out.begin() + axis, static_cast<int64_t>(c.inputs.size()));
            return one(promoted_dtype(c.inputs), out);
          },
      .reference = [](const KernelCall& k) {
        const int axis = normalize_axis(k.ctx.i("axis"), k.outputs[0].ndim(), "");
        for (size_t i = 0; i < k.inputs.size(); ++i) {
          const int64_t at = static_cast<int64_t>(i);
          Tensor dst = k.outputs[0].slice(axis, at, at + 1);
          copy_into(k.inputs[i].reshape(dst.shape()), dst);
        }
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        const int axis = normalize_axis(a.ctx.i("axis"), a.grads[0].ndim(), "");
        std::vector<Tensor> grads;
        for (size_t i = 0; i < a.inputs.size(); ++i) {
          const int64_t at = static_cast<int64_t>(i);
          Tensor g = reshape(slice(a.grads[0], axis, at, at + 1), a.inputs[i].shape());
          grads.push_back(grad_as(g, a.inputs[i]));
        }
        return grads;
      },
  });

  register_op({
      .name = "split",
      .traits = kShapeOnly,
      .num_inputs = 1,
      .attrs = {{"sizes", AttrKind::Ints, std::nullopt}, {"axis", AttrKind::Int, int64_t{0}}},
      .infer =
          [](const OpContext& c) {
            const Shape& in = c.inputs[0].shape;
            const int axis = normalize_axis(c.i("axis"), static_cast<int>(in.size()), c.where());
            const auto& sizes = c.ints("sizes");
            DS_CHECK(!sizes.empty(), ValueError, c.where(), "sizes must list at least one part");
            DS_CHECK(in[axis] != dyn, ShapeError, c.where(), "cannot split the symbolic axis ", axis);
            int64_t total = 0;
            std::vector<TensorType> outs;
            for (int64_t n : sizes) {
              DS_CHECK(n >= 0, ValueError, c.where(), "negative part size ", n);
              total += n;
              Shape s = in;
              s[axis] = n;
              outs.push_back({c.inputs[0].dtype, s});
            }
            DS_CHECK(total == in[axis], ShapeError, c.where(), "sizes add up to ", total,
                     " but axis ", axis, " of ", shape_str(in), " has extent ", in[axis]);
            return outs;
          },
      .reference = [](const KernelCall& k) {
        const int axis = normalize_axis(k.ctx.i("axis"), k.inputs[0].ndim(), "");
        int64_t offset = 0;
        for (Tensor& out : k.outputs) {
          const int64_t n = out.shape()[axis];
          copy_into(k.inputs[0].slice(axis, offset, offset + n), out);
          offset += n;
        }
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        const bool all = std::all_of(a.grads.begin(), a.grads.end(),
                                     [](const Tensor& g) { return g.defined(); });
        if (all) return {concat(a.grads, a.ctx.i("axis"))};
        // Parts without a gradient contribute zeros: pad each gradient to the full
        // extent and add (unlike a zeros tensor, this works with symbolic extents).
        const Tensor& x = a.inputs[0];
        const int axis = normalize_axis(a.ctx.i("axis"), x.ndim(), "");
        Tensor total;
        int64_t offset = 0;
        for (size_t i = 0; i < a.outputs.size(); ++i) {
          const int64_t n = a.outputs[i].shape()[axis];
          if (a.grads[i].defined()) {
            std::vector<int64_t> pads(2 * x.ndim(), 0);
            pads[2 * axis] = offset;
            pads[2 * axis + 1] = x.shape()[axis] - offset - n;
            const Tensor g = pad(a.grads[i], pads);
            total = total.defined() ? add(total, g) : g;
          }
          offset += n;
        }
        return {total};
      },
      .onnx = "Split",
  });

  register_op({
      .name = "tril",
      .traits = kFusible,
      .num_inputs = 1,
      .attrs = {{"k", AttrKind::Int, int64_t{0}}},
      .infer = infer_triangle,
      .reference = [](const KernelCall& k) {
        const int64_t diag = k.ctx.i("k");
        triangle_reference(k, [diag](int64_t j_minus_i) { return j_minus_i <= diag; });
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> { return {tril(a.grads[0], a.ctx.i("k"))}; },
  });

  register_op({
      .name = "triu",
      .traits = kFusible,
      .num_inputs = 1,
      .attrs = {{"k", AttrKind::Int, int64_t{0}}},
      .infer = infer_triangle,
      .reference = [](const KernelCall& k) {
        const int64_t diag = k.ctx.i("k");
        triangle_reference(k, [diag](int64_t j_minus_i) { return j_minus_i >= diag; });
      },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> { return {triu(a.grads[0], a.ctx.i("k"))}; },
  });
});

}  // namespace
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

Tensor flatten(const Tensor& x, int64_t start_axis, int64_t end_axis) {
  return apply1("flatten", {x}, {{"start_axis", start_axis}, {"end_axis", end_axis}});
}
Tensor squeeze(const Tensor& x, const Axes& axes) { return apply1("squeeze", {x}, {{"axes", axes}}); }
Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  return apply1("concat", xs, {{"axis", axis}});
}
Tensor stack(const std::vector<Tensor>& xs, int64_t axis) {
  return apply1("stack", xs, {{"axis", axis}});
}
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis) {
  return apply("split", {x}, {{"sizes", sizes}, {"axis", axis}});
}
Tensor tril(const Tensor& x, int64_t k) { return apply1("tril", {x}, {{"k", k}}); }
Tensor triu(const Tensor& x, int64_t k) { return apply1("triu", {x}, {{"k", k}}); }

}  // namespace ds
