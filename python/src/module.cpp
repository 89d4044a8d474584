// The deepseek._core extension module; each topic binds itself.
#include "bindings.h"

namespace ds::py {
// Declared here, not in bindings.h, so that adding them rebuilds one file.
void bind_io(nb::module_& m);           // io_bindings.cpp: safetensors, IDX
void bind_tensorboard(nb::module_& m);  // tensorboard_bindings.cpp
void bind_data(nb::module_& m);         // data_bindings.cpp
void bind_profile(nb::module_& m);      // profile_bindings.cpp: profile, monitor
void bind_nn(nb::module_& m);           // nn_bindings.cpp: nn, optim, value_and_grad
void bind_cuda(nb::module_& m);         // cuda_bindings.cpp: ds.cuda
void bind_debug(nb::module_& m);        // debug_bindings.cpp: ds.debug
void bind_models(nb::module_& m);       // models_bindings.cpp: ds.models (after nn)
void bind_sched(nb::module_& m);        // sched_bindings.cpp: ds.sched
void bind_model_io(nb::module_& m);     // model_io_bindings.cpp: ds.save, ds.load
}  // namespace ds::py

NB_MODULE(_core, m) {
  m.doc() = "deepseek's C++ core; use the `deepseek` package.";
  ds::py::bind_errors(m);
  ds::py::bind_dtype(m);
  ds::py::bind_tensor(m);
  ds::py::bind_graph(m);
  ds::py::bind_runtime(m);
  ds::py::bind_ops(m);
  ds::py::bind_io(m);
  ds::py::bind_tensorboard(m);
  ds::py::bind_data(m);
  ds::py::bind_profile(m);
  ds::py::bind_nn(m);
  ds::py::bind_models(m);
  ds::py::bind_debug(m);
  ds::py::bind_cuda(m);
  ds::py::bind_sched(m);
  ds::py::bind_model_io(m);
}
