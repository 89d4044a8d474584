// The deepseek._core extension module; each topic binds itself.
#include "bindings.h"

NB_MODULE(_core, m) {
  m.doc() = "deepseek's C++ core; use the `deepseek` package.";
  ds::py::bind_errors(m);
  ds::py::bind_dtype(m);
  ds::py::bind_tensor(m);
  ds::py::bind_graph(m);
  ds::py::bind_runtime(m);
  ds::py::bind_ops(m);
}
