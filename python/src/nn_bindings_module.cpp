// ds.nn.Module and its Python subclasses. A subclass is a C++ nn::Module (the
// PyModule trampoline below) whose forward() calls the Python method, so the C++
// machinery that takes a Module — parameter_slots(), state dicts, train/eval,
// TrainStep's tracing — works on it unchanged, through Python and C++ children
// alike. Attribute assignment (nn.py's __setattr__) registers parameters, buffers
// and children here; the tensors live in C++ slots that TrainStep can swap.
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <nanobind/trampoline.h>

#include "bindings.h"
#include "ds/nn.h"

namespace ds::py {
namespace {

using nn::Module;

class PyModule : public Module {
 public:
  NB_TRAMPOLINE(Module);

  Tensor forward(const Tensor& x) override {
    nb::gil_scoped_acquire gil;
    NB_OVERRIDE_PURE(forward, x);
  }
  std::string name() const override {
    nb::gil_scoped_acquire gil;
    return nb::cast<std::string>(nb_trampoline.base().type().attr("__name__"));
  }

  enum class Kind { Parameter, Buffer, Child };
  static constexpr const char* kKinds[] = {"parameter", "buffer", "submodule"};

  // Registers `name` as a parameter or buffer on first use, then updates its slot.
  void set_tensor(const std::string& name, const Tensor& value, Kind kind, bool persistent) {
    DS_CHECK(value.defined(), ValueError, name_of(name), " is an undefined tensor");
    auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      claim(name, kind);
      it = tensors_.emplace(name, std::make_unique<Tensor>(value)).first;
      if (kind == Kind::Parameter)
        register_parameter(name, it->second.get());
      else
        register_buffer(name, it->second.get(), persistent);
      return;
    }
    claim(name, kind);
    *it->second = value;
  }
  void set_module(const std::string& name, std::shared_ptr<Module> m) {
    claim(name, Kind::Child);
    set_child(name, std::move(m));
  }
  // The kind `name` is registered as: "parameter", "buffer", "submodule", or "" if none.
  std::string kind(const std::string& name) const {
    auto it = kinds_.find(name);
    return it == kinds_.end() ? "" : kKinds[static_cast<int>(it->second)];
  }
  const Tensor* find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : it->second.get();
  }

 private:
  std::string name_of(const std::string& attr) const { return name() + "." + attr; }
  // A name keeps the kind it was first registered as (a parameter does not turn into a child).
  void claim(const std::string& name, Kind kind) {
    auto [it, fresh] = kinds_.emplace(name, kind);
    if (!fresh && it->second != kind)
      throw nb::type_error(detail::cat("cannot assign a ", kKinds[static_cast<int>(kind)], " to ",
                                       name_of(name), ": it is registered as a ",
                                       kKinds[static_cast<int>(it->second)])
                               .c_str());
  }
  std::map<std::string, std::unique_ptr<Tensor>> tensors_;  // stable slot addresses
  std::map<std::string, Kind> kinds_;
};

PyModule& python_module(Module& m, const char* what) {
  auto* p = dynamic_cast<PyModule*>(&m);
  if (!p)
    throw nb::type_error(detail::cat(what, ": ", m.name(),
                                     " is a built-in layer; only ds.nn.Module subclasses "
                                     "defined in Python register attributes")
                             .c_str());
  return *p;
}

nb::dict to_dict(const std::map<std::string, Tensor>& m) {
  nb::dict d;
  for (const auto& [k, v] : m) d[k.c_str()] = nb::cast(v);
  return d;
}

}  // namespace

void bind_module_base(nb::module_& nnm) {
  nb::class_<Module, PyModule>(
      nnm, "Module",
      "Base of every layer: named parameters and buffers, train/eval, state dicts. Subclass it "
      "in Python (call super().__init__(), define forward) as with torch.nn.Module.")
      .def(nb::init<>())
      .def("forward", &Module::forward, nb::arg("x"))
      .def("__call__", [](Module& m, nb::handle x) { return m.forward(to_tensor(x)); }, nb::arg("x"))
      .def("train", [](Module& m, bool mode) -> Module& { m.train(mode); return m; },
           nb::arg("mode") = true, nb::rv_policy::reference)
      .def("eval", [](Module& m) -> Module& { m.eval(); return m; }, nb::rv_policy::reference)
      .def_prop_ro("training", &Module::is_training)
      .def("to_channels_last",
           [](Module& m, bool on) -> Module& { m.to_channels_last(on); return m; },
           nb::arg("on") = true, nb::rv_policy::reference,
           "Channels-last activations [N, H, W, C] for this module and its descendants (like "
           "PyTorch's to(memory_format=torch.channels_last), explicit in the shapes); returns self.")
      .def_prop_ro("channels_last", &Module::is_channels_last)
      .def("parameters", &Module::parameters)
      .def("named_parameters", &Module::named_parameters)
      .def("named_buffers", &Module::named_buffers)
      .def("named_children",
           [](nb::handle self) {
             // The child objects Python created come back as themselves (with their Python
             // type); ones made in C++ get a wrapper that keeps this parent alive.
             nb::list out;
             for (const auto& [name, child] : nb::cast<Module&>(self).named_children())
               out.append(nb::make_tuple(name, nb::cast(child, nb::rv_policy::reference_internal, self)));
             return out;
           },
           "[(name, module)] of the direct children, in registration order.")
      .def("state_dict", [](const Module& m) { return to_dict(m.state_dict()); })
      .def("load_state_dict",
           [](Module& m, nb::dict state, bool strict) {
             std::map<std::string, Tensor> s;
             for (auto [k, v] : state) s[nb::cast<std::string>(k)] = to_tensor(v);
             m.load_state_dict(s, strict);
           },
           nb::arg("state_dict"), nb::arg("strict") = true)
      .def("__repr__", &Module::str)
      .def_prop_ro("_is_python_module", [](Module& m) { return dynamic_cast<PyModule*>(&m) != nullptr; })
      .def("_set_parameter",
           [](Module& m, const std::string& name, const Tensor& value) {
             python_module(m, "register_parameter").set_tensor(name, value, PyModule::Kind::Parameter, true);
           })
      .def("_set_buffer",
           [](Module& m, const std::string& name, const Tensor& value, bool persistent) {
             python_module(m, "register_buffer").set_tensor(name, value, PyModule::Kind::Buffer, persistent);
           })
      .def("_set_module",
           [](Module& m, const std::string& name, std::shared_ptr<Module> child) {
             python_module(m, "add_module").set_module(name, std::move(child));
           })
      .def("_kind",
           [](Module& m, const std::string& name) -> nb::object {
             auto* p = dynamic_cast<PyModule*>(&m);
             const std::string k = p ? p->kind(name) : "";
             if (k.empty()) return nb::none();
             return nb::str(k.c_str());
           })
      .def("_get_tensor",
           [](Module& m, const std::string& name) -> nb::object {
             auto* p = dynamic_cast<PyModule*>(&m);
             const Tensor* t = p ? p->find(name) : nullptr;
             if (!t) return nb::none();
             return nb::cast(*t);
           })
      .def("_swap_parameters",
           [](Module& m, nb::dict values) {
             // torch.func.functional_call: the given tensors (symbolic ones too) go into the
             // parameter slots; returns what the slots held, to swap back.
             nb::dict previous;
             for (auto& [name, slot] : m.parameter_slots()) {
               if (!values.contains(name.c_str())) continue;
               previous[name.c_str()] = nb::cast(*slot);
               *slot = nb::cast<Tensor>(values[name.c_str()]);
             }
             return previous;
           });
}

}  // namespace ds::py
