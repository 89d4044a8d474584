// DLPack exchange (the unversioned ABI every producer and consumer speaks):
// Tensor.__dlpack__ / __dlpack_device__ and ds.from_dlpack, zero-copy both ways.
#include <nanobind/stl/string.h>

#include "bindings.h"

namespace ds::py {
namespace {

// The standard DLPack ABI structs (dlpack.h v0.8, the unversioned capsule "dltensor").
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

// What a DLManagedTensor we produce owns: the tensor (keeping its storage
// alive) and the shape/stride arrays the DLTensor points at.
struct Export {
  DLManagedTensor managed;
  Tensor tensor;
  Shape shape, strides;
};

void delete_export(DLManagedTensor* m) { delete static_cast<Export*>(m->manager_ctx); }

// Capsule destructor: a capsule still named "dltensor" was never consumed, so
// the producer side frees it.
void capsule_destructor(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, "dltensor")) return;
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
  if (m && m->deleter) m->deleter(m);
}

nb::object to_dlpack(const Tensor& t) {
  DS_CHECK(!t.is_symbolic(), ValueError, "__dlpack__: ", t.str(),
           " is a graph value with no data");
  auto* e = new Export{{}, t, t.shape(), t.strides()};
  DLTensor& d = e->managed.dl_tensor;
  d.data = t.raw_data();
  d.device = {t.device().kind == DeviceKind::CUDA ? kDLCUDA : kDLCPU, t.device().index};
  d.ndim = t.ndim();
  d.dtype = to_dl(t.dtype());
  d.shape = e->shape.data();
  d.strides = e->strides.data();
  d.byte_offset = 0;
  e->managed.manager_ctx = e;
  e->managed.deleter = &delete_export;
  PyObject* cap = PyCapsule_New(&e->managed, "dltensor", &capsule_destructor);
  if (!cap) {
    delete e;
    throw nb::python_error();
  }
  return nb::steal(cap);
}

// Takes ownership of a "dltensor" capsule's DLManagedTensor: the tensor views
// its memory and calls the producer's deleter when the storage dies.
Tensor consume_capsule(nb::handle capsule) {
  DS_CHECK(PyCapsule_IsValid(capsule.ptr(), "dltensor"), ValueError,
           "from_dlpack: expected an unconsumed 'dltensor' capsule (a capsule can be used "
           "only once)");
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  const DLTensor& d = m->dl_tensor;
  DS_CHECK(d.device.device_type == kDLCPU || d.device.device_type == kDLCUDAHost,
           UnavailableError, "from_dlpack: the producer's memory is on device type ",
           d.device.device_type, "; this build reads CPU memory only");
  const DType t = from_dl(d.dtype);
  Shape shape(d.shape, d.shape + d.ndim);
  Shape strides = d.strides ? Shape(d.strides, d.strides + d.ndim) : contiguous_strides(shape);
  void* data = static_cast<char*>(d.data) + d.byte_offset;
  // Renaming marks the capsule consumed, so its destructor leaves the tensor alone.
  PyCapsule_SetName(capsule.ptr(), "used_dltensor");
  return Tensor::from_blob(data, shape, strides, t, [m](void*) {
    if (!m->deleter) return;
    // Producers such as numpy release Python objects in their deleter.
    if (!Py_IsInitialized()) return;
    PyGILState_STATE s = PyGILState_Ensure();
    m->deleter(m);
    PyGILState_Release(s);
  });
}

Tensor from_dlpack(nb::handle obj) {
  if (PyCapsule_CheckExact(obj.ptr())) return consume_capsule(obj);
  DS_CHECK(nb::hasattr(obj, "__dlpack__"), TypeError, "from_dlpack: ",
           nb::cast<std::string>(nb::repr(nb::type_name(obj.type()))),
           " has no __dlpack__ method");
  if (nb::hasattr(obj, "__dlpack_device__")) {
    nb::tuple dev = nb::cast<nb::tuple>(obj.attr("__dlpack_device__")());
    const int type = nb::cast<int>(dev[0]);
    DS_CHECK(type == kDLCPU || type == kDLCUDAHost, UnavailableError,
             "from_dlpack: the producer's memory is on device type ", type,
             "; this build reads CPU memory only");
  }
  nb::object capsule = obj.attr("__dlpack__")();
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
            (void)max_version;  // we answer with the unversioned capsule every consumer reads
            (void)dl_device;
            return to_dlpack(t);
          },
          nb::arg("stream") = nb::none(), nb::arg("max_version") = nb::none(),
          nb::arg("dl_device") = nb::none(), nb::arg("copy") = nb::none(),
          "A 'dltensor' PyCapsule sharing this tensor's memory (kept alive until the "
          "consumer releases it).")
      .def("__dlpack_device__", [](const Tensor& t) {
        return nb::make_tuple(t.device().kind == DeviceKind::CUDA ? kDLCUDA : kDLCPU,
                              t.device().index);
      });
  m.def("from_dlpack", &from_dlpack, nb::arg("obj"),
        "A tensor sharing the memory of `obj` (any object with __dlpack__, e.g. a numpy "
        "array, or a 'dltensor' capsule); `obj` stays alive as long as the tensor.");
}

}  // namespace ds::py
