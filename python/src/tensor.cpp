// ds.Tensor: construction from Python data, numpy interop and the basic
// properties. Operators and indexing are in tensor_ops.cpp, DLPack in dlpack.cpp.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

namespace ds::py {
namespace {

nb::module_ numpy() { return nb::module_::import_("numpy"); }

bool is_ndarray(nb::handle h) { return nb::isinstance(h, numpy().attr("ndarray")); }

nb::dlpack::dtype dlpack_dtype(DType t) {
  using C = nb::dlpack::dtype_code;
  auto make = [](C code, size_t bytes) {
    return nb::dlpack::dtype{static_cast<uint8_t>(code), static_cast<uint8_t>(8 * bytes), 1};
  };
  if (t == DType::Bool) return make(C::Bool, 1);
  if (t == DType::BFloat16) return make(C::Bfloat, 2);
  if (is_floating(t)) return make(C::Float, dtype_size(t));
  return make(is_signed(t) ? C::Int : C::UInt, dtype_size(t));
}

// A tensor viewing a numpy array's memory. With `keep_alive` the array is
// referenced until the tensor's storage dies; otherwise the caller must copy
// before the array can go away.
Tensor wrap_numpy(nb::handle arr, bool keep_alive) {
  const DType t = to_dtype(arr.attr("dtype"));
  nb::dict iface = nb::cast<nb::dict>(arr.attr("__array_interface__"));
  auto* data = reinterpret_cast<void*>(nb::cast<uintptr_t>(nb::tuple(iface["data"])[0]));
  Shape shape = nb::cast<Shape>(iface["shape"]);
  Shape strides;
  if (iface["strides"].is_none()) {
    strides = contiguous_strides(shape);
  } else {
    const int64_t item = static_cast<int64_t>(dtype_size(t));
    for (int64_t byte_stride : nb::cast<std::vector<int64_t>>(iface["strides"])) {
      DS_CHECK(byte_stride % item == 0, ValueError, "numpy array has a stride of ", byte_stride,
               " bytes, not a multiple of its item size ", item);
      strides.push_back(byte_stride / item);
    }
  }
  std::function<void(void*)> release;
  if (keep_alive) {
    PyObject* owner = arr.ptr();
    Py_INCREF(owner);
    release = [owner](void*) { release_py_ref(owner); };
  }
  return Tensor::from_blob(data, shape, strides, t, std::move(release));
}

const Tensor& checked_scalar(const Tensor& t) {
  DS_CHECK(!t.is_symbolic(), ValueError, t.str(), " has no value until its graph runs");
  DS_CHECK(t.numel() == 1, ShapeError, "the tensor has ", t.numel(),
           " elements; only a one-element tensor converts to a Python scalar");
  return t;
}

nb::object py_scalar(const Tensor& t) {
  const double v = element_as_double(t, 0);
  if (t.dtype() == DType::Bool) return nb::bool_(v != 0);
  if (is_integral(t.dtype())) return nb::int_(t.item<int64_t>());
  return nb::float_(v);
}

nb::tuple shape_tuple(const Shape& s) {
  nb::list out;
  for (int64_t d : s) out.append(d == dyn ? nb::none() : nb::object(nb::int_(d)));
  return nb::tuple(out);
}

Tensor to_target(const Tensor& t, nb::handle target) {
  if (nb::isinstance<nb::str>(target)) {
    const std::string s = nb::cast<std::string>(target);
    if (s == "cpu" || s.rfind("cuda", 0) == 0) return t.to(Device::parse(s));
  }
  return t.to(to_dtype(target));
}

std::string tensor_repr(const Tensor& t) {
  if (t.is_symbolic()) return t.str();
  // numpy's formatting, named and typed as ours (bfloat16 prints as itself).
  nb::object body = numpy().attr("array2string")(to_numpy(t), nb::arg("separator") = ", ",
                                                  nb::arg("prefix") = "tensor(");
  return "tensor(" + nb::cast<std::string>(body) + ", dtype=" + dtype_name(t.dtype()) + ")";
}

}  // namespace

void release_py_ref(PyObject* obj) {
  if (!Py_IsInitialized()) return;  // interpreter gone: nothing left to release to
  PyGILState_STATE s = PyGILState_Ensure();
  Py_DECREF(obj);
  PyGILState_Release(s);
}

Tensor to_tensor(nb::handle h, std::optional<DType> dtype) {
  if (nb::isinstance<Tensor>(h)) {
    const Tensor& t = nb::cast<const Tensor&>(h);
    return dtype ? t.to(*dtype) : t;
  }
  nb::module_ np = numpy();
  const bool from_array = is_ndarray(h);
  nb::object arr = np.attr("asarray")(h);
  const std::string kind = nb::cast<std::string>(arr.attr("dtype").attr("kind"));
  DS_CHECK(kind == "b" || kind == "i" || kind == "u" || kind == "f", TypeError,
           "cannot make a tensor from ", nb::cast<std::string>(nb::repr(h)).substr(0, 80),
           ": numpy gives it dtype '", nb::cast<std::string>(arr.attr("dtype").attr("name")),
           "'; expected numbers or bools");
  // Python floats become float32 (the framework's default), as in ds.Tensor([1.0, 2.0]).
  DType target = dtype ? *dtype : DType::Float32;
  if (!dtype) {
    const std::string name = nb::cast<std::string>(arr.attr("dtype").attr("name"));
    if (from_array || name != "float64") target = to_dtype(arr.attr("dtype"));
  }
  // numpy has no bfloat16: convert through float32.
  const DType staged = target == DType::BFloat16 ? DType::Float32 : target;
  arr = arr.attr("astype")(dtype_name(staged), nb::arg("order") = "C", nb::arg("copy") = false);
  Tensor copy = wrap_numpy(arr, false).clone();
  return copy.to(target);
}

Tensor to_tensor_view(nb::handle h) {
  if (is_ndarray(h)) {
    const std::string name = nb::cast<std::string>(h.attr("dtype").attr("name"));
    for (DType t : kAllDTypes)
      if (name == dtype_name(t)) return wrap_numpy(h, true);
  }
  return to_tensor(h);
}

nb::object to_numpy(const Tensor& t) {
  DS_CHECK(!t.is_symbolic(), ValueError, "numpy(): ", t.str(),
           " is a graph value with no data; compile the graph and run it");
  DS_CHECK(t.device().kind == DeviceKind::CPU, UnavailableError, "numpy(): the tensor is on ",
           t.device().str(), "; copy it to the CPU first");
  if (t.dtype() == DType::BFloat16) return to_numpy(t.to(DType::Float32));
  std::vector<size_t> shape(t.shape().begin(), t.shape().end());
  auto* keep = new Tensor(t);
  nb::capsule owner(keep, [](void* p) noexcept { delete static_cast<Tensor*>(p); });
  nb::ndarray<nb::numpy> arr(t.raw_data(), shape.size(), shape.data(), owner,
                             t.strides().data(), dlpack_dtype(t.dtype()));
  return arr.cast();
}

void bind_tensor(nb::module_& m) {
  nb::class_<Tensor> cls(m, "Tensor",
                         "An n-dimensional array: concrete (holds data, ops run at once) or "
                         "symbolic (a value of a Graph being built).");
  cls.def("__init__",
          [](Tensor* self, nb::handle data, nb::handle dtype) {
            std::optional<DType> d;
            if (!dtype.is_none()) d = to_dtype(dtype);
            Tensor t = to_tensor(data, d);
            // Like numpy.array: a tensor argument is copied, never aliased.
            if (nb::isinstance<Tensor>(data) && !t.is_symbolic()) t = t.clone();
            new (self) Tensor(std::move(t));
          },
          nb::arg("data"), nb::arg("dtype") = nb::none(),
          "Copies `data` (a list, nested lists, a scalar or a numpy array). Python floats "
          "become float32 unless `dtype` says otherwise; numpy arrays keep their dtype.")
      .def_prop_ro("shape", [](const Tensor& t) { return shape_tuple(t.shape()); },
                   "Extents; None marks a symbolic extent.")
      .def_prop_ro("dtype", [](const Tensor& t) { return dtype_object(t.dtype()); })
      .def_prop_ro("device", [](const Tensor& t) { return t.device().str(); })
      .def_prop_ro("ndim", &Tensor::ndim)
      .def_prop_ro("size",
                   [](const Tensor& t) -> nb::object {
                     const int64_t n = t.numel();
                     return n < 0 ? nb::none() : nb::object(nb::int_(n));
                   },
                   "Number of elements (None when an extent is symbolic).")
      .def_prop_ro("nbytes", &Tensor::nbytes)
      .def_prop_ro("strides", [](const Tensor& t) { return nb::tuple(nb::cast(t.strides())); },
                   "Strides in elements.")
      .def_prop_ro("is_symbolic", &Tensor::is_symbolic)
      .def("is_contiguous", &Tensor::is_contiguous)
      .def("__len__",
           [](const Tensor& t) {
             DS_CHECK(t.ndim() > 0, TypeError, "len() of a 0-d tensor");
             DS_CHECK(t.shape()[0] != dyn, ShapeError, "len() of a symbolic extent");
             return t.shape()[0];
           })
      .def("numpy", &to_numpy,
           "A numpy array sharing this tensor's memory (bfloat16: a float32 copy).")
      .def("__array__",
           [](const Tensor& t, nb::handle dtype, nb::handle copy) {
             nb::object arr = to_numpy(t);
             if (!dtype.is_none()) arr = arr.attr("astype")(dtype, nb::arg("copy") = false);
             if (!copy.is_none() && nb::cast<bool>(copy)) arr = arr.attr("copy")();
             return arr;
           },
           nb::arg("dtype") = nb::none(), nb::arg("copy") = nb::none())
      .def("item", [](const Tensor& t) { return py_scalar(checked_scalar(t)); },
           "The single element as a Python bool, int or float.")
      .def("tolist", [](const Tensor& t) { return to_numpy(t).attr("tolist")(); })
      .def("__bool__",
           [](const Tensor& t) {
             DS_CHECK(!t.is_symbolic(), ValueError,
                      "the truth value of a symbolic tensor is unknown until the graph runs");
             DS_CHECK(t.numel() == 1, ValueError, "the truth value of a tensor with ", t.numel(),
                      " elements is ambiguous; use ds.any/ds.all or compare elements");
             return element_as_double(t, 0) != 0;
           })
      .def("__float__", [](const Tensor& t) { return element_as_double(checked_scalar(t), 0); })
      .def("__int__", [](const Tensor& t) { return nb::int_(py_scalar(checked_scalar(t))); })
      .def("__index__",
           [](const Tensor& t) {
             DS_CHECK(is_integral(t.dtype()), TypeError,
                      "only integer tensors can be used as an index, got ", dtype_name(t.dtype()));
             return checked_scalar(t).item<int64_t>();
           })
      .def("reshape_view", &Tensor::reshape, nb::arg("shape"),
           "reshape sharing storage where the layout allows (else copying).")
      .def("contiguous", &Tensor::contiguous)
      .def("clone", &Tensor::clone)
      .def("to", &to_target, nb::arg("target"), "Cast to a dtype, or move to a device ('cpu').")
      .def("astype", [](const Tensor& t, nb::handle d) { return t.to(to_dtype(d)); },
           nb::arg("dtype"))
      .def("__str__", [](const Tensor& t) {
        return t.is_symbolic() ? t.str() : nb::cast<std::string>(nb::str(to_numpy(t)));
      })
      .def("__repr__", &tensor_repr);
  // numpy must hand mixed expressions (array + tensor) to the tensor's operators.
  cls.attr("__array_ufunc__") = nb::none();

  bind_tensor_ops(cls);
  bind_dlpack(m, cls);
}

}  // namespace ds::py
