// ds.sched: futures, the priority Scheduler and its exceptions (policies and
// the DynamicBatcher are in sched_batch_bindings.cpp). Python work runs on the
// scheduler's C++ worker threads: each call takes the GIL for as long as it
// runs Python code, and every wait on the C++ side (submitting, waiting for a
// result, shutting down) releases it, so the workers never block on a thread
// that waits for them.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <mutex>

#include "sched_bindings.h"

namespace ds::py::sched_py {

// Raises a copy of the worker's exception, with the worker's traceback: raising
// the original would grow its traceback with the waiter's frames (which hold the
// future), a cycle through C++ that the collector cannot break.
[[noreturn]] void raise_copy(nb::handle original) {
  nb::object e = nb::borrow(original);
  nb::object raised = e;
  try {
    raised = nb::module_::import_("copy").attr("copy")(e);
    raised.attr("__traceback__") = e.attr("__traceback__");
  } catch (nb::python_error&) {
    raised = e;  // not copyable: the original it is
  }
  PyObject* tb = PyException_GetTraceback(raised.ptr());  // new reference (or null)
  PyObject* type = nb::handle(Py_TYPE(raised.ptr())).inc_ref().ptr();
  PyErr_Restore(type, raised.release().ptr(), tb);
  throw nb::python_error();
}

void call_back(const std::shared_ptr<FutureState>& s, nb::handle fn) {
  try {
    fn(nb::cast(Future{s}));
  } catch (nb::python_error& e) {
    // As concurrent.futures does: a failing callback is reported, not raised.
    e.discard_as_unraisable("a ds.sched.Future done-callback");
  }
}

void FutureState::fire() {
  std::vector<std::shared_ptr<PyRef>> run;
  std::shared_ptr<FutureState> self;
  {
    std::lock_guard lock(m);
    fired = true;
    run.swap(callbacks);
    self.swap(keep_alive);
  }
  if (run.empty()) return;
  nb::gil_scoped_acquire gil;
  for (const auto& fn : run) call_back(self, fn->get());
}

const char* status_str(TaskStatus s) { return status_name(s); }

// Waits for the task with the GIL released, in slices, so Ctrl-C still works.
bool wait_for(const TaskHandle& h, std::optional<double> timeout) {
  const auto until = timeout ? std::optional(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                                std::chrono::duration<double>(*timeout)))
                             : std::nullopt;
  for (;;) {
    auto slice = Clock::now() + std::chrono::milliseconds(50);
    if (until && *until < slice) slice = *until;
    bool done;
    {
      nb::gil_scoped_release unlocked;
      done = h.wait_until(slice);
    }
    if (done) return true;
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
    if (until && Clock::now() >= *until) return false;
  }
}

nb::object result(const Future& f, std::optional<double> timeout) {
  const FutureState& s = *f.s;
  if (!wait_for(s.handle, timeout)) {
    PyErr_Format(PyExc_TimeoutError, "the task is still %s after %g s", status_name(s.handle.status()),
                 *timeout);
    throw nb::python_error();
  }
  Outputs outs;
  try {
    nb::gil_scoped_release unlocked;
    outs = s.handle.get();  // rethrows the work's error or the rejection
  } catch (const PythonWorkError& e) {
    raise_copy(e.exception());
  }
  if (s.kind == ResultKind::Object) return s.value.get() ? nb::borrow(s.value.get()) : nb::none();
  if (s.kind == ResultKind::Named) {
    nb::dict d;
    for (size_t i = 0; i < outs.size() && i < s.names.size(); ++i)
      d[s.names[i].c_str()] = to_numpy(outs[i]);
    return d;
  }
  nb::list l;
  for (const Tensor& t : outs) l.append(to_numpy(t));
  return l;
}

std::optional<TimePoint> deadline_of(std::optional<double> timeout, std::optional<double> deadline) {
  DS_CHECK(!(timeout && deadline), ValueError, "submit: give timeout= (seconds from now) or ",
           "deadline= (a time.monotonic() value), not both");
  if (timeout) {
    DS_CHECK(*timeout >= 0, ValueError, "submit: timeout must be >= 0 seconds, got ", *timeout);
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*timeout));
  }
  // time.monotonic() and steady_clock read the same clock (CLOCK_MONOTONIC).
  if (deadline)
    return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*deadline)));
  return std::nullopt;
}

Future make_future(ResultKind kind, std::vector<std::string> names) {
  auto s = std::make_shared<FutureState>();
  s->kind = kind;
  s->names = std::move(names);
  return {s};
}

