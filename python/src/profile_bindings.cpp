// ds.profile(), ds.record_function(), ds.schedule() and ds.monitor().
//
//   with ds.profile(record_shapes=True) as prof:
//       step(x)
//   print(prof.key_averages().table(sort_by="self_time", row_limit=10))
//   prof.export_chrome_trace("trace.json")
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>

#include "bindings.h"
#include "ds/monitor.h"
#include "ds/profile.h"

namespace ds::py {
namespace {

// The Python object: options first; recording starts on __enter__.
struct PyProfile {
  ProfilerOptions options;
  nb::object on_trace_ready;
  std::unique_ptr<Profiler> profiler;

  Profiler& get() {
    DS_CHECK(profiler != nullptr, ValueError,
             "ds.profile: not started; use it as a context manager: `with ds.profile() as prof:`");
    return *profiler;
  }
};

struct PyRange {
  std::string name;
  std::unique_ptr<RecordFunction> range;
};

nb::dict sample_dict(const ResourceSample& s) {
  nb::dict d;
  d["time_ns"] = s.time_ns;
  d["process_cpu_pct"] = s.process_cpu_pct;
  d["system_cpu_pct"] = s.system_cpu_pct;
  d["rss_bytes"] = s.rss_bytes;
  d["peak_rss_bytes"] = s.peak_rss_bytes;
  d["allocator_current_bytes"] = s.allocator_current_bytes;
  d["allocator_reserved_bytes"] = s.allocator_reserved_bytes;
  d["allocator_peak_bytes"] = s.allocator_peak_bytes;
  nb::list gpus;
  for (const GpuSample& g : s.gpus) {
    nb::dict gd;
    gd["index"] = g.index;
    gd["name"] = g.name;
    gd["utilization_pct"] = g.utilization_pct;
    gd["memory_utilization_pct"] = g.memory_utilization_pct;
    gd["memory_used_bytes"] = g.memory_used_bytes;
    gd["memory_total_bytes"] = g.memory_total_bytes;
    gd["power_watts"] = g.power_watts;
    gd["temperature_c"] = g.temperature_c;
    gpus.append(gd);
  }
  d["gpus"] = gpus;
  return d;
}

}  // namespace

void bind_profile(nb::module_& m) {
  nb::class_<ProfileSchedule>(m, "ProfileSchedule", "wait, warmup, active, repeat (as PyTorch's)")
      .def_ro("wait", &ProfileSchedule::wait)
      .def_ro("warmup", &ProfileSchedule::warmup)
      .def_ro("active", &ProfileSchedule::active)
      .def_ro("repeat", &ProfileSchedule::repeat);
  m.def(
      "schedule",
      [](int wait, int warmup, int active, int repeat) {
        ProfileSchedule s{wait, warmup, active, repeat};
        schedule_action(s, 0);  // validates
        return s;
      },
      nb::arg("wait") = 0, nb::arg("warmup") = 0, nb::arg("active") = 1, nb::arg("repeat") = 0,
      "A profiler schedule: per cycle `wait` idle steps, `warmup` steps recorded and "
      "discarded, `active` steps kept; `repeat` cycles (0: forever).");

  nb::class_<EventAverage>(m, "EventAverage")
      .def_ro("name", &EventAverage::name)
      .def_ro("shapes", &EventAverage::shapes)
      .def_ro("calls", &EventAverage::calls)
      .def_ro("self_ns", &EventAverage::self_ns)
      .def_ro("total_ns", &EventAverage::total_ns)
      .def_ro("flops", &EventAverage::flops)
      .def_ro("bytes", &EventAverage::bytes)
      .def_ro("self_mem", &EventAverage::self_mem)
      .def_ro("self_device_ns", &EventAverage::self_device_ns)
      .def_ro("device_total_ns", &EventAverage::device_total_ns);
  nb::class_<KeyAverages>(m, "KeyAverages")
      .def("table", &KeyAverages::table, nb::arg("sort_by") = "self_time",
           nb::arg("row_limit") = 100)
      .def_prop_ro("rows", &KeyAverages::rows)
      .def("__str__", [](const KeyAverages& k) { return k.table(); });

  nb::class_<PyProfile>(m, "profile",
                        "Profiles ds ops (time, FLOPs, bytes, memory) inside a `with` block.")
      .def(
          "__init__",
          [](PyProfile* self, bool record_shapes, bool profile_memory, int64_t max_events,
             std::optional<ProfileSchedule> schedule, nb::object on_trace_ready) {
            new (self) PyProfile();
            self->options.record_shapes = record_shapes;
            self->options.profile_memory = profile_memory;
            self->options.max_events = max_events;
            self->options.schedule = schedule;
            self->on_trace_ready = on_trace_ready;
          },
          nb::arg("record_shapes") = false, nb::arg("profile_memory") = true,
          nb::arg("max_events") = 1'000'000, nb::arg("schedule") = nb::none(),
          nb::arg("on_trace_ready") = nb::none())
      .def("__enter__",
           [](nb::object self) {
             PyProfile& p = nb::cast<PyProfile&>(self);
             DS_CHECK(p.profiler == nullptr, ValueError, "ds.profile: already started");
             ProfilerOptions opt = p.options;
             if (!p.on_trace_ready.is_none()) {
               // Called from step()/stop(), i.e. from Python with the GIL held.
               PyObject* handle = self.ptr();
               nb::object callback = p.on_trace_ready;
               opt.on_trace_ready = [handle, callback](Profiler&) {
                 callback(nb::handle(handle));
               };
             }
             p.profiler = std::make_unique<Profiler>(std::move(opt));
             return self;
           })
      .def("__exit__",
           [](PyProfile& p, nb::args) {
             p.get().stop();
             return false;
           })
      .def("step", [](PyProfile& p) { p.get().step(); })
      .def("stop", [](PyProfile& p) { p.get().stop(); })
      .def("key_averages",
           [](PyProfile& p, const std::string& group_by) { return p.get().key_averages(group_by); },
           nb::arg("group_by") = "op")
      .def("export_chrome_trace",
           [](PyProfile& p, const std::string& path) { p.get().export_chrome_trace(path); },
           nb::arg("path"))
      .def_prop_ro("dropped_events", [](PyProfile& p) { return p.get().dropped_events(); })
      .def_prop_ro("events", [](PyProfile& p) {
        nb::list out;
        for (const ProfileEvent& e : p.get().events()) {
          nb::dict d;
          d["name"] = e.name;
          d["kind"] = e.kind == EventKind::Op ? "op" : "range";
          d["node"] = e.node;
          d["impl"] = e.impl;
          d["shapes"] = e.shapes;
          d["thread"] = e.thread;
          d["start_ns"] = e.start_ns;
          d["end_ns"] = e.end_ns;
          d["flops"] = e.flops;
          d["bytes"] = e.bytes;
          d["mem_delta"] = e.mem_delta;
          d["parent"] = e.parent;
          d["device"] = e.device;
          d["device_ns"] = e.device_ns;
          out.append(d);
        }
        return out;
      })
      .def_prop_ro("device_activities", [](PyProfile& p) {
        nb::list out;
        for (const DeviceActivity& a : p.get().device_activities()) {
          nb::dict d;
          d["name"] = a.name;
          d["device"] = a.device;
          d["stream"] = a.stream;
          d["start_ns"] = a.start_ns;
          d["end_ns"] = a.end_ns;
          d["op"] = a.op;
          out.append(d);
        }
        return out;
      }, "GPU work of the last recording: kernels (CUPTI) or per-op spans (CUDA events).")
      .def_prop_ro("device_timer", [](PyProfile& p) {
        return std::make_pair(p.get().device_timer_kind(), p.get().device_timer_warning());
      }, "(kind, warning): where GPU times come from ('cupti', 'cuda-events', '' without a GPU).");

  nb::class_<PyRange>(m, "record_function", "A named range that nests the ops run inside it.")
      .def(nb::init<std::string>(), nb::arg("name"))
      .def("__enter__",
           [](nb::object self) {
             PyRange& r = nb::cast<PyRange&>(self);
             r.range = std::make_unique<RecordFunction>(r.name);
             return self;
           })
      .def("__exit__", [](PyRange& r, nb::args) {
        r.range.reset();
        return false;
      });

  nb::class_<ResourceMonitor>(m, "monitor",
                              "Samples CPU, memory, the ds allocator and GPUs (NVML) on a thread.")
      .def(
          "__init__",
          [](ResourceMonitor* self, double interval, size_t capacity) {
            MonitorOptions opt;
            opt.interval = std::chrono::milliseconds(static_cast<int64_t>(interval * 1000 + 0.5));
            opt.capacity = capacity;
            new (self) ResourceMonitor(std::move(opt));
          },
          nb::arg("interval") = 1.0, nb::arg("capacity") = 3600,
          "interval: seconds between samples (at least 0.1)")
      .def("__enter__", [](nb::object self) { return self; })
      .def("__exit__",
           [](ResourceMonitor& mon, nb::args) {
             nb::gil_scoped_release release;
             mon.stop();
             return false;
           })
      .def("stop", &ResourceMonitor::stop, nb::call_guard<nb::gil_scoped_release>())
      .def("summary", &ResourceMonitor::summary)
      .def("latest", [](ResourceMonitor& mon) { return sample_dict(mon.latest()); })
      .def("samples",
           [](const ResourceMonitor& mon) {
             nb::list out;
             for (const ResourceSample& s : mon.samples()) out.append(sample_dict(s));
             return out;
           })
      .def_prop_ro("gpu_count", &ResourceMonitor::gpu_count)
      .def(
          "write_scalars",
          [](const ResourceMonitor& mon, nb::object sink, int64_t from_step) {
            // A SummaryWriter (ds or torch: anything with add_scalar) or a callable.
            const bool writer = nb::hasattr(sink, "add_scalar");
            nb::object fn = writer ? sink.attr("add_scalar") : sink;
            return mon.write_scalars(
                [&](const std::string& tag, double value, int64_t step) { fn(tag, value, step); },
                from_step);
          },
          nb::arg("writer"), nb::arg("from_step") = 0,
          "Writes samples from `from_step` on as scalars `monitor/<metric>`; returns the next step.")
      .def("export_counters", [](const ResourceMonitor& mon, PyProfile& p) {
        mon.export_counters(p.get());
      });
}

}  // namespace ds::py
