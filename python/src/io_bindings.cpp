// Checkpoint and dataset files: ds.save_safetensors / ds.load_safetensors and
// ds.read_idx.
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>

#include "bindings.h"
#include "ds/data.h"
#include "ds/safetensors.h"

namespace ds::py {
namespace {

// A str or os.PathLike as a path string.
std::string path_arg(nb::handle path) {
  return nb::cast<std::string>(nb::str(nb::module_::import_("os").attr("fspath")(path)));
}

}  // namespace

void bind_io(nb::module_& m) {
  m.def(
      "save_safetensors",
      [](nb::handle path, nb::handle tensors, nb::handle metadata) {
        DS_CHECK(nb::isinstance<nb::dict>(tensors), TypeError,
                 "save_safetensors: tensors must be a dict {name: tensor or array}, got ",
                 nb::cast<std::string>(nb::type_name(tensors.type())));
        TensorMap map;
        for (auto [k, v] : nb::borrow<nb::dict>(tensors)) {
          DS_CHECK(nb::isinstance<nb::str>(k), TypeError,
                   "save_safetensors: tensor names must be strings, got ",
                   nb::cast<std::string>(nb::repr(k)));
          map.emplace(nb::cast<std::string>(k), to_tensor_view(v));
        }
        SafetensorsMetadata meta;
        if (!metadata.is_none()) meta = nb::cast<SafetensorsMetadata>(metadata);
        const std::string p = path_arg(path);
        nb::gil_scoped_release unlocked;
        save_safetensors(p, map, meta);
      },
      nb::arg("path"), nb::arg("tensors"), nb::arg("metadata") = nb::none(),
      "Writes {name: tensor} (ds tensors or numpy arrays) and optional {str: str} "
      "metadata as a safetensors file, atomically (a temporary file renamed into place).");
  m.def(
      "load_safetensors",
      [](nb::handle path) {
        const std::string p = path_arg(path);
        TensorMap map;
        {
          nb::gil_scoped_release unlocked;
          map = load_safetensors(p);
        }
        nb::dict out;
        for (auto& [name, t] : map) out[nb::str(name.c_str())] = nb::cast(std::move(t));
        return out;
      },
      nb::arg("path"), "Reads a safetensors file into {name: ds.Tensor}.");
  m.def(
      "load_safetensors_metadata",
      [](nb::handle path) { return load_safetensors_metadata(path_arg(path)); },
      nb::arg("path"), "The {str: str} '__metadata__' of a safetensors file.");
  m.def(
      "read_idx",
      [](nb::handle path) {
        const std::string p = path_arg(path);
        nb::gil_scoped_release unlocked;
        return data::read_idx(p);
      },
      nb::arg("path"),
      "Reads an IDX file (MNIST format, plain or .gz) into a ds.Tensor.");
}

}  // namespace ds::py