Callback fire_on_done(const std::shared_ptr<FutureState>& s) {
  return [w = std::weak_ptr<FutureState>(s)](const TaskHandle&) {
    if (auto s = w.lock()) s->fire();
  };
}

std::vector<std::string> output_names(const Executable& exe) {
  std::vector<std::string> names;
  for (const IOSpec& o : exe.outputs()) names.push_back(o.name);
  return names;
}

namespace {

struct Exceptions {
  PyObject* rejected = nullptr;
  PyObject* expired = nullptr;
  PyObject* cancelled = nullptr;
};
Exceptions exceptions;  // owned by the module (its attributes)

// Inputs of an executable by placeholder name: a dict, or a list in order.
std::map<std::string, Tensor> executable_inputs(const Executable& exe, nb::handle inputs) {
  std::map<std::string, Tensor> in;
  if (nb::isinstance<nb::dict>(inputs)) {
    for (auto [k, v] : nb::borrow<nb::dict>(inputs)) {
      DS_CHECK(nb::isinstance<nb::str>(k), TypeError, "submit: input names must be strings, got ",
               nb::cast<std::string>(nb::repr(k)));
      in.emplace(nb::cast<std::string>(k), to_tensor(v));
    }
    return in;  // run() names missing, extra and mismatched inputs
  }
  DS_CHECK(nb::isinstance<nb::list>(inputs) || nb::isinstance<nb::tuple>(inputs), TypeError,
           "submit: inputs of an executable must be a dict {name: array} or a list of arrays, got ",
           nb::cast<std::string>(nb::type_name(inputs.type())));
  const auto& specs = exe.inputs();
  DS_CHECK(nb::len(inputs) == specs.size(), ValueError, "submit: the executable takes ", specs.size(),
           " inputs, got ", nb::len(inputs));
  size_t i = 0;
  for (nb::handle x : inputs) in.emplace(specs[i++].name, to_tensor(x));
  return in;
}

Future submit_callable(PyScheduler& ps, nb::handle fn, nb::args args, nb::kwargs kwargs,
                       TaskOptions opt) {
  Future f = make_future(ResultKind::Object);
  auto call = std::make_shared<PyRef>(nb::make_tuple(fn, args, kwargs));
  std::weak_ptr<FutureState> ws = f.s;
  Work work = [call, ws]() -> Outputs {
    call_python([&] {
      nb::tuple c = nb::borrow<nb::tuple>(call->get());
      nb::object r = c[0](*c[1], **c[2]);
      if (auto s = ws.lock()) s->value.reset(std::move(r));
    });
    return {};
  };
  opt.on_done = fire_on_done(f.s);
  Scheduler& s = ps.get();
  nb::gil_scoped_release unlocked;
  f.s->handle = s.submit(std::move(work), std::move(opt));
  return f;
}

Future submit_executable(PyScheduler& ps, const Executable& exe, nb::handle inputs, TaskOptions opt) {
  auto in = executable_inputs(exe, inputs);
  Future f = make_future(ResultKind::Named, output_names(exe));
  opt.on_done = fire_on_done(f.s);
  Scheduler& s = ps.get();
  nb::gil_scoped_release unlocked;
  f.s->handle = s.submit(
      [exe, in = std::move(in), names = f.s->names] {
        auto out = exe.run(in);
        Outputs v;
        for (const std::string& n : names) v.push_back(out.at(n));
        return v;
      },
      std::move(opt));
  return f;
}

TaskOptions task_options(int priority, std::optional<double> timeout, std::optional<double> deadline,
                         std::optional<std::string> device) {
  TaskOptions o;
  o.priority = priority;
  o.deadline = deadline_of(timeout, deadline);
  if (device) o.device = Device::parse(*device);
  return o;
}

void bind_exceptions(nb::module_& m, nb::module_& parent) {
  nb::object futures = nb::module_::import_("concurrent.futures");
  auto make = [&](const char* name, nb::tuple bases, const char* doc) {
    const std::string qualified = std::string("deepseek.sched.") + name;
    PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), nullptr);
    if (!cls) throw nb::python_error();
    m.attr(name) = nb::steal(cls);
    return cls;
  };
  exceptions.rejected = make("RejectedError", nb::make_tuple(parent.attr("Error")),
                             "The task has no result: its queue was full or the scheduler stopped.");
  exceptions.expired =
      make("DeadlineExceeded", nb::make_tuple(nb::handle(exceptions.rejected), nb::handle(PyExc_TimeoutError)),
           "The task's deadline passed before it finished; it was not run late.");
  exceptions.cancelled =
      make("CancelledError", nb::make_tuple(nb::handle(exceptions.rejected), futures.attr("CancelledError")),
           "The task was cancelled before it started.");
  // Registered after the module's ds::Error translator, so tried before it.
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const RejectedError& e) {
      PyObject* cls = e.status() == TaskStatus::Expired     ? exceptions.expired
                      : e.status() == TaskStatus::Cancelled ? exceptions.cancelled
                                                            : exceptions.rejected;
      PyErr_SetString(cls, e.what());
    }
  });
}

