// ds.Graph: placeholders, constants, op nodes, outputs, printing and hashing.
// Op methods (graph.matmul(a, b, name="c")) come from the Python side, which
// routes every op wrapper through ds._core.apply.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

namespace ds::py {
namespace {

Shape to_shape(nb::handle seq) {
  Shape s;
  for (nb::handle d : seq) s.push_back(d.is_none() ? dyn : nb::cast<int64_t>(nb::int_(d)));
  return s;
}

}  // namespace

void bind_graph(nb::module_& m) {
  nb::class_<Graph>(m, "Graph",
                    "A dataflow graph. Ops applied to its placeholders (or called as "
                    "methods, graph.matmul(a, b, name='c')) add nodes.")
      .def(nb::init<>())
      .def("placeholder",
           [](Graph& g, const std::string& name, nb::handle shape, nb::handle dtype) {
             return g.placeholder(name, to_shape(shape), to_dtype(dtype));
           },
           nb::arg("name"), nb::arg("shape"), nb::arg("dtype") = "float32",
           "An input fed at run time by `name`; None in `shape` marks a symbolic extent "
           "(e.g. the batch: [None, 784]).")
      .def("constant",
           [](Graph& g, nb::handle value, const std::string& name) {
             return g.constant(to_tensor(value).clone(), name);
           },
           nb::arg("value"), nb::arg("name") = "", "A constant (a copy of `value`).")
      .def("output", &Graph::output, nb::arg("value"), nb::arg("name") = "",
           "Marks `value` as an output, fetched by `name` from Executable.run.")
      .def("add",
           [](Graph& g, const std::string& op, nb::handle inputs, nb::handle attrs,
              const std::string& name) {
             std::vector<Tensor> in;
             for (nb::handle h : inputs) in.push_back(h.is_none() ? Tensor() : to_tensor(h));
             return g.add(op, in, to_attrs(attrs), name);
           },
           nb::arg("op"), nb::arg("inputs"), nb::arg("attrs") = nb::none(),
           nb::arg("name") = "", "Adds a node of any registered op; returns its outputs.")
      .def("owns",
           [](const Graph& g, const Tensor& t) {
             return t.is_symbolic() && t.impl().graph == g.data();
           },
           nb::arg("value"), "Whether `value` is a value of this graph.")
      .def_prop_ro("outputs",
                   [](const Graph& g) {
                     std::vector<std::pair<std::string, Tensor>> out;
                     for (const auto& [name, v] : g.outputs()) out.emplace_back(name, g.value(v));
                     return out;
                   },
                   "(name, value) pairs: the explicit outputs, else every unused value.")
      .def_prop_ro("placeholders",
                   [](const Graph& g) {
                     std::vector<std::string> names;
                     for (int id : g.placeholder_ids()) names.push_back(g.node(id).name);
                     return names;
                   })
      .def("__len__", [](const Graph& g) { return g.nodes().size(); })
      .def("verify", &Graph::verify, "Checks every node; raises an Error naming the bad one.")
      .def("to_dot", &Graph::to_dot, "Graphviz DOT text.")
      .def("hash", &Graph::hash, "Structural hash: ops, attributes, types and wiring.")
      .def("__str__", &Graph::str)
      .def("__repr__", [](const Graph& g) {
        return "<ds.Graph with " + std::to_string(g.nodes().size()) + " nodes>";
      });
}

}  // namespace ds::py
