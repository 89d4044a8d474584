// Shared pieces of the Python bindings: the per-topic bind functions and the
// conversions between Python objects and ds types.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include "ds/ds.h"

namespace ds::py {

namespace nb = nanobind;

void bind_errors(nb::module_& m);
void bind_dtype(nb::module_& m);
void bind_tensor(nb::module_& m);
void bind_tensor_ops(nb::class_<Tensor>& cls);  // operators and indexing
void bind_dlpack(nb::module_& m, nb::class_<Tensor>& cls);
void bind_graph(nb::module_& m);
void bind_runtime(nb::module_& m);
void bind_ops(nb::module_& m);

// A dtype from a ds.DType, a name ("float32", "f32"), a numpy dtype or scalar
// type, or a Python type (float -> float32, int -> int64, bool -> bool).
DType to_dtype(nb::handle h);
// The canonical ds.DType object for `t` (so `t.dtype is ds.float32`).
nb::object dtype_object(DType t);

// A Tensor from anything array-like: a Tensor is returned as is; numpy arrays,
// nested lists and scalars are copied. Python floats default to float32.
Tensor to_tensor(nb::handle h, std::optional<DType> dtype = std::nullopt);
// Like to_tensor, but a numpy array of a supported dtype is wrapped without a
// copy (the array is kept alive by the tensor's storage).
Tensor to_tensor_view(nb::handle h);
// A numpy array viewing the tensor's memory (kept alive by the array); bfloat16
// has no numpy type, so it comes back as a float32 copy.
nb::object to_numpy(const Tensor& t);

// Python value -> op attribute: bool, int, float, str, DType, Tensor (or array),
// lists of ints or floats.
Attr to_attr(nb::handle h);
AttrMap to_attrs(nb::handle dict);

// Releases a Python reference from any thread (storage deleters may run
// without the GIL held).
void release_py_ref(PyObject* obj);

}  // namespace ds::py
