// Indexing ops: take_along_axis (gather), index_select, embedding, and the
// scatter-adds that are their gradients (scatter_add_along_axis, index_add).
// The scatter-adds write into zeros of a given axis extent, so a VJP needs no
// zeros tensor of the input's shape.
#include "ir/ops/index_check.h"
#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

bool extents_match(int64_t a, int64_t b) {
  return a == b || a == dyn || b == dyn;
}

void require_indices(const TensorType& t, const OpContext& c, const char* what) {
  DS_CHECK(is_integral(t.dtype), TypeError, c.where(), what, " must be an integer tensor, got ",
           t.str());
}

void require_summable(const TensorType& t, const OpContext& c) {
  DS_CHECK(t.dtype != DType::Bool, TypeError, c.where(), "updates must be numbers, got ", t.str());
}

// Indices (as read by to_f64) normalized into [0, extent), validated.
std::vector<int64_t> normalized(const Tensor& indices, int64_t extent, IndexRange range,
                                const OpContext& ctx, int axis) {
  const auto raw = to_f64(indices);
  std::vector<int64_t> out(raw.size());
  for (size_t i = 0; i < raw.size(); ++i)
    out[i] = checked_index(static_cast<int64_t>(raw[i]), extent, range, ctx,
                           static_cast<int64_t>(i), axis);
  return out;
}

int axis_of(const OpContext& c, size_t rank) {
  return normalize_axis(c.i("axis"), static_cast<int>(rank), c.where());
}

// take_along_axis / scatter_add_along_axis: indices and the other operand agree
// on every axis but `axis`.
void check_along_axis(const Shape& data, const Shape& indices, int axis, const OpContext& c,
                      const char* data_name) {
  DS_CHECK(data.size() == indices.size(), ShapeError, c.where(), "indices ", shape_str(indices),
           " must have the rank of ", data_name, " ", shape_str(data));
  for (int d = 0; d < static_cast<int>(data.size()); ++d)
    DS_CHECK(d == axis || extents_match(data[d], indices[d]), ShapeError, c.where(), "indices ",
             shape_str(indices), " and ", data_name, " ", shape_str(data),
             " must agree on every axis except ", axis, "; they differ on axis ", d);
}

void check_size(const OpContext& c) {
  DS_CHECK(c.i("size") >= 0, ValueError, c.where(), "size must be >= 0, got ", c.i("size"));
}

// take_along_axis (an index per output element) and index_select (one index per
// position along the axis): out[o, j, i] = x[o, index, i].
enum class Indexing { PerElement, PerPosition };

void gather_reference(const KernelCall& k, Indexing indexing) {
  const int axis = axis_of(k.ctx, k.inputs[0].ndim());
  const AxisSplit xs = split_at(k.inputs[0].shape(), axis);
  const AxisSplit os = split_at(k.outputs[0].shape(), axis);
  const auto idx = normalized(k.inputs[1], xs.extent, IndexRange::AllowNegative, k.ctx, axis);
  const auto x = to_f64(k.inputs[0]);
  std::vector<double> out(static_cast<size_t>(k.outputs[0].numel()));
  for (int64_t o = 0; o < os.outer; ++o)
    for (int64_t j = 0; j < os.extent; ++j)
      for (int64_t i = 0; i < os.inner; ++i) {
        const int64_t at = (o * os.extent + j) * os.inner + i;
        const int64_t from = idx[indexing == Indexing::PerElement ? at : j];
        out[at] = x[(o * xs.extent + from) * xs.inner + i];
      }
  from_f64(out, k.outputs[0]);
}

// Their gradients, scatter_add_along_axis and index_add: zeros of extent `size`
// on the axis, each update added at its index.
void scatter_add_reference(const KernelCall& k, Indexing indexing) {
  const int axis = axis_of(k.ctx, k.inputs[1].ndim());
  const AxisSplit us = split_at(k.inputs[1].shape(), axis);
  const int64_t size = k.ctx.i("size");
  const auto idx = normalized(k.inputs[0], size, IndexRange::AllowNegative, k.ctx, axis);
  const auto upd = to_f64(k.inputs[1]);
  std::vector<double> out(static_cast<size_t>(k.outputs[0].numel()), 0.0);
  for (int64_t o = 0; o < us.outer; ++o)
    for (int64_t j = 0; j < us.extent; ++j)
      for (int64_t i = 0; i < us.inner; ++i) {
        const int64_t at = (o * us.extent + j) * us.inner + i;
        const int64_t to = idx[indexing == Indexing::PerElement ? at : j];
        out[(o * size + to) * us.inner + i] += upd[at];
      }
  from_f64(out, k.outputs[0]);
}

// A gather's VJP: its scatter-add twin into the input's extent on the axis.
VjpFn gather_vjp(const char* scatter) {
  return [scatter](const VjpArgs& a) -> std::vector<Tensor> {
    const Tensor& x = a.inputs[0];
    const int axis = normalize_axis(a.ctx.i("axis"), x.ndim(), "");
    return {apply1(scatter, {a.inputs[1], a.grads[0]},
                   {{"axis", int64_t{axis}}, {"size", x.shape()[axis]}}),
            Tensor()};
  };
}

// The checks both scatter-adds make on (indices, updates); returns the axis.
int check_scatter(const OpContext& c) {
  require_indices(c.inputs[0], c, "indices");
  require_summable(c.inputs[1], c);
  check_size(c);
  DS_CHECK(!c.inputs[1].shape.empty(), ShapeError, c.where(), "updates must have rank >= 1");
  return axis_of(c, c.inputs[1].shape.size());
}

// The scatter-adds' output: the updates' shape with `size` on the axis.
std::vector<TensorType> scatter_output(const OpContext& c, int axis) {
  Shape out = c.inputs[1].shape;
  out[axis] = c.i("size");
  return one(c.inputs[1].dtype, out);
}