void bind_future(nb::module_& m) {
  nb::class_<Future>(m, "Future",
                     "The result of a submitted task (like concurrent.futures.Future).")
      .def("result", &result, nb::arg("timeout") = nb::none(),
           "Waits (without holding the GIL) and returns the result. Raises the task's own "
           "error, DeadlineExceeded, CancelledError or RejectedError; TimeoutError when "
           "`timeout` seconds pass first.")
      .def("wait", [](const Future& f, std::optional<double> timeout) { return wait_for(f.s->handle, timeout); },
           nb::arg("timeout") = nb::none(), "Waits without holding the GIL; True when resolved.")
      .def("done", [](const Future& f) { return f.s->handle.done(); })
      .def("running", [](const Future& f) { return f.s->handle.status() == TaskStatus::Running; })
      .def("cancelled", [](const Future& f) { return f.s->handle.status() == TaskStatus::Cancelled; })
      .def(
          "cancel",
          [](const Future& f) {
            nb::gil_scoped_release unlocked;
            return f.s->handle.cancel();
          },
          "Cancels the task if it has not started; True when it is now cancelled.")
      .def(
          "add_done_callback",
          [](const Future& f, nb::handle fn) {
            {
              std::lock_guard lock(f.s->m);
              if (!f.s->fired) {
                f.s->callbacks.push_back(std::make_shared<PyRef>(fn));
                f.s->keep_alive = f.s;
                return;
              }
            }
            call_back(f.s, fn);
          },
          nb::arg("fn"),
          "Calls fn(future) once the task is resolved (at once if it already is), on the "
          "thread that resolves it.")
      .def_prop_ro("status", [](const Future& f) { return status_str(f.s->handle.status()); },
                   "'queued', 'running', 'done', 'failed', 'rejected', 'expired' or 'cancelled'.")
      .def_prop_ro("priority", [](const Future& f) { return f.s->handle.priority(); })
      .def_prop_ro("queue_us", [](const Future& f) { return f.s->handle.queue_us(); })
      .def_prop_ro("compute_us", [](const Future& f) { return f.s->handle.compute_us(); })
      .def("__repr__", [](const Future& f) {
        return "<ds.sched.Future " + std::string(status_str(f.s->handle.status())) + ">";
      });
  nb::class_<YieldToken>(m, "YieldToken", "Handed to auxiliary work.")
      .def("should_yield", &YieldToken::should_yield,
           "True as soon as real work waits: return False from the auxiliary function then.");
}

