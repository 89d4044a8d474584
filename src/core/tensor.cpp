#include "ds/tensor.h"

#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>

#include "core/device_hooks.h"
#include "core/strided.h"
#include "core/thread_pool.h"
#include "ds/graph.h"
#include "ds/ops.h"

namespace ds {

namespace {
std::shared_ptr<TensorImpl> make_impl(std::shared_ptr<Storage> st, const Shape& shape,
                                      const Shape& strides, int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(st);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return impl;
}

Tensor view(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset) {
  return Tensor(make_impl(t.storage(), shape, strides, offset, t.dtype()));
}
}  // namespace

Tensor::Tensor(std::initializer_list<float> values) {
  *this = from_vector(std::vector<float>(values), {static_cast<int64_t>(values.size())});
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    DS_CHECK(d >= 0, ShapeError, "Tensor::empty: shape ", shape_str(shape),
             " has a symbolic or negative extent; concrete tensors need static shapes");
  const size_t n = static_cast<size_t>(ds::numel(shape)) * dtype_size(dtype);
  return Tensor(make_impl(allocate_storage(n, device), shape, contiguous_strides(shape), 0, dtype));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T v = static_cast<T>(static_cast<float>(value));
    if constexpr (std::is_same_v<T, double> || std::is_integral_v<T>) v = static_cast<T>(value);
    std::fill_n(static_cast<T*>(t.raw_data()), t.numel(), v);
  });
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::from_blob(void* data, const Shape& shape, const Shape& strides, DType dtype,
                         std::function<void(void*)> release, Device device) {
  auto st = std::make_shared<Storage>();
  st->data = data;
  st->device = device;
  int64_t span = 1;
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] > 0) span += (shape[i] - 1) * std::abs(strides[i]);
  st->nbytes = static_cast<size_t>(span) * dtype_size(dtype);
  st->deleter = std::move(release);
  return Tensor(make_impl(std::move(st), shape, strides, 0, dtype));
}

int64_t Tensor::dim(int i) const {
  return shape()[normalize_axis(i, ndim(), "Tensor::dim")];
}

Device Tensor::device() const {
  return impl().storage ? impl().storage->device : Device::cpu();
}

bool Tensor::is_contiguous() const {
  return impl().strides == contiguous_strides(impl().shape) || numel() <= 1;
}

void* Tensor::raw_data() const {
  DS_CHECK(!is_symbolic(), ValueError,
           "the symbolic tensor ", impl().value.node,
           " has no data: it is a graph value (compile and run the graph to get data)");
  return static_cast<char*>(impl().storage->data) +
         impl().offset * static_cast<int64_t>(dtype_size(dtype()));
}

Graph Tensor::graph() const {
  DS_CHECK(is_symbolic(), ValueError, "graph(): the tensor is concrete, not a graph value");
  return Graph(impl().graph);
}

double element_as_double(const Tensor& t, int64_t i) {
  DS_CHECK(t.device().kind == DeviceKind::CPU, UnavailableError, "reading an element of a tensor on ",
           t.device().str(), ": move it to the CPU first (.to(Device::cpu()))");
  double out = 0;
  for_each_offset(t.shape(), t.strides(), i, i + 1, [&](int64_t, int64_t off) {
    visit_dtype(t.dtype(), [&](auto z) {
      using T = decltype(z);
      const T* base = static_cast<const T*>(t.storage()->data) + t.offset();
      out = static_cast<double>(static_cast<std::conditional_t<std::is_class_v<T>, float, T>>(
          base[off]));
    });
  });
  return out;
}

namespace {
template <typename D, typename S> inline D convert(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_class_v<S>) {  // Half / BFloat16 source
    return convert<D>(static_cast<float>(s));
  } else if constexpr (std::is_same_v<D, bool>) {
    return s != S{};
  } else if constexpr (std::is_class_v<D>) {
    return D(static_cast<float>(s));
  } else {
    return static_cast<D>(s);
  }
}
}  // namespace

void copy_into(const Tensor& src, Tensor& dst) {
  DS_CHECK(src.device().kind == DeviceKind::CPU && dst.device().kind == DeviceKind::CPU,
           UnavailableError, "copy_into: tensors on ", src.device().str(), " and ",
           dst.device().str(), "; device memory is copied with Tensor::to(device)");
  DS_CHECK(src.shape() == dst.shape(), ShapeError, "copy_into: source shape ",
           shape_str(src.shape()), " differs from destination ", shape_str(dst.shape()));
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    if (src.nbytes()) std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
    return;
  }
  visit_dtype(src.dtype(), [&](auto zs) {
    using S = decltype(zs);
    visit_dtype(dst.dtype(), [&](auto zd) {
      using D = decltype(zd);
      const S* s = static_cast<const S*>(src.storage()->data) + src.offset();
      D* d = static_cast<D*>(dst.storage()->data) + dst.offset();
      const Shape& dshape = dst.shape();
      const Shape& dstrides = dst.strides();
      const bool dst_contig = dst.is_contiguous();
      parallel_for(src.numel(), 1 << 16, [&](int64_t b, int64_t e) {
        if (dst_contig) {
          for_each_offset(src.shape(), src.strides(), b, e,
                          [&](int64_t i, int64_t off) { d[i] = convert<D>(s[off]); });
        } else {
          std::vector<int64_t> offs(e - b);
          for_each_offset(dshape, dstrides, b, e, [&](int64_t i, int64_t off) { offs[i - b] = off; });
          for_each_offset(src.shape(), src.strides(), b, e,
                          [&](int64_t i, int64_t off) { d[offs[i - b]] = convert<D>(s[off]); });
        }
      });
    });
  });
}

