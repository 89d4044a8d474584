// Tensor operators (+ - * / @ ** %, comparisons, logical & | ~) and numpy-style
// indexing. Python scalars take the tensor's dtype, like numpy's weak scalars.
#include <nanobind/stl/string.h>

#include "bindings.h"

namespace ds::py {
namespace {

bool is_python_scalar(nb::handle h) {
  return PyBool_Check(h.ptr()) || PyLong_Check(h.ptr()) || PyFloat_Check(h.ptr());
}

// The other operand of a binary operator, or nullopt when it is not array-like
// (then Python tries the reflected operator of the other object).
std::optional<Tensor> operand(nb::handle other, const Tensor& self) {
  if (other.is_none()) return std::nullopt;
  if (nb::isinstance<Tensor>(other)) return nb::cast<const Tensor&>(other);
  if (is_python_scalar(other)) return scalar_like(nb::cast<double>(other), self);
  try {
    return to_tensor(other);
  } catch (const ds::TypeError&) {
    return std::nullopt;
  } catch (const nb::python_error&) {
    return std::nullopt;
  }
}

template <bool Reflected>
nb::object binary(const char* op, const Tensor& self, nb::handle other) {
  std::optional<Tensor> o = operand(other, self);
  if (!o) return nb::not_implemented();
  Tensor out;
  {
    nb::gil_scoped_release unlocked;
    out = Reflected ? apply1(op, {*o, self}) : apply1(op, {self, *o});
  }
  return nb::cast(std::move(out));
}

template <bool Reflected = false> auto op(const char* name) {
  return [name](const Tensor& self, nb::handle other) {
    return binary<Reflected>(name, self, other);
  };
}

Tensor bool_only(const char* op, const Tensor& t) {
  DS_CHECK(t.dtype() == DType::Bool, TypeError, "operator ", op,
           " is logical: it needs bool tensors, got ", dtype_name(t.dtype()));
  return t;
}

// ---- indexing

// One step of an index expression, applied at axis `ax` of `cur`; returns the
// number of result axes it produced.
int64_t index_integer(Tensor& cur, int64_t ax, int64_t i) {
  const int64_t n = cur.shape()[ax];
  DS_CHECK(n != dyn, ShapeError, "cannot index the symbolic axis ", ax, " with an integer");
  if (i < -n || i >= n)
    throw nb::index_error(("index " + std::to_string(i) + " is out of bounds for axis " +
                           std::to_string(ax) + " with size " + std::to_string(n))
                              .c_str());
  if (i < 0) i += n;
  Shape s = cur.shape();
  s.erase(s.begin() + ax);
  cur = cur.slice(ax, i, i + 1).reshape(s);
  return 0;
}

int64_t index_slice(Tensor& cur, int64_t ax, nb::handle key) {
  Py_ssize_t start, stop, step;
  if (PySlice_Unpack(key.ptr(), &start, &stop, &step) < 0) throw nb::python_error();
  DS_CHECK(step > 0, ValueError, "slice step must be positive, got ", step,
           " (negative steps are not supported)");
  auto* sl = reinterpret_cast<PySliceObject*>(key.ptr());
  const bool whole = sl->start == Py_None && sl->stop == Py_None && step == 1;
  if (whole) return 1;  // ':' keeps the axis as it is (also a symbolic one)
  const int64_t n = cur.shape()[ax];
  DS_CHECK(n != dyn, ShapeError, "cannot slice the symbolic axis ", ax);
  PySlice_AdjustIndices(n, &start, &stop, step);
  cur = cur.slice(ax, start, std::max(start, stop), step);
  return 1;
}

int64_t index_array(Tensor& cur, int64_t ax, nb::handle key) {
  Tensor idx = to_tensor(key);
  DS_CHECK(idx.dtype() != DType::Bool, TypeError,
           "boolean mask indexing is not supported (its shape depends on the data); use "
           "ds.where");
  DS_CHECK(is_integral(idx.dtype()), TypeError, "index arrays must be integers, got ",
           dtype_name(idx.dtype()));
  if (idx.ndim() == 0 && !idx.is_symbolic()) return index_integer(cur, ax, idx.item<int64_t>());
  // index_select takes 1-D indices; other ranks are flattened and restored.
  Shape out = cur.shape();
  out.erase(out.begin() + ax);
  out.insert(out.begin() + ax, idx.shape().begin(), idx.shape().end());
  const Tensor flat = idx.ndim() == 1 ? idx : idx.reshape({-1});
  cur = apply1("index_select", {cur, flat}, {{"axis", ax}});
  if (idx.ndim() != 1) cur = cur.reshape(out);
  return idx.ndim();
}

bool is_array_index(nb::handle h) {
  return nb::isinstance<Tensor>(h) || nb::isinstance<nb::list>(h) ||
         nb::hasattr(h, "__array_interface__");
}

Tensor getitem(const Tensor& t, nb::handle key) {
  nb::tuple items = nb::isinstance<nb::tuple>(key) ? nb::borrow<nb::tuple>(key)
                                                    : nb::make_tuple(key);
  // Axes the index consumes, to size an Ellipsis.
  int64_t consumed = 0, ellipses = 0, arrays = 0;
  for (nb::handle it : items) {
    if (it.is_none()) continue;
    if (it.ptr() == Py_Ellipsis) {
      ++ellipses;
      continue;
    }
    ++consumed;
    if (is_array_index(it)) ++arrays;
  }
  DS_CHECK(ellipses <= 1, ValueError, "an index can only have a single ellipsis ('...')");
  DS_CHECK(arrays <= 1, ValueError,
           "at most one integer-array index is supported, got ", arrays);
  DS_CHECK(consumed <= t.ndim(), ShapeError, "too many indices: the tensor has ", t.ndim(),
           " dimensions but ", consumed, " were indexed");
  Tensor cur = t;
  int64_t ax = 0;
  for (nb::handle it : items) {
    if (it.is_none()) {
      Shape s = cur.shape();
      s.insert(s.begin() + ax, 1);
      cur = cur.reshape(s);
      ++ax;
    } else if (it.ptr() == Py_Ellipsis) {
      ax += t.ndim() - consumed;
    } else if (PySlice_Check(it.ptr())) {
      ax += index_slice(cur, ax, it);
    } else if (is_array_index(it)) {
      ax += index_array(cur, ax, it);
    } else if (PyIndex_Check(it.ptr()) && !PyBool_Check(it.ptr())) {
      ax += index_integer(cur, ax, nb::cast<int64_t>(nb::int_(it)));
    } else {
      throw ds::TypeError("unsupported index " + nb::cast<std::string>(nb::repr(it)) +
                          ": use integers, slices, None, ..., or an integer array");
    }
  }
  return cur;
}

}  // namespace

void bind_tensor_ops(nb::class_<Tensor>& cls) {
  cls.def("__add__", op("add"), nb::arg("other").none())
      .def("__radd__", op<true>("add"), nb::arg("other").none())
      .def("__sub__", op("sub"), nb::arg("other").none())
      .def("__rsub__", op<true>("sub"), nb::arg("other").none())
      .def("__mul__", op("mul"), nb::arg("other").none())
      .def("__rmul__", op<true>("mul"), nb::arg("other").none())
      .def("__truediv__", op("div"), nb::arg("other").none())
      .def("__rtruediv__", op<true>("div"), nb::arg("other").none())
      .def("__matmul__", op("matmul"), nb::arg("other").none())
      .def("__rmatmul__", op<true>("matmul"), nb::arg("other").none())
      .def("__pow__", op("pow"), nb::arg("other").none())
      .def("__rpow__", op<true>("pow"), nb::arg("other").none())
      .def("__mod__", op("mod"), nb::arg("other").none())
      .def("__rmod__", op<true>("mod"), nb::arg("other").none())
      .def("__eq__", op("eq"), nb::arg("other").none())
      .def("__ne__", op("ne"), nb::arg("other").none())
      .def("__lt__", op("lt"), nb::arg("other").none())
      .def("__le__", op("le"), nb::arg("other").none())
      .def("__gt__", op("gt"), nb::arg("other").none())
      .def("__ge__", op("ge"), nb::arg("other").none())
      .def("__and__",
           [](const Tensor& a, nb::handle b) {
             return binary<false>("logical_and", bool_only("&", a), b);
           },
           nb::arg("other").none())
      .def("__or__",
           [](const Tensor& a, nb::handle b) {
             return binary<false>("logical_or", bool_only("|", a), b);
           },
           nb::arg("other").none())
      .def("__invert__", [](const Tensor& a) { return logical_not(bool_only("~", a)); })
      .def("__neg__", [](const Tensor& a) { return neg(a); })
      .def("__pos__", [](const Tensor& a) { return a; })
      .def("__abs__", [](const Tensor& a) { return abs(a); })
      .def("__getitem__", &getitem, nb::arg("key").none(),
           "numpy-style indexing: integers, slices (positive steps), None, ..., and one "
           "integer array (gathers with index_select). Integers and slices give views.");
  // Elementwise __eq__ makes tensors unhashable in Python's eyes; hash by
  // identity, as PyTorch does, so tensors can key dicts and sets.
  cls.attr("__hash__") = nb::module_::import_("builtins").attr("object").attr("__hash__");
}

}  // namespace ds::py
