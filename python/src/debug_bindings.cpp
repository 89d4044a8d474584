// ds.debug: the training debugger (statistics every N steps, NaN/Inf detection
// naming the first op) over a compiled ds.optim.TrainStep.
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "ds/debug.h"
#include "ds/tensorboard.h"

namespace ds::py {
namespace {

PyObject* g_nonfinite = nullptr;  // ds.debug.NonFiniteError

nb::dict stats_dict(const debug::TensorStats& s) {
  nb::dict d;
  d["numel"] = s.numel;
  d["nonfinite"] = s.nonfinite;
  d["mean"] = s.mean;
  d["std"] = s.std;
  d["min"] = s.min;
  d["max"] = s.max;
  d["norm"] = s.norm;
  return d;
}

// The native writer behind a ds.tensorboard.SummaryWriter (or the native one itself).
tensorboard::SummaryWriter* native_writer(nb::handle w) {
  if (w.is_none()) return nullptr;
  if (nb::hasattr(w, "_writer")) w = w.attr("_writer");
  return nb::cast<tensorboard::SummaryWriter*>(w);
}

}  // namespace

void bind_debug(nb::module_& m) {
  nb::module_ dm = m.def_submodule("debug", "Training debugger (ds::debug).");
  nb::object invalid = m.attr("InvalidArgument");
  g_nonfinite = PyErr_NewExceptionWithDoc(
      "deepseek.debug.NonFiniteError",
      "A training step produced NaN/Inf; .step, .op, .node, .layer, .phase name where.",
      invalid.ptr(), nullptr);
  dm.attr("NonFiniteError") = nb::handle(g_nonfinite);
  // Registered after the general translator, so it is tried first.
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const debug::NonFiniteError& e) {
      const debug::NonFiniteReport& r = e.report();
      nb::object exc = nb::steal(PyObject_CallFunction(g_nonfinite, "s", e.what()));
      exc.attr("step") = r.step;
      exc.attr("op") = r.op;
      exc.attr("node") = r.node;
      exc.attr("node_label") = r.node_label;
      exc.attr("layer") = r.layer;
      exc.attr("phase") = r.phase;
      PyErr_SetObject(g_nonfinite, exc.ptr());
    }
  });

  dm.def("tensor_stats", [](nb::handle t) { return stats_dict(debug::tensor_stats(to_tensor(t))); },
         nb::arg("tensor"), "numel, nonfinite, mean, std, min, max, norm (over the finite elements)");

  nb::class_<debug::Debugger>(dm, "Debugger",
                              "Runs a TrainStep; statistics every N steps, NaN/Inf detection")
      .def("__init__",
           [](debug::Debugger* self, nn::Module& model, optim::TrainStep& step,
              optim::LossFn loss, nb::handle writer, int64_t every, bool histograms,
              bool check_finite) {
             new (self) debug::Debugger(model, step, std::move(loss), native_writer(writer),
                                        {.every = every,
                                         .histograms = histograms,
                                         .check_finite = check_finite});
           },
           nb::arg("model"), nb::arg("train_step"), nb::arg("loss_fn"),
           nb::arg("writer") = nb::none(), nb::arg("every") = 100, nb::arg("histograms") = true,
           nb::arg("check_finite") = true, nb::keep_alive<1, 2>(), nb::keep_alive<1, 3>(),
           nb::keep_alive<1, 5>())
      .def("step",
           [](debug::Debugger& d, nb::handle x, nb::handle y) {
             optim::StepResult r = d.step(to_tensor(x), to_tensor(y));
             return std::make_pair(r.loss, r.output);
           },
           nb::arg("input"), nb::arg("target"), "One training step; returns (loss, output).")
      .def_prop_ro("steps", &debug::Debugger::steps)
      .def_prop_ro("last_stats", &debug::Debugger::last_stats,
                   "{tag: value} of the latest statistics step")
      .def_prop_ro("activation_names", &debug::Debugger::activation_names);
}

}  // namespace ds::py
