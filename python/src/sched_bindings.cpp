// ds.sched: the priority Scheduler, the DynamicBatcher and the batching
// policies. Python work runs on the scheduler's C++ worker threads: each call
// takes the GIL for as long as it runs Python code, and every wait on the C++
// side (submitting, waiting for a result, shutting down) releases it, so the
// workers never block on a thread that waits for them.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <mutex>

#include "bindings.h"
#include "ds/sched.h"

namespace ds::py {
namespace {

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

struct Exceptions {
  PyObject* rejected = nullptr;
  PyObject* expired = nullptr;
  PyObject* cancelled = nullptr;
};
Exceptions exceptions;  // owned by the module (its attributes)

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

Future make_future(ResultKind kind, std::vector<std::string> names = {}) {
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

std::vector<std::string> output_names(const Executable& exe) {
  std::vector<std::string> names;
  for (const IOSpec& o : exe.outputs()) names.push_back(o.name);
  return names;
}

// Scheduler and batcher wrappers: their destructors wait for running work,
// which may need the GIL, so they release it first.
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

struct PyBatcher {
  std::unique_ptr<DynamicBatcher> b;
  std::vector<std::string> names;  // executable models: output names
  std::vector<std::string> input_names;
  nb::object scheduler;  // keeps the Scheduler alive as long as the batcher
  ~PyBatcher() { close(); }
  DynamicBatcher& get() const {
    DS_CHECK(b != nullptr, ValueError, "DynamicBatcher: it was closed");
    return *b;
  }
  void close() {
    if (!b) return;
    nb::gil_scoped_release unlocked;
    b.reset();
  }
};

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

// A Python model for the batcher: fn(*inputs) -> array or sequence of arrays.
BatchFn python_batch_fn(nb::handle fn) {
  auto ref = std::make_shared<PyRef>(fn);
  return [ref](const Outputs& in) {
    return call_python([&] {
      nb::list args;
      for (const Tensor& t : in) args.append(to_numpy(t));
      nb::object r = ref->get()(*args);
      Outputs out;
      if (nb::isinstance<nb::list>(r) || nb::isinstance<nb::tuple>(r)) {
        for (nb::handle x : r) out.push_back(to_tensor(x));
      } else {
        out.push_back(to_tensor(r));
      }
      return out;
    });
  };
}

BatcherOptions batcher_options(int64_t max_batch_size, int64_t max_queue_delay_us,
                               const std::vector<int64_t>& preferred, size_t max_queue_size,
                               int instance_count, std::optional<std::string> device) {
  BatcherOptions o;
  o.max_batch_size = max_batch_size;
  DS_CHECK(max_queue_delay_us >= 0, ValueError, "DynamicBatcher: max_queue_delay_us must be >= 0, got ",
           max_queue_delay_us);
  o.max_queue_delay = Micros(max_queue_delay_us);
  o.preferred_batch_sizes = preferred;
  o.max_queue_size = max_queue_size;
  o.instance_count = instance_count;
  if (device) o.device = Device::parse(*device);
  return o;
}

// A batcher knob as a read-write property: a change applies to the next batch.
template <typename T>
void knob(nb::class_<PyBatcher>& cls, const char* name, T BatcherOptions::*field, const char* doc) {
  cls.def_prop_rw(
      name, [field](const PyBatcher& b) { return b.get().options().*field; },
      [field](PyBatcher& b, T v) {
        DynamicBatcher& batcher = b.get();
        nb::gil_scoped_release unlocked;  // the change may dispatch a batch at once
        BatcherOptions o = batcher.options();
        o.*field = std::move(v);
        batcher.set_options(o);
      },
      doc);
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

void bind_policies(nb::module_& m) {
  nb::class_<Policy>(m, "Policy", "Decides the batch cap and queue delay before each batch.")
      .def_prop_ro("name", &Policy::name)
      .def("decide",
           [](Policy& p, const std::vector<int64_t>& queue_depth, double arrival_rate,
              double long_arrival_rate, double utilization) {
             PolicyState s;
             s.queue_depth = queue_depth;
             s.arrival_rate = arrival_rate;
             s.long_arrival_rate = long_arrival_rate;
             s.utilization = utilization;
             const PolicyDecision d = p.decide(s);
             return nb::make_tuple(d.max_batch_size, d.max_queue_delay_us);
           },
           nb::arg("queue_depth"), nb::arg("arrival_rate") = 0.0, nb::arg("long_arrival_rate") = 0.0,
           nb::arg("utilization") = 0.0, "(max_batch_size, max_queue_delay_us) for this state.")
      .def("observe",
           [](Policy& p, int64_t batch_size, double service_us, int64_t deadlines_met,
              int64_t deadlines_missed, double held_us, std::vector<double> latency_us) {
             BatchOutcome o;
             o.batch_size = batch_size;
             o.requests = deadlines_met + deadlines_missed;
             o.service_us = service_us;
             o.held_us = held_us;
             o.deadlines_met = deadlines_met;
             o.deadlines_missed = deadlines_missed;
             o.latency_us = std::move(latency_us);
             p.observe(o);
           },
           nb::arg("batch_size"), nb::arg("service_us"), nb::arg("deadlines_met"), nb::arg("deadlines_missed") = 0,
           nb::arg("held_us") = 0.0, nb::arg("latency_us") = std::vector<double>{},
           "Reports how the batch formed by the last decision went (learning policies learn from it).");
  m.def("static_policy", &static_policy, nb::arg("max_batch_size"), nb::arg("max_queue_delay_us") = 0,
        "Triton-like: a fixed batch cap and queue delay.");
  m.def("aimd_policy", &aimd_policy, nb::arg("target_latency_us"), nb::arg("max_batch_size"),
        nb::arg("max_queue_delay_us") = 0, nb::arg("window") = 8,
        "Grows the batch cap by one while batches compute within the target, halves it when not.");
  nb::class_<QLearningPolicy, Policy>(m, "QLearningPolicy",
                                      "Tabular Q-learning of the batch cap and queue delay, online.")
      .def(
          "__init__",
          [](QLearningPolicy* self, std::vector<int64_t> batch_caps, std::vector<int64_t> queue_delays_us,
             double max_rate, double epsilon, double learning_rate, double discount, double miss_penalty,
             uint64_t seed) {
            QLearningOptions o;
            o.batch_caps = std::move(batch_caps);
            o.queue_delays_us = std::move(queue_delays_us);
            o.max_rate = max_rate;
            o.epsilon = epsilon;
            o.learning_rate = learning_rate;
            o.min_learning_rate = std::min(o.min_learning_rate, learning_rate);
            o.discount = discount;
            o.miss_penalty = miss_penalty;
            o.seed = seed;
            new (self) QLearningPolicy(std::move(o));
          },
          nb::arg("batch_caps") = QLearningOptions{}.batch_caps,
          nb::arg("queue_delays_us") = QLearningOptions{}.queue_delays_us,
          nb::arg("max_rate") = QLearningOptions{}.max_rate, nb::arg("epsilon") = QLearningOptions{}.epsilon,
          nb::arg("learning_rate") = QLearningOptions{}.learning_rate,
          nb::arg("discount") = QLearningOptions{}.discount,
          nb::arg("miss_penalty") = QLearningOptions{}.miss_penalty, nb::arg("seed") = 1,
          "`max_rate`: requests/s of the top arrival-rate bucket; `epsilon`: exploration.")
      .def("set_exploration", &QLearningPolicy::set_exploration, nb::arg("epsilon"))
      .def("save", &QLearningPolicy::save, nb::arg("path"), "Writes the learned table as text.")
      .def("load", &QLearningPolicy::load, nb::arg("path"),
           "Reads a table saved for the same action set (a different one raises).")
      .def_prop_ro("states_visited", &QLearningPolicy::states_visited);
}

void bind_batcher(nb::module_& m) {
  nb::class_<PyBatcher> cls(m, "DynamicBatcher",
                            "Merges requests of one model along dim 0, runs them as one batch on the "
                            "scheduler, and splits the outputs back.");
  cls.def(
         "__init__",
         [](PyBatcher* self, nb::handle model, nb::handle scheduler, int64_t max_batch_size,
            int64_t max_queue_delay_us, std::vector<int64_t> preferred_batch_sizes, size_t max_queue_size,
            int instance_count, std::optional<std::string> device, std::shared_ptr<Policy> policy,
            std::string name) {
           DS_CHECK(nb::isinstance<PyScheduler>(scheduler), TypeError,
                    "DynamicBatcher: scheduler must be a ds.sched.Scheduler, got ",
                    nb::cast<std::string>(nb::type_name(scheduler.type())));
           PyScheduler& s = nb::cast<PyScheduler&>(scheduler);
           BatchFn fn;
           std::vector<std::string> names, input_names;
           if (nb::isinstance<Executable>(model)) {
             const Executable& exe = nb::cast<const Executable&>(model);
             fn = batch_fn(exe);
             names = output_names(exe);
             for (const IOSpec& in : exe.inputs()) input_names.push_back(in.name);
           } else {
             DS_CHECK(PyCallable_Check(model.ptr()), TypeError,
                      "DynamicBatcher: model must be a ds.Executable or a callable, got ",
                      nb::cast<std::string>(nb::type_name(model.type())));
             fn = python_batch_fn(model);
           }
           auto b = std::make_unique<DynamicBatcher>(
               std::move(name), std::move(fn), s.get(),
               batcher_options(max_batch_size, max_queue_delay_us, preferred_batch_sizes, max_queue_size,
                               instance_count, device),
               std::move(policy));
           new (self) PyBatcher{std::move(b), std::move(names), std::move(input_names), nb::borrow(scheduler)};
         },
         nb::arg("model"), nb::arg("scheduler"), nb::kw_only(), nb::arg("max_batch_size") = 8,
         nb::arg("max_queue_delay_us") = 0, nb::arg("preferred_batch_sizes") = std::vector<int64_t>{},
         nb::arg("max_queue_size") = 1024, nb::arg("instance_count") = 1, nb::arg("device") = nb::none(),
         nb::arg("policy") = nb::none(), nb::arg("name") = "model",
         "`model`: a ds.Executable whose inputs have the batch as dim 0, or fn(*arrays) -> array "
         "or list of arrays with the batch as dim 0. Requests with other non-batch shapes or "
         "dtypes are never merged.")
      .def(
          "submit",
          [](PyBatcher& b, nb::handle inputs, int priority, std::optional<double> timeout,
             std::optional<double> deadline) {
            Outputs in;
            const bool by_name = nb::isinstance<nb::dict>(inputs);
            if (by_name) {
              DS_CHECK(!b.input_names.empty(), TypeError,
                       "DynamicBatcher.submit: inputs by name need an executable model; give a list");
              nb::dict d = nb::borrow<nb::dict>(inputs);
              for (const std::string& n : b.input_names) {
                DS_CHECK(d.contains(n.c_str()), NotFoundError, "DynamicBatcher.submit: input '", n,
                         "' is missing");
                in.push_back(to_tensor(d[n.c_str()]));
              }
              DS_CHECK(d.size() == b.input_names.size(), ValueError, "DynamicBatcher.submit: the model takes ",
                       b.input_names.size(), " inputs, got ", d.size(), " names");
            } else if (nb::isinstance<nb::list>(inputs) || nb::isinstance<nb::tuple>(inputs)) {
              for (nb::handle x : inputs) in.push_back(to_tensor(x));
            } else {
              in.push_back(to_tensor(inputs));
            }
            Future f = make_future(b.names.empty() ? ResultKind::List : ResultKind::Named, b.names);
            RequestOptions o;
            o.priority = priority;
            o.deadline = deadline_of(timeout, deadline);
            o.on_done = fire_on_done(f.s);
            DynamicBatcher& batcher = b.get();
            nb::gil_scoped_release unlocked;
            f.s->handle = batcher.submit(std::move(in), std::move(o));
            return f;
          },
          nb::arg("inputs"), nb::kw_only(), nb::arg("priority") = 1, nb::arg("timeout") = nb::none(),
          nb::arg("deadline") = nb::none(),
          "Queues one request: an array, a list of arrays, or (executable models) a dict by "
          "input name, each with this request's rows as dim 0. The result is this request's "
          "rows of every output: a list of arrays, or a dict by output name.")
      .def(
          "set_policy", [](PyBatcher& b, std::shared_ptr<Policy> p) { b.get().set_policy(std::move(p)); },
          nb::arg("policy").none(), "A policy decides cap and delay from now on; None: the options do.")
      .def(
          "stats",
          [](const PyBatcher& b) {
            const DynamicBatcher::Stats st = b.get().stats();
            nb::dict d;
            d["queued"] = st.queued;
            d["requests"] = st.requests;
            d["batches"] = st.batches;
            d["rows"] = st.rows;
            d["succeeded"] = st.succeeded;
            d["failed"] = st.failed;
            d["rejected"] = st.rejected;
            d["expired"] = st.expired;
            d["cancelled"] = st.cancelled;
            d["queue_seconds"] = st.queue_seconds;
            d["compute_seconds"] = st.compute_seconds;
            return d;
          })
      .def("close", &PyBatcher::close, "Rejects pending requests and waits for running batches.")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); })
      .def("__exit__", [](PyBatcher& b, nb::args) { b.close(); });
  knob(cls, "max_batch_size", &BatcherOptions::max_batch_size, "Rows per batch at most.");
  knob(cls, "preferred_batch_sizes", &BatcherOptions::preferred_batch_sizes,
       "Sizes a batch is cut to when more rows wait.");
  knob(cls, "max_queue_size", &BatcherOptions::max_queue_size, "Pending requests per level at most.");
  knob(cls, "instance_count", &BatcherOptions::instance_count, "Batches of this model running at once.");
  cls.def_prop_rw(
      "max_queue_delay_us", [](const PyBatcher& b) { return b.get().options().max_queue_delay.count(); },
      [](PyBatcher& b, int64_t us) {
        DS_CHECK(us >= 0, ValueError, "DynamicBatcher: max_queue_delay_us must be >= 0, got ", us);
        DynamicBatcher& batcher = b.get();
        nb::gil_scoped_release unlocked;
        BatcherOptions o = batcher.options();
        o.max_queue_delay = Micros(us);
        batcher.set_options(o);
      },
      "How long the oldest request may wait for a fuller batch.");
}

}  // namespace

void bind_sched(nb::module_& m) {
  nb::module_ s = m.def_submodule("sched", "Priority scheduling, dynamic batching, batching policies.");
  bind_exceptions(s, m);
  bind_future(s);
  bind_scheduler(s);
  bind_policies(s);
  bind_batcher(s);
}

}  // namespace ds::py
