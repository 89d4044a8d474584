// Python exceptions mirroring ds::Error's hierarchy. Each also derives from the
// matching builtin, so `except ValueError` catches a ShapeError and
// `except LookupError` an unknown feed name.
#include "bindings.h"

namespace ds::py {
namespace {

struct ErrorClasses {
  PyObject* error = nullptr;
  PyObject* shape = nullptr;
  PyObject* dtype = nullptr;
  PyObject* invalid = nullptr;
  PyObject* not_found = nullptr;
  PyObject* unavailable = nullptr;
  PyObject* io = nullptr;
  PyObject* oom = nullptr;
};

// Owned by the module (its attributes); borrowed here for the translator.
ErrorClasses classes;

PyObject* make_class(nb::module_& m, const char* name, std::initializer_list<PyObject*> bases,
                     const char* doc) {
  nb::list base_list;
  for (PyObject* b : bases) base_list.append(nb::borrow(b));
  const std::string qualified = std::string("deepseek.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc,
                                            nb::tuple(base_list).ptr(), nullptr);
  if (!cls) throw nb::python_error();
  m.attr(name) = nb::steal(cls);
  return cls;
}

}  // namespace

void bind_errors(nb::module_& m) {
  classes.error = make_class(m, "Error", {PyExc_RuntimeError}, "Base of every deepseek error.");
  classes.shape = make_class(m, "ShapeError", {classes.error, PyExc_ValueError},
                             "Incompatible or unexpected shapes.");
  classes.dtype = make_class(m, "DTypeError", {classes.error, PyExc_TypeError},
                             "Wrong dtype or attribute kind.");
  classes.invalid = make_class(m, "InvalidArgument", {classes.error, PyExc_ValueError},
                               "A bad argument value.");
  classes.not_found = make_class(m, "NotFoundError", {classes.error, PyExc_LookupError},
                                 "Unknown op, target, feed or file.");
  classes.unavailable = make_class(m, "UnavailableError", {classes.error},
                                   "Built without a component, or no such device here.");
  classes.io = make_class(m, "IOError", {classes.error, PyExc_OSError},
                          "An unreadable or malformed file.");
  classes.oom = make_class(m, "OutOfMemoryError", {classes.error, PyExc_MemoryError},
                           "An allocation failed.");

  // Most derived first: the first matching catch wins.
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const ds::ShapeError& e) {
      PyErr_SetString(classes.shape, e.what());
    } catch (const ds::TypeError& e) {
      PyErr_SetString(classes.dtype, e.what());
    } catch (const ds::ValueError& e) {
      PyErr_SetString(classes.invalid, e.what());
    } catch (const ds::NotFoundError& e) {
      PyErr_SetString(classes.not_found, e.what());
    } catch (const ds::UnavailableError& e) {
      PyErr_SetString(classes.unavailable, e.what());
    } catch (const ds::IOError& e) {
      PyErr_SetString(classes.io, e.what());
    } catch (const ds::OutOfMemoryError& e) {
      PyErr_SetString(classes.oom, e.what());
    } catch (const ds::Error& e) {
      PyErr_SetString(classes.error, e.what());
    }
  });
}

}  // namespace ds::py