const OpRegistrar reg([] {
  register_op({
      .name = "take_along_axis",
      .num_inputs = 2,
      .attrs = {{"axis", AttrKind::Int, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            const Shape &x = c.inputs[0].shape, &idx = c.inputs[1].shape;
            require_indices(c.inputs[1], c, "indices");
            DS_CHECK(!x.empty(), ShapeError, c.where(), "input must have rank >= 1");
            const int axis = axis_of(c, x.size());
            check_along_axis(x, idx, axis, c, "input");
            Shape out = idx;
            for (int d = 0; d < static_cast<int>(out.size()); ++d)
              if (d != axis && out[d] == dyn) out[d] = x[d];
            return one(c.inputs[0].dtype, out);
          },
      .reference = [](const KernelCall& k) { gather_reference(k, Indexing::PerElement); },
      .vjp = gather_vjp("scatter_add_along_axis"),
      .onnx = "GatherElements",
  });

  register_op({
      .name = "scatter_add_along_axis",
      .num_inputs = 2,
      .attrs = {{"axis", AttrKind::Int, std::nullopt}, {"size", AttrKind::Int, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            const Shape &idx = c.inputs[0].shape, &upd = c.inputs[1].shape;
            const int axis = check_scatter(c);
            check_along_axis(upd, idx, axis, c, "updates");
            for (int d = 0; d < static_cast<int>(upd.size()); ++d)
              DS_CHECK(extents_match(upd[d], idx[d]), ShapeError, c.where(), "indices ",
                       shape_str(idx), " and updates ", shape_str(upd), " must have one shape");
            return scatter_output(c, axis);
          },
      .reference = [](const KernelCall& k) { scatter_add_reference(k, Indexing::PerElement); },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        return {Tensor(), take_along_axis(a.grads[0], a.inputs[0], a.ctx.i("axis"))};
      },
  });

  register_op({
      .name = "index_select",
      .num_inputs = 2,
      .attrs = {{"axis", AttrKind::Int, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            const Shape &x = c.inputs[0].shape, &idx = c.inputs[1].shape;
            require_indices(c.inputs[1], c, "indices");
            DS_CHECK(idx.size() == 1, ShapeError, c.where(), "indices must be 1-D, got ",
                     shape_str(idx));
            DS_CHECK(!x.empty(), ShapeError, c.where(), "input must have rank >= 1");
            Shape out = x;
            out[axis_of(c, x.size())] = idx[0];
            return one(c.inputs[0].dtype, out);
          },
      .reference = [](const KernelCall& k) { gather_reference(k, Indexing::PerPosition); },
      .vjp = gather_vjp("index_add"),
      .onnx = "Gather",
  });

  register_op({
      .name = "index_add",
      .num_inputs = 2,
      .attrs = {{"axis", AttrKind::Int, std::nullopt}, {"size", AttrKind::Int, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            const Shape &idx = c.inputs[0].shape, &upd = c.inputs[1].shape;
            const int axis = check_scatter(c);
            DS_CHECK(idx.size() == 1, ShapeError, c.where(), "indices must be 1-D, got ",
                     shape_str(idx));
            DS_CHECK(extents_match(upd[axis], idx[0]), ShapeError, c.where(), "updates ",
                     shape_str(upd), " has extent ", upd[axis], " on axis ", axis,
                     " but there are ", idx[0], " indices");
            return scatter_output(c, axis);
          },
      .reference = [](const KernelCall& k) { scatter_add_reference(k, Indexing::PerPosition); },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        return {Tensor(), index_select(a.grads[0], a.ctx.i("axis"), a.inputs[0])};
      },
  });

  register_op({
      .name = "embedding",
      .num_inputs = 2,
      .infer =
          [](const OpContext& c) {
            const Shape &idx = c.inputs[0].shape, &w = c.inputs[1].shape;
            require_indices(c.inputs[0], c, "indices");
            DS_CHECK(!w.empty(), ShapeError, c.where(),
                     "weight must have rank >= 1 ([vocab, dim]), got ", shape_str(w));
            Shape out = idx;
            out.insert(out.end(), w.begin() + 1, w.end());
            return one(c.inputs[1].dtype, out);
          },
      .reference =
          [](const KernelCall& k) {
            const AxisSplit ws = split_at(k.inputs[1].shape(), 0);
            const auto idx = normalized(k.inputs[0], ws.extent, IndexRange::NonNegative, k.ctx, 0);
            const auto w = to_f64(k.inputs[1]);
            std::vector<double> out(static_cast<size_t>(k.outputs[0].numel()));
            for (size_t j = 0; j < idx.size(); ++j)
              for (int64_t i = 0; i < ws.inner; ++i)
                out[j * ws.inner + i] = w[idx[j] * ws.inner + i];
            from_f64(out, k.outputs[0]);
          },
      .vjp = [](const VjpArgs& a) -> std::vector<Tensor> {
        const Tensor& w = a.inputs[1];
        Shape rows = w.shape();
        rows[0] = -1;
        return {Tensor(),
                apply1("index_add", {reshape(a.inputs[0], {-1}), reshape(a.grads[0], rows)},
                       {{"axis", int64_t{0}}, {"size", w.shape()[0]}})};
      },
  });
});

}  // namespace
}  // namespace ops

Tensor take_along_axis(const Tensor& x, const Tensor& indices, int64_t axis) {
  return apply1("take_along_axis", {x, indices}, {{"axis", axis}});
}
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& indices) {
  return apply1("index_select", {x, indices}, {{"axis", axis}});
}
Tensor embedding(const Tensor& indices, const Tensor& weight) {
  return apply1("embedding", {indices, weight});
}

}  // namespace ds
