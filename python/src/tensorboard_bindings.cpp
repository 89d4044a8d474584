// ds.tensorboard.SummaryWriter: the native C++ writer (python/deepseek/tensorboard.py
// adds PyTorch's argument names and defaults on top).
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "ds/nn/module.h"
#include "ds/tensorboard.h"

namespace ds::py {

void bind_tensorboard(nb::module_& m) {
  using tensorboard::Histogram;
  using tensorboard::SummaryWriter;
  using tensorboard::SummaryWriterOptions;
  nb::module_ tb = m.def_submodule("tensorboard", "Native TensorBoard event-file writer.");

  nb::class_<Histogram>(tb, "Histogram", "A histogram in TensorBoard's default buckets.")
      .def_static(
          "from_values", [](nb::handle values) { return Histogram::from_values(to_tensor(values)); },
          nb::arg("values"))
      .def_ro("min", &Histogram::min)
      .def_ro("max", &Histogram::max)
      .def_ro("num", &Histogram::num)
      .def_ro("sum", &Histogram::sum)
      .def_ro("sum_squares", &Histogram::sum_squares)
      .def_ro("bucket_limits", &Histogram::bucket_limits)
      .def_ro("bucket_counts", &Histogram::bucket_counts);

  nb::class_<SummaryWriter>(tb, "SummaryWriter")
      .def(
          "__init__",
          [](SummaryWriter* self, const std::string& logdir, double flush_secs, int max_queue,
             const std::string& filename_suffix, std::optional<int64_t> purge_step) {
            new (self) SummaryWriter(
                logdir, SummaryWriterOptions{flush_secs, max_queue, filename_suffix, purge_step});
          },
          nb::arg("logdir"), nb::arg("flush_secs") = 120.0, nb::arg("max_queue") = 10,
          nb::arg("filename_suffix") = "", nb::arg("purge_step") = nb::none())
      .def("add_scalar", &SummaryWriter::add_scalar, nb::arg("tag"), nb::arg("value"),
           nb::arg("step"), nb::arg("wall_time") = nb::none())
      .def("add_scalars", &SummaryWriter::add_scalars, nb::arg("main_tag"), nb::arg("values"),
           nb::arg("step"), nb::arg("wall_time") = nb::none())
      .def(
          "add_histogram",
          [](SummaryWriter& w, const std::string& tag, nb::handle values, int64_t step,
             std::optional<double> wall_time) {
            if (nb::isinstance<Histogram>(values))
              w.add_histogram(tag, nb::cast<const Histogram&>(values), step, wall_time);
            else
              w.add_histogram(tag, to_tensor_view(values), step, wall_time);
          },
          nb::arg("tag"), nb::arg("values"), nb::arg("step"), nb::arg("wall_time") = nb::none())
      .def("add_text", &SummaryWriter::add_text, nb::arg("tag"), nb::arg("text"),
           nb::arg("step"), nb::arg("wall_time") = nb::none())
      .def("add_graph", nb::overload_cast<const Graph&>(&SummaryWriter::add_graph),
           nb::arg("graph"))
      .def(
          "add_module_graph",
          [](SummaryWriter& w, nn::Module& model, nb::handle input_shape, nb::handle dtype) {
            Shape shape;
            for (nb::handle d : input_shape)
              shape.push_back(d.is_none() ? dyn : nb::cast<int64_t>(nb::int_(d)));
            w.add_graph(model, shape, to_dtype(dtype));
          },
          nb::arg("model"), nb::arg("input_shape"), nb::arg("dtype") = "float32")
      .def("flush", &SummaryWriter::flush, nb::call_guard<nb::gil_scoped_release>())
      .def("close", &SummaryWriter::close, nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("logdir", &SummaryWriter::logdir)
      .def_prop_ro("file_path", &SummaryWriter::file_path);
}

}  // namespace ds::py
