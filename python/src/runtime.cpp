// compile() and Executable, plus machine/build information and allocator stats.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

namespace ds::py {
namespace {

nb::dict io_spec(const IOSpec& s) {
  nb::list shape;
  for (int64_t d : s.type.shape) shape.append(d == dyn ? nb::none() : nb::object(nb::int_(d)));
  nb::dict d;
  d["name"] = s.name;
  d["shape"] = nb::tuple(shape);
  d["dtype"] = dtype_object(s.type.dtype);
  return d;
}

nb::list io_specs(const std::vector<IOSpec>& v) {
  nb::list out;
  for (const auto& s : v) out.append(io_spec(s));
  return out;
}

nb::dict run(const Executable& exe, nb::handle feeds) {
  DS_CHECK(nb::isinstance<nb::dict>(feeds), TypeError,
           "run: feeds must be a dict {placeholder name: array}, got ",
           nb::cast<std::string>(nb::type_name(feeds.type())));
  std::map<std::string, Tensor> in;
  for (auto [k, v] : nb::borrow<nb::dict>(feeds)) {
    DS_CHECK(nb::isinstance<nb::str>(k), TypeError, "run: feed names must be strings, got ",
             nb::cast<std::string>(nb::repr(k)));
    // numpy feeds are viewed, not copied; run() converts dtypes where needed.
    in.emplace(nb::cast<std::string>(k), to_tensor_view(v));
  }
  std::map<std::string, Tensor> out;
  {
    nb::gil_scoped_release unlocked;
    out = exe.run(in);
  }
  nb::dict result;
  for (const auto& [name, t] : out) result[name.c_str()] = to_numpy(t);
  return result;
}

}  // namespace

void bind_runtime(nb::module_& m) {
  nb::class_<Executable>(m, "Executable", "A compiled graph for one target.")
      .def("run", &run, nb::arg("feeds"),
           "Runs the graph. `feeds` maps each placeholder name to a numpy array (or "
           "Tensor, list, scalar); floats of another precision are cast to the "
           "placeholder's dtype. Returns {output name: numpy array}. Missing, extra, "
           "wrong-shape or wrong-dtype feeds raise errors naming the placeholder. "
           "Thread-safe; releases the GIL while it runs.")
      .def_prop_ro("target", &Executable::target)
      .def_prop_ro("inputs", [](const Executable& e) { return io_specs(e.inputs()); },
                   "[{'name', 'shape', 'dtype'}] per placeholder, in feed order.")
      .def_prop_ro("outputs", [](const Executable& e) { return io_specs(e.outputs()); })
      .def_prop_ro("graph", [](const Executable& e) { return e.graph(); },
                   "The optimized graph that runs.")
      .def("explain", &Executable::explain, "Why this target, and the kernel of each node.")
      .def("stats", [](const Executable& e) {
        const ExecutableStats s = e.stats();
        nb::dict d;
        d["kernels"] = s.kernels;
        d["flops"] = s.flops;
        d["bytes"] = s.bytes;
        d["peak_bytes"] = s.peak_bytes;
        d["arena_bytes"] = s.arena_bytes;
        d["unplanned_bytes"] = s.unplanned_bytes;
        d["cuda_graph_captures"] = s.cuda_graph_captures;
        d["cuda_graph_replays"] = s.cuda_graph_replays;
        return d;
      })
      .def("run_tensors",
           [](const Executable& e, const std::vector<Tensor>& feeds) {
             nb::gil_scoped_release unlocked;
             return e.run(feeds);
           },
           nb::arg("feeds"),
           "Runs with feeds in placeholder order; returns the outputs as Tensors, in order.");

  m.def("compile",
        [](const Graph& g, const std::string& target, int opt_level, int64_t memory_budget,
           const std::string& precision) {
          CompileOptions o;
          o.opt_level = opt_level;
          o.memory_budget = memory_budget;
          o.precision = precision;
          nb::gil_scoped_release unlocked;
          return compile(g, target, o);
        },
        nb::arg("graph"), nb::arg("target") = "auto", nb::arg("opt_level") = 2,
        nb::arg("memory_budget") = 0, nb::arg("precision") = "fp32",
        "Compiles `graph` for `target` ('cpu', 'gpu'/'cuda', 'auto'). An unavailable or "
        "unknown target raises an error listing the targets available here. `precision` "
        "'bf16'/'fp16' runs matmul/linear/conv in that precision (float32 elsewhere).");
  m.attr("__version__") = build_info().version;
  m.def("available_targets", &available_targets);
  m.def("info", &info_text, "Version, CPU, threads, targets and optional components.");
  m.def("num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads, nb::arg("n"));
  m.def("memory_stats", [] {
    const MemoryStats s = memory_stats();
    nb::dict d;
    d["current_bytes"] = s.current_bytes;
    d["peak_bytes"] = s.peak_bytes;
    d["reserved_bytes"] = s.reserved_bytes;
    d["allocations"] = s.allocations;
    d["pool_hits"] = s.pool_hits;
    return d;
  }, "CPU pool allocator statistics.");
  m.def("reset_peak_memory", &reset_peak_memory);
  m.def("empty_cache", &empty_cache, "Returns the pool's cached blocks to the system.");
}

}  // namespace ds::py
