// ds.DType: one canonical object per element type (ds.float32, ...). It compares
// equal to its name ("float32") and to the matching numpy dtype.
#include <array>

#include "bindings.h"

namespace ds::py {
namespace {

struct PyDType {
  DType t;
};

// Borrowed: the module's attributes (ds.float32, ...) own the objects.
std::array<PyObject*, std::size(kAllDTypes)> canonical{};

bool equals(const PyDType& self, nb::handle other) {
  if (other.is_none()) return false;
  try {
    return to_dtype(other) == self.t;
  } catch (const ds::Error&) {
    return false;  // not a dtype we know: simply unequal
  } catch (const nb::python_error&) {
    return false;
  }
}

}  // namespace

nb::object dtype_object(DType t) { return nb::borrow(canonical[static_cast<size_t>(t)]); }

DType to_dtype(nb::handle h) {
  if (nb::isinstance<PyDType>(h)) return nb::cast<const PyDType&>(h).t;
  if (nb::isinstance<nb::str>(h)) return dtype_from_name(nb::cast<std::string>(h));
  if (h.ptr() == reinterpret_cast<PyObject*>(&PyFloat_Type)) return DType::Float32;
  if (h.ptr() == reinterpret_cast<PyObject*>(&PyBool_Type)) return DType::Bool;
  if (h.ptr() == reinterpret_cast<PyObject*>(&PyLong_Type)) return DType::Int64;
  // numpy dtypes and scalar types (np.float32, np.dtype("int8")): go by name.
  nb::module_ np = nb::module_::import_("numpy");
  nb::object np_dtype;
  try {
    np_dtype = np.attr("dtype")(h);
  } catch (const nb::python_error&) {
    throw ds::TypeError("expected a dtype (ds.float32, 'float32', a numpy dtype), got " +
                        nb::cast<std::string>(nb::repr(h)));
  }
  const std::string name = nb::cast<std::string>(np_dtype.attr("name"));
  for (DType t : kAllDTypes)
    if (name == dtype_name(t)) return t;
  throw ds::TypeError("numpy dtype '" + name +
                      "' has no deepseek equivalent; supported: bool, uint8, int8, int32, "
                      "int64, float16, bfloat16, float32, float64");
}

void bind_dtype(nb::module_& m) {
  nb::class_<PyDType>(m, "DType", "An element type; compares equal to its name, e.g. 'float32'.")
      .def_prop_ro("name", [](const PyDType& d) { return dtype_name(d.t); })
      .def_prop_ro("itemsize", [](const PyDType& d) { return dtype_size(d.t); })
      .def_prop_ro("is_floating_point", [](const PyDType& d) { return is_floating(d.t); })
      .def_prop_ro("is_integer", [](const PyDType& d) { return is_integral(d.t); })
      .def("__eq__", &equals, nb::arg("other").none())
      .def("__ne__", [](const PyDType& d, nb::handle o) { return !equals(d, o); },
           nb::arg("other").none())
      .def("__hash__", [](const PyDType& d) { return nb::hash(nb::str(dtype_name(d.t))); })
      .def("__str__", [](const PyDType& d) { return dtype_name(d.t); })
      .def("__repr__", [](const PyDType& d) { return std::string("ds.") + dtype_name(d.t); })
      .def("__reduce__", [](const PyDType& d) {
        return nb::make_tuple(nb::module_::import_("deepseek").attr("dtype"),
                              nb::make_tuple(dtype_name(d.t)));
      });
  for (DType t : kAllDTypes) {
    nb::object obj = nb::cast(PyDType{t});
    canonical[static_cast<size_t>(t)] = obj.ptr();
    m.attr(dtype_name(t)) = obj;
  }
  m.def("dtype", [](nb::handle h) { return dtype_object(to_dtype(h)); }, nb::arg("like"),
        "The ds.DType for a name, numpy dtype or Python type.");
}

}  // namespace ds::py
