// DLPack exchange: Tensor.__dlpack__ / __dlpack_device__ and ds.from_dlpack,
// zero-copy both ways, in the versioned (1.0) and the legacy capsule forms.
#include <nanobind/stl/string.h>

#include "bindings.h"

namespace ds::py {
namespace {

// The standard DLPack ABI (dlpack.h v1.0): the legacy capsule "dltensor" holds a
// DLManagedTensor, the versioned "dltensor_versioned" a DLManagedTensorVersioned
// (which can say "read-only"; numpy makes legacy imports read-only).
struct DLDevice {
  int32_t device_type;  // kDLCPU = 1, kDLCUDA = 2
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLBool = 6
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; may be null for compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};
struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
};

constexpr uint64_t kReadOnly = 1u << 0;
constexpr const char* kLegacy = "dltensor";
constexpr const char* kVersioned = "dltensor_versioned";
enum : uint8_t { kInt = 0, kUInt = 1, kFloat = 2, kBfloat = 4, kBool = 6 };
enum : int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3 };

DLDataType to_dl(DType t) {
  const auto bits = static_cast<uint8_t>(8 * dtype_size(t));
  if (t == DType::Bool) return {kBool, 8, 1};
  if (t == DType::BFloat16) return {kBfloat, 16, 1};
  if (is_floating(t)) return {kFloat, bits, 1};
  return {is_signed(t) ? kInt : kUInt, bits, 1};
}

DType from_dl(DLDataType d) {
  DS_CHECK(d.lanes == 1, TypeError, "from_dlpack: vector dtypes (lanes=", d.lanes,
           ") are not supported");
  for (DType t : kAllDTypes) {
    const DLDataType m = to_dl(t);
    if (m.code == d.code && m.bits == d.bits) return t;
  }
  throw ds::TypeError(detail::cat("from_dlpack: unsupported DLPack dtype (code ", int(d.code),
                                  ", ", int(d.bits), " bits)"));
}

int32_t dl_device_type(const Tensor& t) {
  return t.device().kind == DeviceKind::CUDA ? kDLCUDA : kDLCPU;
}

// What an export owns: the tensor (keeping its storage alive) and the
// shape/stride arrays the DLTensor points at; one of the two headers is used.
struct Export {
  DLManagedTensor legacy;
  DLManagedTensorVersioned versioned;
  Tensor tensor;
  Shape shape, strides;
};

template <typename M> void delete_export(M* m) { delete static_cast<Export*>(m->manager_ctx); }

// Capsule destructors: a capsule still carrying its original name was never
// consumed, so the producer side frees it.
template <typename M> void capsule_destructor(PyObject* capsule) {
  const char* name = std::is_same_v<M, DLManagedTensor> ? kLegacy : kVersioned;
  if (!PyCapsule_IsValid(capsule, name)) return;
  auto* m = static_cast<M*>(PyCapsule_GetPointer(capsule, name));
  if (m && m->deleter) m->deleter(m);
}

nb::object to_dlpack(const Tensor& t, bool versioned) {
  DS_CHECK(!t.is_symbolic(), ValueError, "__dlpack__: ", t.str(),
           " is a graph value with no data");
  auto* e = new Export{{}, {}, t, t.shape(), t.strides()};
  DLTensor d{};
  d.data = t.raw_data();
  d.device = {dl_device_type(t), t.device().index};
  d.ndim = t.ndim();
  d.dtype = to_dl(t.dtype());
  d.shape = e->shape.data();
  d.strides = e->strides.data();
  PyObject* cap;
  if (versioned) {
    e->versioned = {{1, 0}, e, &delete_export<DLManagedTensorVersioned>, 0, d};
    cap = PyCapsule_New(&e->versioned, kVersioned, &capsule_destructor<DLManagedTensorVersioned>);
  } else {
    e->legacy = {d, e, &delete_export<DLManagedTensor>};
    cap = PyCapsule_New(&e->legacy, kLegacy, &capsule_destructor<DLManagedTensor>);
  }
  if (!cap) {
    delete e;
    throw nb::python_error();
  }
  return nb::steal(cap);
}

