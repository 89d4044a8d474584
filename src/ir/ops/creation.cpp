// Creation ops: arange, full (zeros/ones), one_hot.
#include <algorithm>
#include <cmath>

#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

int64_t arange_length(double start, double stop, double step) {
  return std::max<int64_t>(0, static_cast<int64_t>(std::ceil((stop - start) / step)));
}

const OpRegistrar reg([] {
  register_op({
      .name = "arange",
      .num_inputs = 0,
      .attrs = {{"start", AttrKind::Float, 0.0},
                {"stop", AttrKind::Float, std::nullopt},
                {"step", AttrKind::Float, 1.0},
                {"dtype", AttrKind::DType, DType::Float32}},
      .infer =
          [](const OpContext& c) {
            const double start = c.f("start"), stop = c.f("stop"), step = c.f("step");
            DS_CHECK(step != 0 && std::isfinite(step), ValueError, c.where(),
                     "step must be finite and non-zero, got ", step);
            DS_CHECK(std::isfinite(start) && std::isfinite(stop), ValueError, c.where(),
                     "start and stop must be finite, got ", start, " and ", stop);
            DS_CHECK(c.dtype("dtype") != DType::Bool, TypeError, c.where(),
                     "dtype bool is not a number type");
            return one(c.dtype("dtype"), {arange_length(start, stop, step)});
          },
      .reference =
          [](const KernelCall& k) {
            const double start = k.ctx.f("start"), step = k.ctx.f("step");
            std::vector<double> v(static_cast<size_t>(k.outputs[0].numel()));
            for (size_t i = 0; i < v.size(); ++i) v[i] = start + static_cast<double>(i) * step;
            from_f64(v, k.outputs[0]);
          },
      .onnx = "Range",
  });

  register_op({
      .name = "full",
      .num_inputs = 0,
      .attrs = {{"shape", AttrKind::Ints, std::nullopt},
                {"value", AttrKind::Float, std::nullopt},
                {"dtype", AttrKind::DType, DType::Float32}},
      .infer =
          [](const OpContext& c) {
            const auto& shape = c.ints("shape");
            for (int64_t d : shape)
              DS_CHECK(d >= 0, ShapeError, c.where(), "shape must be static and non-negative, got ",
                       shape_str(shape));
            return one(c.dtype("dtype"), shape);
          },
      .reference =
          [](const KernelCall& k) {
            std::vector<double> v(static_cast<size_t>(k.outputs[0].numel()), k.ctx.f("value"));
            from_f64(v, k.outputs[0]);
          },
      .onnx = "ConstantOfShape",
  });

  register_op({
      .name = "one_hot",
      .num_inputs = 1,
      .attrs = {{"num_classes", AttrKind::Int, std::nullopt},
                {"dtype", AttrKind::DType, DType::Float32}},
      .infer =
          [](const OpContext& c) {
            DS_CHECK(is_integral(c.inputs[0].dtype), TypeError, c.where(),
                     "indices must be an integer tensor, got ", c.inputs[0].str());
            DS_CHECK(c.i("num_classes") > 0, ValueError, c.where(),
                     "num_classes must be positive, got ", c.i("num_classes"));
            Shape s = c.inputs[0].shape;
            s.push_back(c.i("num_classes"));
            return one(c.dtype("dtype"), s);
          },
      .reference =
          [](const KernelCall& k) {
            const int64_t n = k.ctx.i("num_classes");
            const auto idx = to_f64(k.inputs[0]);
            std::vector<double> v(idx.size() * static_cast<size_t>(n), 0.0);
            for (size_t i = 0; i < idx.size(); ++i) {
              DS_CHECK(idx[i] >= 0 && idx[i] < static_cast<double>(n), ValueError, k.ctx.where(),
                       "index ", static_cast<int64_t>(idx[i]), " at position ", i,
                       " is out of range for num_classes ", n);
              v[i * n + static_cast<size_t>(idx[i])] = 1.0;
            }
            from_f64(v, k.outputs[0]);
          },
      .onnx = "OneHot",
  });
});

}  // namespace
}  // namespace ops

Tensor arange(double start, double stop, double step, DType dtype) {
  return apply1("arange", {}, {{"start", start}, {"stop", stop}, {"step", step}, {"dtype", dtype}});
}
Tensor full(const Shape& shape, double value, DType dtype) {
  return apply1("full", {}, {{"shape", shape}, {"value", value}, {"dtype", dtype}});
}
Tensor zeros(const Shape& shape, DType dtype) {
  return full(shape, 0.0, dtype);
}
Tensor ones(const Shape& shape, DType dtype) {
  return full(shape, 1.0, dtype);
}
Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype) {
  return apply1("one_hot", {indices}, {{"num_classes", num_classes}, {"dtype", dtype}});
}

}  // namespace ds
