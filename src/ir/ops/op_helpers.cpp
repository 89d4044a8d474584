#include "ir/ops/op_helpers.h"

#include <algorithm>

namespace ds::ops {

std::vector<double> to_f64(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  if (v.empty()) return v;
  Tensor staged = Tensor::from_blob(v.data(), t.shape(), contiguous_strides(t.shape()),
                                    DType::Float64, nullptr);
  copy_into(t, staged);
  return v;
}

void from_f64(const std::vector<double>& v, Tensor& out) {
  if (v.empty()) return;
  Tensor staged = Tensor::from_blob(const_cast<double*>(v.data()), out.shape(),
                                    contiguous_strides(out.shape()), DType::Float64, nullptr);
  if (is_integral(out.dtype())) {
    // Truncate toward zero explicitly (C++ float->int conversion of out-of-range is UB).
    std::vector<double> t(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      t[i] = std::isfinite(v[i]) ? std::trunc(v[i]) : 0.0;
    Tensor tt = Tensor::from_blob(t.data(), out.shape(), contiguous_strides(out.shape()),
                                  DType::Float64, nullptr);
    copy_into(tt, out);
    return;
  }
  copy_into(staged, out);
}

std::vector<int64_t> broadcast_index(const Shape& in_shape, const Shape& out_shape) {
  const int64_t n = numel(out_shape);
  std::vector<int64_t> idx(static_cast<size_t>(std::max<int64_t>(n, 0)));
  const int nd = static_cast<int>(out_shape.size());
  const int off = nd - static_cast<int>(in_shape.size());
  Shape in_strides = contiguous_strides(in_shape);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, src = 0;
    for (int d = nd - 1; d >= 0; --d) {
      const int64_t c = rem % out_shape[d];
      rem /= out_shape[d];
      if (d >= off && in_shape[d - off] != 1) src += c * in_strides[d - off];
    }
    idx[i] = src;
  }
  return idx;
}

std::vector<int> norm_axes(const std::vector<int64_t>& axes, int rank, const std::string& where) {
  std::vector<int> out;
  if (axes.empty()) {
    for (int i = 0; i < rank; ++i) out.push_back(i);
    return out;
  }
  for (int64_t a : axes) out.push_back(normalize_axis(a, rank, where));
  std::sort(out.begin(), out.end());
  DS_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), ValueError, where,
           "repeated axis in the axis list");
  return out;
}

DType float_result(DType in) { return is_floating(in) ? in : DType::Float32; }

Tensor unbroadcast(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int extra = grad.ndim() - static_cast<int>(shape.size());
  std::vector<int64_t> axes;
  for (int d = 0; d < grad.ndim(); ++d)
    if (d < extra || (shape[d - extra] == 1 && grad.shape()[d] != 1)) axes.push_back(d);
  Tensor g = axes.empty() ? grad : sum(grad, axes, true);
  if (extra > 0 || g.shape() != shape) g = reshape(g, shape);
  return g;
}

}  // namespace ds::ops