void bind_scheduler(nb::module_& m) {
  nb::class_<PyScheduler>(m, "Scheduler",
                          "Worker threads per device running tasks by priority (1 = most urgent).")
      .def(
          "__init__",
          [](PyScheduler* self, int workers, int priority_levels, size_t queue_capacity, int64_t aging_us,
             std::optional<std::vector<std::pair<std::string, int>>> devices, size_t auxiliary_capacity) {
            SchedulerOptions o;
            o.priority_levels = priority_levels;
            o.queue_capacity = queue_capacity;
            DS_CHECK(aging_us >= 0, ValueError, "Scheduler: aging_us must be >= 0, got ", aging_us);
            o.aging_step = Micros(aging_us);
            o.auxiliary_capacity = auxiliary_capacity;
            if (devices) {
              o.devices.clear();
              for (const auto& [name, n] : *devices) o.devices.push_back({Device::parse(name), n});
            } else {
              o.devices = {{Device::cpu(), workers}};
            }
            new (self) PyScheduler{std::make_unique<Scheduler>(std::move(o))};
          },
          nb::arg("workers") = 1, nb::arg("priority_levels") = 3, nb::arg("queue_capacity") = 1024,
          nb::arg("aging_us") = 100000, nb::arg("devices") = nb::none(), nb::arg("auxiliary_capacity") = 256,
          "`workers` CPU worker threads, or `devices` = [(\"cpu\", 2), (\"cuda:0\", 1)]. Each level "
          "holds at most `queue_capacity` tasks (more are rejected at once); every `aging_us` "
          "a task waits raises it one level (0: strict priority).")
      .def(
          "submit",
          [](PyScheduler& s, nb::handle work, nb::args args, int priority, std::optional<double> timeout,
             std::optional<double> deadline, std::optional<std::string> device, nb::kwargs kwargs) {
            TaskOptions o = task_options(priority, timeout, deadline, device);
            if (nb::isinstance<Executable>(work)) {
              DS_CHECK(args.size() == 1 && kwargs.size() == 0, TypeError,
                       "submit(executable, inputs): give the inputs as one dict or list, got ",
                       args.size(), " positional and ", kwargs.size(), " keyword arguments");
              return submit_executable(s, nb::cast<const Executable&>(work), args[0], std::move(o));
            }
            DS_CHECK(PyCallable_Check(work.ptr()), TypeError,
                     "submit: work must be a callable or a ds.Executable, got ",
                     nb::cast<std::string>(nb::type_name(work.type())));
            return submit_callable(s, work, args, kwargs, std::move(o));
          },
          nb::arg("work"), nb::arg("args"), nb::arg("priority") = 1,
          nb::arg("timeout") = nb::none(), nb::arg("deadline") = nb::none(), nb::arg("device") = nb::none(),
          nb::arg("kwargs"),
          "submit(fn, *args, priority=1, timeout=None, deadline=None, device=None, **kwargs) "
          "runs fn(*args, **kwargs) on a worker; submit(executable, inputs, ...) runs a "
          "compiled executable (inputs: dict by name or list) and its result is {output: "
          "array}. `timeout` is seconds from now, `deadline` a time.monotonic() value: a task "
          "still queued or running then fails with DeadlineExceeded. Never blocks: a full "
          "level gives a future that raises RejectedError.")
      .def(
          "submit_auxiliary",
          [](PyScheduler& s, nb::handle fn) {
            DS_CHECK(PyCallable_Check(fn.ptr()), TypeError, "submit_auxiliary: expected a callable, got ",
                     nb::cast<std::string>(nb::type_name(fn.type())));
            Future f = make_future(ResultKind::Object);
            auto ref = std::make_shared<PyRef>(fn);
            AuxWork work = [ref](const YieldToken& token) {
              return call_python([&] {
                nb::object r = ref->get()(token);
                return r.is_none() || nb::cast<bool>(nb::bool_(r));
              });
            };
            Scheduler& sched = s.get();
            auto state = f.s;
            nb::gil_scoped_release unlocked;
            f.s->handle = sched.submit_auxiliary(std::move(work), fire_on_done(state));
            return f;
          },
          nb::arg("fn"),
          "Idle-time work: fn(token) runs only while a worker has nothing else to do. It "
          "should return False as soon as token.should_yield() is True (it is called again "
          "later) and True or None when finished.")
      .def(
          "stats",
          [](const PyScheduler& s) {
            SchedulerStats st;
            {
              nb::gil_scoped_release unlocked;
              st = s.get().stats();
            }
            nb::dict d;
            d["queued"] = st.queued;
            d["running"] = st.running;
            d["completed"] = st.completed;
            d["failed"] = st.failed;
            d["rejected"] = st.rejected;
            d["expired"] = st.expired;
            d["cancelled"] = st.cancelled;
            d["auxiliary_completed"] = st.auxiliary_completed;
            d["auxiliary_yields"] = st.auxiliary_yields;
            d["busy_seconds"] = st.busy_seconds;
            d["auxiliary_seconds"] = st.auxiliary_seconds;
            d["uptime_seconds"] = st.uptime_seconds;
            d["workers"] = st.workers;
            return d;
          })
      .def_prop_ro("priority_levels", [](const PyScheduler& s) { return s.get().options().priority_levels; })
      .def("shutdown", &PyScheduler::close,
           "Stops: queued tasks are rejected, running ones finish (waits for them).")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); })
      .def("__exit__", [](PyScheduler& s, nb::args) { s.close(); });
}

}  // namespace
}  // namespace ds::py::sched_py

namespace ds::py {

void bind_sched(nb::module_& m) {
  nb::module_ s = m.def_submodule("sched", "Priority scheduling, dynamic batching, batching policies.");
  sched_py::bind_exceptions(s, m);
  sched_py::bind_future(s);
  sched_py::bind_scheduler(s);
  sched_py::bind_batching(s);
}

}  // namespace ds::py
