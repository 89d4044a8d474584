// ds.save / ds.load: a model (a Graph with its constant weights) as a folder
// (graph.json + weights.safetensors), the format `ds serve` reads.
#include "bindings.h"
#include "ds/model_io.h"

namespace ds::py {

void bind_model_io(nb::module_& m) {
  auto fspath = [](nb::handle path) {
    return nb::cast<std::string>(nb::str(nb::module_::import_("os").attr("fspath")(path)));
  };
  m.def(
      "save",
      [fspath](const Graph& graph, nb::handle path) {
        const std::string dir = fspath(path);
        nb::gil_scoped_release unlocked;
        save(graph, dir);
      },
      nb::arg("graph"), nb::arg("path"),
      "Writes a graph and its weights to the folder `path` (created if missing): "
      "graph.json and weights.safetensors, as `ds serve` model repositories hold them.");
  m.def(
      "load",
      [fspath](nb::handle path) {
        const std::string p = fspath(path);
        nb::gil_scoped_release unlocked;
        return load(p);
      },
      nb::arg("path"), "Reads a model saved with ds.save (or another registered format) as a Graph.");
}

}  // namespace ds::py
