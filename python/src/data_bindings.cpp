// ds.data: TensorDataset, fashion_mnist and the C++ DataLoader (seeded shuffling,
// background prefetch). Any Python object with __len__ and __getitem__ (a
// PyTorch-style map dataset) also works as a dataset.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "ds/data.h"

namespace ds::py {
namespace {

using data::DataLoader;
using data::Dataset;
using data::Example;
using data::TensorDataset;

nb::tuple to_tuple(const Example& ex) {
  nb::list out;
  for (const Tensor& t : ex) out.append(nb::cast(t));
  return nb::tuple(out);
}

// A Python dataset seen from C++. The loader's worker thread calls it, taking the
// GIL for each example; the consumer releases the GIL while it waits.
class PyDataset : public Dataset {
 public:
  explicit PyDataset(nb::handle obj) : obj_(obj.ptr()) { Py_INCREF(obj_); }
  ~PyDataset() override { release_py_ref(obj_); }

  int64_t size() const override {
    nb::gil_scoped_acquire gil;
    return nb::cast<int64_t>(nb::handle(obj_).attr("__len__")());
  }
  Example get(int64_t index) const override {
    nb::gil_scoped_acquire gil;
    try {
      nb::object item = nb::handle(obj_).attr("__getitem__")(index);
      Example ex;
      if (nb::isinstance<nb::tuple>(item) || nb::isinstance<nb::list>(item)) {
        for (nb::handle field : item) ex.push_back(to_tensor(field).contiguous());
      } else {
        ex.push_back(to_tensor(item).contiguous());
      }
      return ex;
    } catch (nb::python_error& e) {
      // Carry the Python error's text across the worker thread as a ds error.
      throw Error(detail::cat("dataset[", index, "]: ", e.what()));
    }
  }

 private:
  PyObject* obj_;
};

std::shared_ptr<const Dataset> as_dataset(nb::handle h) {
  if (nb::isinstance<TensorDataset>(h)) return nb::cast<std::shared_ptr<TensorDataset>>(h);
  DS_CHECK(nb::hasattr(h, "__len__") && nb::hasattr(h, "__getitem__"), TypeError,
           "DataLoader: the dataset must be a ds.data.TensorDataset or have __len__ and "
           "__getitem__, got ", nb::cast<std::string>(nb::type_name(h.type())));
  return std::make_shared<PyDataset>(h);
}

// One epoch as a Python iterator. Stopping it (or dropping it) joins the worker
// with the GIL released, since a Python dataset's worker may be waiting for it.
struct PyEpoch {
  std::optional<DataLoader::Epoch> epoch;
  explicit PyEpoch(DataLoader::Epoch e) : epoch(std::move(e)) {}
  ~PyEpoch() { close(); }
  void close() {
    if (!epoch) return;
    nb::gil_scoped_release unlocked;
    epoch.reset();
  }
  nb::tuple next() {
    if (!epoch) throw nb::stop_iteration();
    std::optional<Example> batch;
    {
      nb::gil_scoped_release unlocked;
      batch = epoch->next();
    }
    if (!batch) {
      close();
      throw nb::stop_iteration();
    }
    return to_tuple(*batch);
  }
};

}  // namespace

void bind_data(nb::module_& m) {
  nb::module_ d = m.def_submodule("data", "Datasets and the DataLoader.");

  nb::class_<TensorDataset>(d, "TensorDataset",
                            "Examples are rows (along axis 0) of equally long tensors.")
      .def(
          "__init__",
          [](TensorDataset* self, nb::args tensors) {
            std::vector<Tensor> ts;
            for (nb::handle h : tensors) ts.push_back(to_tensor(h));
            new (self) TensorDataset(std::move(ts));
          },
          "Takes tensors or arrays with the same first extent.")
      .def("__len__", &TensorDataset::size)
      .def("__getitem__",
           [](const TensorDataset& ds, int64_t i) {
             if (i < 0) i += ds.size();
             return to_tuple(ds.get(i));
           })
      .def_prop_ro("tensors", [](const TensorDataset& ds) { return to_tuple(ds.tensors()); });

  d.attr("FASHION_MNIST_DIR") = data::kFashionMnistDir;
  d.def(
      "fashion_mnist",
      [](const std::string& root, bool train) {
        nb::gil_scoped_release unlocked;
        return data::fashion_mnist(root, train);
      },
      nb::arg("root") = data::kFashionMnistDir, nb::arg("train") = true,
      "Fashion-MNIST (IDX files, .gz or plain, in `root`): images float32 [N, 1, 28, 28] in "
      "[0, 1] and labels int64 [N].");

  nb::class_<PyEpoch>(d, "_Epoch")
      .def("__iter__", [](nb::handle self) { return self; })
      .def("__next__", &PyEpoch::next)
      .def("close", &PyEpoch::close);

  nb::class_<DataLoader>(d, "DataLoader",
                         "Batches (tuples of tensors) in a seeded order, prepared ahead on a "
                         "background thread.")
      .def(
          "__init__",
          [](DataLoader* self, nb::handle dataset, int64_t batch_size, bool shuffle,
             uint64_t seed, bool drop_last, int prefetch) {
            new (self) DataLoader(as_dataset(dataset),
                                  {batch_size, shuffle, seed, drop_last, prefetch});
          },
          nb::arg("dataset"), nb::arg("batch_size") = 1, nb::arg("shuffle") = false,
          nb::arg("seed") = 0, nb::arg("drop_last") = false, nb::arg("prefetch") = 2)
      .def("__len__", &DataLoader::num_batches)
      .def("__iter__", [](DataLoader& l) { return new PyEpoch(l.epoch()); },
           nb::rv_policy::take_ownership, "Starts the next epoch.")
      .def("set_epoch", &DataLoader::set_epoch, nb::arg("epoch"),
           "The epoch the next iteration runs (its shuffling order), e.g. on resume.")
      .def("order", &DataLoader::order, nb::arg("epoch"),
           "The example order of `epoch`.")
      .def_prop_ro("batch_size", [](const DataLoader& l) { return l.options().batch_size; });
}

}  // namespace ds::py