// Takes ownership of a capsule's managed tensor: the tensor views its memory and
// calls the producer's deleter when the storage dies.
template <typename M> Tensor adopt(nb::handle capsule, const char* name, const char* used) {
  auto* m = static_cast<M*>(PyCapsule_GetPointer(capsule.ptr(), name));
  const DLTensor& d = m->dl_tensor;
  if constexpr (std::is_same_v<M, DLManagedTensorVersioned>) {
    DS_CHECK(m->version.major == 1, ValueError, "from_dlpack: DLPack version ",
             m->version.major, ".", m->version.minor, " is not supported (expected 1.x)");
    DS_CHECK(!(m->flags & kReadOnly), ValueError,
             "from_dlpack: the producer's memory is read-only; copy it with ds.tensor(x)");
  }
  DS_CHECK(d.device.device_type == kDLCPU || d.device.device_type == kDLCUDAHost,
           UnavailableError, "from_dlpack: the producer's memory is on device type ",
           d.device.device_type, "; this build reads CPU memory only");
  const DType t = from_dl(d.dtype);
  Shape shape(d.shape, d.shape + d.ndim);
  Shape strides = d.strides ? Shape(d.strides, d.strides + d.ndim) : contiguous_strides(shape);
  void* data = static_cast<char*>(d.data) + d.byte_offset;
  // Renaming marks the capsule consumed, so its destructor leaves the tensor alone.
  PyCapsule_SetName(capsule.ptr(), used);
  return Tensor::from_blob(data, shape, strides, t, [m](void*) {
    if (!m->deleter || !Py_IsInitialized()) return;
    // Producers such as numpy release Python objects in their deleter.
    PyGILState_STATE s = PyGILState_Ensure();
    m->deleter(m);
    PyGILState_Release(s);
  });
}

Tensor consume_capsule(nb::handle capsule) {
  if (PyCapsule_IsValid(capsule.ptr(), kVersioned))
    return adopt<DLManagedTensorVersioned>(capsule, kVersioned, "used_dltensor_versioned");
  DS_CHECK(PyCapsule_IsValid(capsule.ptr(), kLegacy), ValueError,
           "from_dlpack: expected an unconsumed 'dltensor' capsule (a capsule can be used "
           "only once)");
  return adopt<DLManagedTensor>(capsule, kLegacy, "used_dltensor");
}

Tensor from_dlpack(nb::handle obj) {
  if (PyCapsule_CheckExact(obj.ptr())) return consume_capsule(obj);
  DS_CHECK(nb::hasattr(obj, "__dlpack__"), TypeError, "from_dlpack: ",
           nb::cast<std::string>(nb::type_name(obj.type())), " has no __dlpack__ method");
  if (nb::hasattr(obj, "__dlpack_device__")) {
    nb::tuple dev = nb::cast<nb::tuple>(obj.attr("__dlpack_device__")());
    const int type = nb::cast<int>(dev[0]);
    DS_CHECK(type == kDLCPU || type == kDLCUDAHost, UnavailableError,
             "from_dlpack: the producer's memory is on device type ", type,
             "; this build reads CPU memory only");
  }
  nb::object capsule;
  try {
    capsule = obj.attr("__dlpack__")(nb::arg("max_version") = nb::make_tuple(1, 0));
  } catch (const nb::python_error& e) {
    if (!e.matches(PyExc_TypeError)) throw;
    capsule = obj.attr("__dlpack__")();  // a producer from before DLPack 1.0
  }
  return consume_capsule(capsule);
}

}  // namespace

void bind_dlpack(nb::module_& m, nb::class_<Tensor>& cls) {
  cls.def("__dlpack__",
          [](const Tensor& t, nb::handle stream, nb::handle max_version, nb::handle dl_device,
             nb::handle copy) {
            DS_CHECK(stream.is_none() || t.device().kind == DeviceKind::CPU, ValueError,
                     "__dlpack__: stream must be None for CPU tensors");
            DS_CHECK(copy.is_none() || !nb::cast<bool>(copy), ValueError,
                     "__dlpack__: copy=True is not supported; the export is zero-copy");
            DS_CHECK(dl_device.is_none() ||
                         nb::cast<int>(nb::tuple(nb::borrow(dl_device))[0]) == dl_device_type(t),
                     UnavailableError, "__dlpack__: cannot export to another device");
            // Consumers that know DLPack 1.0 say so with max_version.
            const bool versioned = !max_version.is_none() &&
                                   nb::cast<int>(nb::tuple(nb::borrow(max_version))[0]) >= 1;
            return to_dlpack(t, versioned);
          },
          nb::arg("stream") = nb::none(), nb::arg("max_version") = nb::none(),
          nb::arg("dl_device") = nb::none(), nb::arg("copy") = nb::none(),
          "A DLPack PyCapsule sharing this tensor's memory (kept alive until the consumer "
          "releases it): 'dltensor_versioned' when max_version >= (1, 0), else 'dltensor'.")
      .def("__dlpack_device__", [](const Tensor& t) {
        return nb::make_tuple(dl_device_type(t), t.device().index);
      });
  m.def("from_dlpack", &from_dlpack, nb::arg("obj"),
        "A tensor sharing the memory of `obj` (any object with __dlpack__, e.g. a numpy "
        "array, or a 'dltensor' capsule); `obj` stays alive as long as the tensor.");
}

}  // namespace ds::py
