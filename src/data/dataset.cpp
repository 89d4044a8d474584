#include <cstring>

#include "ds/data.h"

namespace ds::data {

namespace {

Shape with_leading(int64_t n, const Shape& rest) {
  Shape s{n};
  s.insert(s.end(), rest.begin(), rest.end());
  return s;
}

void check_index(int64_t index, int64_t size, const char* who) {
  DS_CHECK(index >= 0 && index < size, ValueError, who, ": index ", index,
           " is out of range for a dataset of ", size, " examples");
}

}  // namespace

Example Dataset::get_batch(std::span<const int64_t> indices) const {
  Example batch;
  for (size_t k = 0; k < indices.size(); ++k) {
    const Example ex = get(indices[k]);
    if (k == 0) {
      for (const Tensor& field : ex)
        batch.push_back(Tensor::empty(with_leading(static_cast<int64_t>(indices.size()),
                                                   field.shape()),
                                      field.dtype()));
    }
    DS_CHECK(ex.size() == batch.size(), ShapeError, "Dataset::get_batch: example ", indices[k],
             " has ", ex.size(), " fields, example ", indices[0], " has ", batch.size());
    for (size_t f = 0; f < ex.size(); ++f) {
      const Tensor& field = ex[f];
      Tensor& out = batch[f];
      const Shape row(out.shape().begin() + 1, out.shape().end());
      DS_CHECK(field.shape() == row && field.dtype() == out.dtype(), ShapeError,
               "Dataset::get_batch: field ", f, " of example ", indices[k], " is ",
               dtype_name(field.dtype()), shape_str(field.shape()), ", example ", indices[0],
               " has ", dtype_name(out.dtype()), shape_str(row));
      Tensor dst = out.slice(0, static_cast<int64_t>(k), static_cast<int64_t>(k) + 1).reshape(row);
      copy_into(field, dst);
    }
  }
  return batch;
}

TensorDataset::TensorDataset(std::vector<Tensor> tensors) {
  DS_CHECK(!tensors.empty(), ValueError, "TensorDataset: needs at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    DS_CHECK(t.defined() && !t.is_symbolic(), ValueError, "TensorDataset: tensor ", i,
             " is undefined or symbolic; a dataset holds concrete tensors");
    DS_CHECK(t.ndim() >= 1, ShapeError, "TensorDataset: tensor ", i,
             " is a scalar; examples are rows along axis 0");
    DS_CHECK(t.dim(0) == tensors[0].dim(0), ShapeError, "TensorDataset: tensor ", i, " has ",
             t.dim(0), " rows, tensor 0 has ", tensors[0].dim(0));
    tensors_.push_back(t.is_contiguous() ? t : t.contiguous());
  }
  size_ = tensors_[0].dim(0);
}

Example TensorDataset::get(int64_t index) const {
  check_index(index, size_, "TensorDataset::get");
  Example ex;
  for (const Tensor& t : tensors_) {
    const Shape row(t.shape().begin() + 1, t.shape().end());
    ex.push_back(t.slice(0, index, index + 1).reshape(row));
  }
  return ex;
}

Example TensorDataset::get_batch(std::span<const int64_t> indices) const {
  for (int64_t i : indices) check_index(i, size_, "TensorDataset::get_batch");
  Example batch;
  for (const Tensor& t : tensors_) {
    Shape shape = t.shape();
    shape[0] = static_cast<int64_t>(indices.size());
    Tensor out = Tensor::empty(shape, t.dtype());
    const size_t row_bytes = t.dim(0) > 0 ? t.nbytes() / static_cast<size_t>(t.dim(0)) : 0;
    const auto* src = static_cast<const char*>(t.raw_data());
    auto* dst = static_cast<char*>(out.raw_data());
    for (size_t k = 0; k < indices.size(); ++k)
      std::memcpy(dst + k * row_bytes, src + static_cast<size_t>(indices[k]) * row_bytes,
                  row_bytes);
    batch.push_back(std::move(out));
  }
  return batch;
}

}  // namespace ds::data
