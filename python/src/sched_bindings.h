// Shared by the ds.sched bindings (sched_bindings.cpp: futures, Scheduler;
// sched_batch_bindings.cpp: policies, DynamicBatcher): Python references any
// thread may drop, Python errors carried across worker threads, future state.
#pragma once

#include <nanobind/nanobind.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "ds/sched.h"

namespace ds::py::sched_py {

using namespace ds::sched;

// An owned Python reference that any thread may drop (it takes the GIL then).
class PyRef {
 public:
  PyRef() = default;
  explicit PyRef(nb::handle h) : p_(h.inc_ref().ptr()) {}
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() {
    if (p_) release_py_ref(p_);
  }
  nb::handle get() const { return p_; }
  // Replaces the reference; call with the GIL held.
  void reset(nb::object o) {
    if (p_) Py_DECREF(p_);
    p_ = o.release().ptr();
  }

 private:
  PyObject* p_ = nullptr;
};

// A Python exception raised by work on a worker thread, carried to the waiters
// as a C++ error (the task keeps it; Python's collector cannot see into it).
class PythonWorkError : public Error {
 public:
  explicit PythonWorkError(nb::python_error& e)
      : Error(e.what()), exc_(std::make_shared<PyRef>(e.value())) {}
  nb::handle exception() const { return exc_->get(); }

 private:
  std::shared_ptr<PyRef> exc_;
};

// Raises a copy of a worker's exception (see sched_bindings.cpp).
[[noreturn]] void raise_copy(nb::handle original);

// Calls Python on a worker thread; a Python error leaves as PythonWorkError.
template <typename F>
auto call_python(F&& f) {
  nb::gil_scoped_acquire gil;
  try {
    return f();
  } catch (nb::python_error& e) {
    throw PythonWorkError(e);
  }
}

// What a future's result is made of.
enum class ResultKind { Object, List, Named };

// The Python side of one task: its result value, its callbacks.
struct FutureState : std::enable_shared_from_this<FutureState> {
  TaskHandle handle;
  ResultKind kind = ResultKind::Object;
  std::vector<std::string> names;  // ResultKind::Named: the executable's outputs
  PyRef value;                     // ResultKind::Object: set on the worker, GIL held
  std::mutex m;
  bool fired = false;
  std::vector<std::shared_ptr<PyRef>> callbacks;
  // Set while callbacks wait, so they run even if the Python future is dropped;
  // the task holds this state only weakly otherwise (the state holds the task).
  std::shared_ptr<FutureState> keep_alive;

  void fire();
};

struct Future {
  std::shared_ptr<FutureState> s;
};

// Waits for the task with the GIL released; false when `timeout` seconds pass first.
bool wait_for(const TaskHandle& h, std::optional<double> timeout);
// A deadline from timeout= (seconds from now) or deadline= (time.monotonic()).
std::optional<TimePoint> deadline_of(std::optional<double> timeout, std::optional<double> deadline);
Future make_future(ResultKind kind, std::vector<std::string> names = {});
// The on_done callback that runs the future's done-callbacks.
Callback fire_on_done(const std::shared_ptr<FutureState>& s);
std::vector<std::string> output_names(const Executable& exe);

// The Scheduler as Python holds it: its destructor waits for running work,
// which may need the GIL, so it releases the GIL first.
struct PyScheduler {
  std::unique_ptr<Scheduler> s;
  ~PyScheduler() { close(); }
  Scheduler& get() const {
    DS_CHECK(s != nullptr, ValueError, "Scheduler: it was shut down");
    return *s;
  }
  void close() {
    if (!s) return;
    nb::gil_scoped_release unlocked;
    s.reset();
  }
};

void bind_batching(nb::module_& m);  // sched_batch_bindings.cpp: policies, DynamicBatcher

}  // namespace ds::py::sched_py