Tensor Tensor::contiguous() const {
  if (is_symbolic() || is_contiguous()) return *this;
  if (device().kind != DeviceKind::CPU) return device_hooks(device().kind)->contiguous(*this);
  Tensor out = empty(shape(), dtype());
  copy_into(*this, out);
  return out;
}

Tensor Tensor::clone() const {
  if (is_symbolic()) return *this;
  if (device().kind != DeviceKind::CPU) {
    if (!is_contiguous()) return contiguous();
    Tensor out = empty(shape(), dtype(), device());
    device_hooks(device().kind)->copy(*this, out);
    return out;
  }
  Tensor out = empty(shape(), dtype());
  copy_into(*this, out);
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  return cast(*this, t);
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  DS_CHECK(!is_symbolic(), ValueError, "Tensor.to(", d.str(), "): symbolic tensors have no device");
  const DeviceHooks* hooks = device_hooks(d.kind == DeviceKind::CPU ? device().kind : d.kind);
  DS_CHECK(hooks, UnavailableError, "Tensor.to(", d.str(),
           "): this build has no backend for that device (built without CUDA)");
  const Tensor src = contiguous();  // a strided device tensor is compacted on its device
  Tensor out = empty(shape(), dtype(), d);
  hooks->copy(src, out);
  return out;
}

Tensor Tensor::reshape(const Shape& s) const {
  if (is_symbolic() || !is_contiguous()) return ds::reshape(*this, s);
  // Resolve a -1 extent, then share storage.
  Shape out = s;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      DS_CHECK(infer < 0, ShapeError, "reshape: more than one -1 in ", shape_str(s));
      infer = static_cast<int64_t>(i);
    } else {
      known *= out[i];
    }
  }
  if (infer >= 0) {
    DS_CHECK(known > 0 && numel() % known == 0, ShapeError, "reshape: cannot reshape ",
             shape_str(shape()), " into ", shape_str(s));
    out[infer] = numel() / known;
  }
  DS_CHECK(ds::numel(out) == numel(), ShapeError, "reshape: cannot reshape ",
           shape_str(shape()), " (", numel(), " elements) into ", shape_str(s));
  return view(*this, out, contiguous_strides(out), offset());
}

Tensor Tensor::permute(const std::vector<int64_t>& axes) const {
  if (is_symbolic()) return ds::permute(*this, axes);
  DS_CHECK(static_cast<int>(axes.size()) == ndim(), ValueError, "permute: ", axes.size(),
           " axes given for a tensor of rank ", ndim());
  Shape s(ndim()), st(ndim());
  std::vector<bool> seen(ndim());
  for (int i = 0; i < ndim(); ++i) {
    int a = normalize_axis(axes[i], ndim(), "permute");
    DS_CHECK(!seen[a], ValueError, "permute: axis ", axes[i], " repeated");
    seen[a] = true;
    s[i] = shape()[a];
    st[i] = strides()[a];
  }
  return view(*this, s, st, offset());
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  if (is_symbolic()) return ds::transpose(*this, a, b);
  std::vector<int64_t> axes(ndim());
  std::iota(axes.begin(), axes.end(), 0);
  std::swap(axes[normalize_axis(a, ndim(), "transpose")], axes[normalize_axis(b, ndim(), "transpose")]);
  return permute(axes);
}

Tensor Tensor::slice(int64_t axis, int64_t start, int64_t stop, int64_t step) const {
  if (is_symbolic()) return ds::slice(*this, axis, start, stop, step);
  const int a = normalize_axis(axis, ndim(), "slice");
  DS_CHECK(step > 0, ValueError, "slice: step must be positive, got ", step);
  const int64_t n = shape()[a];
  auto clamp = [n](int64_t v) { return std::clamp(v < 0 ? v + n : v, int64_t{0}, n); };
  start = clamp(start);
  stop = clamp(stop);
  Shape s = shape(), st = strides();
  s[a] = stop > start ? (stop - start + step - 1) / step : 0;
  st[a] *= step;
  return view(*this, s, st, offset() + start * strides()[a]);
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  if (device().kind != DeviceKind::CPU) {  // values are not readable from here
    os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
       << ", device=" << device().str() << ")";
    return os.str();
  }
  if (is_symbolic()) {
    os << "Tensor(symbolic %" << value().node << ":" << value().output << ", "
       << dtype_name(dtype()) << shape_str(shape()) << ")";
    return os.str();
  }
  const int64_t n = numel();
  const bool fl = is_floating(dtype());
  std::function<void(int, int64_t&)> rec = [&](int d, int64_t& i) {
    if (d == ndim()) {
      double v = element_as_double(*this, i++);
      if (dtype() == DType::Bool)
        os << (v != 0 ? "True" : "False");
      else if (fl && std::isfinite(v) && v == std::floor(v) && std::abs(v) < 1e16)
        os << static_cast<int64_t>(v) << ".";
      else
        os << v;
      return;
    }
    os << "[";
    const int64_t len = shape()[d];
    for (int64_t k = 0; k < len; ++k) {
      if (k) os << (d == ndim() - 1 ? " " : "\n" + std::string(d + 1, ' '));
      if (len > 12 && k == 6 && d == ndim() - 1) {
        os << "...";
        const int64_t skip = len - 12;
        i += skip * ds::numel(Shape(shape().begin() + d + 1, shape().end()));
        k += skip - 1;
        continue;
      }
      rec(d + 1, i);
    }
    os << "]";
  };
  int64_t i = 0;
  if (n >= 0) rec(0, i);
  return os.str();
}

}  // namespace ds
