// The deepseek._core extension module; each topic binds itself.
#include "bindings.h"

namespace ds::py {
// Declared here, not in bindings.h, so that adding them rebuilds one file.
void bind_io(nb::module_& m);           // io_bindings.cpp: safetensors, IDX
void bind_tensorboard(nb::module_& m);  // tensorboard_bindings.cpp
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
}
