// The generic op entry point: _core.apply(op, inputs, attrs, name). The Python
// wrappers in deepseek/ops.py give every op its NumPy/PyTorch-style signature on
// top of it, so new OpDefs need no C++ binding.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

namespace ds::py {
namespace {

const char* kind_name(AttrKind k) {
  switch (k) {
    case AttrKind::Int: return "int";
    case AttrKind::Float: return "float";
    case AttrKind::Bool: return "bool";
    case AttrKind::String: return "str";
    case AttrKind::Ints: return "ints";
    case AttrKind::Floats: return "floats";
    case AttrKind::DType: return "dtype";
    case AttrKind::Tensor: return "tensor";
  }
  return "?";
}

// Python and numpy integers (a one-element integer Tensor has __index__ too, but
// stays a tensor).
bool is_int_like(nb::handle h) {
  return !PyBool_Check(h.ptr()) && !PyFloat_Check(h.ptr()) && !nb::isinstance<Tensor>(h) &&
         PyIndex_Check(h.ptr());
}

nb::object attr_value(const Attr& a) {
  return std::visit(
      [](const auto& v) -> nb::object {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, DType>)
          return dtype_object(v);
        else
          return nb::cast(v);
      },
      a);
}

nb::dict op_info(const std::string& name) {
  const OpDef& op = get_op(name);
  nb::list attrs;
  for (const AttrSpec& s : op.attrs)
    attrs.append(nb::make_tuple(s.name, kind_name(s.kind),
                                s.default_value ? attr_value(*s.default_value) : nb::none()));
  nb::dict d;
  d["name"] = op.name;
  d["num_inputs"] = op.num_inputs;
  d["min_inputs"] = op.min_inputs < 0 ? op.num_inputs : op.min_inputs;
  d["attrs"] = attrs;
  d["differentiable"] = static_cast<bool>(op.vjp);
  d["elementwise"] = op.has(kElementwise);
  d["reduction"] = op.has(kReduction);
  d["random"] = op.has(kRandom);
  d["source"] = op.has(kSource);
  return d;
}

}  // namespace

Attr to_attr(nb::handle h) {
  // numpy scalars (np.int64(3), np.float32(0.5)) as the Python numbers they hold.
  if (nb::isinstance(h, nb::module_::import_("numpy").attr("generic"))) return to_attr(h.attr("item")());
  if (PyBool_Check(h.ptr())) return nb::cast<bool>(h);
  if (is_int_like(h)) return nb::cast<int64_t>(nb::int_(h));
  if (PyFloat_Check(h.ptr())) return nb::cast<double>(h);
  if (nb::isinstance<nb::str>(h)) return nb::cast<std::string>(h);
  if (nb::isinstance<Tensor>(h)) return nb::cast<Tensor>(h);
  if (nb::isinstance<nb::list>(h) || nb::isinstance<nb::tuple>(h)) {
    bool all_int = true;
    for (nb::handle e : h) all_int &= is_int_like(e);
    if (all_int) {
      std::vector<int64_t> v;
      for (nb::handle e : h) v.push_back(nb::cast<int64_t>(nb::int_(e)));
      return v;
    }
    std::vector<double> v;
    for (nb::handle e : h) v.push_back(nb::cast<double>(nb::float_(e)));
    return v;
  }
  if (nb::hasattr(h, "__array_interface__")) return to_tensor(h);
  // ds.DType, a numpy dtype or a Python type naming one.
  try {
    return to_dtype(h);
  } catch (const ds::TypeError&) {
    throw ds::TypeError("unsupported attribute value " + nb::cast<std::string>(nb::repr(h)) +
                        ": expected int, float, bool, str, dtype, tensor or a list of numbers");
  }
}

AttrMap to_attrs(nb::handle dict) {
  AttrMap out;
  if (dict.is_none()) return out;
  for (auto [k, v] : nb::cast<nb::dict>(dict)) {
    if (v.is_none()) continue;  // None: the op's default
    out.emplace(nb::cast<std::string>(k), to_attr(v));
  }
  return out;
}

void bind_ops(nb::module_& m) {
  m.def("apply",
        [](const std::string& op, nb::handle inputs, nb::handle attrs, const std::string& name) {
          std::vector<Tensor> in;
          for (nb::handle h : inputs) in.push_back(h.is_none() ? Tensor() : to_tensor(h));
          const AttrMap a = to_attrs(attrs);
          nb::gil_scoped_release unlocked;
          return apply(op, in, a, name);
        },
        nb::arg("op"), nb::arg("inputs"), nb::arg("attrs") = nb::none(), nb::arg("name") = "",
        "Applies a registered op: runs it on concrete tensors, or adds a node when an "
        "input is symbolic. None inputs are omitted optional inputs; None attributes take "
        "the op's default. Returns the list of outputs.");
  m.def("scalar_like", &scalar_like, nb::arg("value"), nb::arg("like"),
        "A 0-d tensor of `value` in `like`'s dtype (a float value with an integer tensor "
        "gives float32).");
  m.def("op_names", &op_names, "The names of every registered op.");
  m.def("op_info", &op_info, nb::arg("name"),
        "An op's arity, attributes (name, kind, default) and traits.");
}

}  // namespace ds::py
