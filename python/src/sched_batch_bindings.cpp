// ds.sched policies (static, AIMD, Q-learning with its table) and the
// DynamicBatcher: a compiled executable or a Python function as the model,
// requests merged along dim 0 and split back, knobs as properties.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "sched_bindings.h"

namespace ds::py::sched_py {
namespace {

// The batcher as Python holds it: like PyScheduler, it releases the GIL while
// its destructor waits for running batches (a Python model needs the GIL).
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

void bind_batching(nb::module_& m) {
  bind_policies(m);
  bind_batcher(m);
}

}  // namespace ds::py::sched_py
