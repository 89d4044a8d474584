// Tensor: ref-counted storage + shape + strides + dtype + device.
// A tensor is either concrete (it owns or views storage) or symbolic (a value of a
// Graph being built or traced); ops accept both, so the same code runs eagerly and
// builds graphs.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "ds/device.h"
#include "ds/dtype.h"
#include "ds/error.h"
#include "ds/shape.h"

namespace ds {

class Graph;
struct GraphData;

// A block of memory on one device. Freed through `deleter` (the pool, or a
// foreign owner such as a numpy array held through DLPack).
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  std::function<void(void*)> deleter;
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (deleter) deleter(data);
  }
};

// Allocates `nbytes` of CPU memory from the 64-byte-aligned pool.
std::shared_ptr<Storage> allocate_storage(size_t nbytes, Device device = Device::cpu());

// Where a symbolic tensor lives in its graph.
struct ValueRef {
  int node = -1;
  int output = 0;
  bool operator==(const ValueRef&) const = default;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::Float32;
  std::shared_ptr<GraphData> graph;  // set for symbolic tensors
  ValueRef value;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  // A 1-D float32 tensor, like ds.Tensor([1.0, 2.0, 3.0]).
  Tensor(std::initializer_list<float> values);

  static Tensor empty(const Shape& shape, DType dtype = DType::Float32,
                      Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::Float32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::Float32);
  static Tensor scalar(double value, DType dtype = DType::Float32);
  template <typename T> static Tensor from_vector(const std::vector<T>& v, const Shape& shape) {
    Tensor t = empty(shape, dtype_v<T>);
    DS_CHECK(static_cast<int64_t>(v.size()) == t.numel(), ShapeError, "from_vector: ", v.size(),
             " values do not fill shape ", shape_str(shape));
    std::copy(v.begin(), v.end(), t.data<T>());
    return t;
  }
  // Wraps memory owned elsewhere; `owner` is released when the storage dies.
  static Tensor from_blob(void* data, const Shape& shape, const Shape& strides, DType dtype,
                          std::function<void(void*)> release, Device device = Device::cpu());

  bool defined() const { return impl_ != nullptr; }
  bool is_symbolic() const { return impl_ && impl_->graph != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim(int i) const;
  int ndim() const { return static_cast<int>(impl().shape.size()); }
  const Shape& strides() const { return impl().strides; }
  DType dtype() const { return impl().dtype; }
  Device device() const;
  int64_t numel() const { return ds::numel(impl().shape); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  int64_t offset() const { return impl().offset; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  // Raw pointer to the first element (offset applied).
  void* raw_data() const;
  template <typename T> T* data() const {
    DS_CHECK(dtype_v<T> == dtype(), TypeError, "data<", dtype_name(dtype_v<T>),
             ">() on a tensor of dtype ", dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }
  template <typename T> T item() const;

  // Views that share storage (concrete) or graph ops (symbolic).
  Tensor reshape(const Shape& shape) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor permute(const std::vector<int64_t>& axes) const;
  Tensor slice(int64_t axis, int64_t start, int64_t stop, int64_t step = 1) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // The graph and value of a symbolic tensor.
  Graph graph() const;
  ValueRef value() const { return impl().value; }
  const TensorImpl& impl() const {
    DS_CHECK(impl_, ValueError, "use of an undefined (empty) Tensor");
    return *impl_;
  }
  TensorImpl& mutable_impl() { return const_cast<TensorImpl&>(impl()); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  std::string str() const;  // values, numpy-like

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Element i (in row-major logical order) of any tensor, as double.
double element_as_double(const Tensor& t, int64_t i);
// Copies `src` into contiguous `dst` of the same shape, converting the dtype.
void copy_into(const Tensor& src, Tensor& dst);

template <typename T> T Tensor::item() const {
  DS_CHECK(numel() == 1, ShapeError, "item(): tensor has ", numel(), " elements, expected 1");
  return static_cast<T>(element_as_double(*this, 0));
}

// Allocator statistics for the CPU pool.
struct MemoryStats {
  int64_t current_bytes = 0;   // live tensors
  int64_t peak_bytes = 0;      // high-water mark of current_bytes
  int64_t reserved_bytes = 0;  // held by the pool, live or cached
  int64_t allocations = 0;     // number of allocate calls
  int64_t pool_hits = 0;       // allocations served from the cache
};
MemoryStats memory_stats();
void reset_peak_memory();
void empty_cache();  // returns cached blocks to the system

}  // namespace ds
