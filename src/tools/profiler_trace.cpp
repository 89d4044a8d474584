// Chrome Trace Event JSON (chrome://tracing, Perfetto): one track per thread
// with complete ("X") events sorted so that they nest, one process per GPU with
// a track per CUDA stream (kernels linked to their ops by flow events and
// args), counter ("C") tracks for the allocator and the monitor, metadata ("M")
// names. The size stays bounded:
// events beyond max_events were never recorded, counters are capped the same
// way, long strings are clipped, and a capped trace says so in a marker event
// and in otherData.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "ds/error.h"
#include "ds/profile.h"
#include "tools/profiler_state.h"

namespace ds {

namespace {

constexpr size_t kMaxString = 1024;

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t utf8_length(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  return n;
}

// A JSON string literal; invalid UTF-8 becomes U+FFFD so the file always parses.
void write_string(std::ostream& os, const std::string& raw) {
  const std::string s = raw.size() > kMaxString ? raw.substr(0, kMaxString) + "..." : raw;
  os << '"';
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    const size_t n = utf8_length(s, i);
    if (n == 0) {
      os << "\\ufffd";
      ++i;
      continue;
    }
    if (n > 1) {
      os.write(s.data() + i, static_cast<std::streamsize>(n));
      i += n;
      continue;
    }
    switch (c) {
      case '"': os << "\\\""; break;
      case '\\': os << "\\\\"; break;
      case '\n': os << "\\n"; break;
      case '\r': os << "\\r"; break;
      case '\t': os << "\\t"; break;
      case '\b': os << "\\b"; break;
      case '\f': os << "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          os << buf;
        } else {
          os << c;
        }
    }
    ++i;
  }
  os << '"';
}

// Nanoseconds as microseconds with three exact decimals (no float rounding, so
// nesting survives the conversion).
void write_us(std::ostream& os, int64_t ns) {
  if (ns < 0) os << '-', ns = -ns;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%03d", static_cast<int>(ns % 1000));
  os << ns / 1000 << '.' << buf;
}

void write_number(std::ostream& os, double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  os << buf;
}

class TraceWriter {
 public:
  TraceWriter(std::ostream& os, int64_t origin) : os_(os), origin_(origin) {}

  // Starts an event object: {"ph":..,"pid":..,[tid],"name":..,[ts]; pid -1: this process.
  void begin(const char* ph, const std::string& name, int64_t tid, std::optional<int64_t> ts,
             int64_t pid = -1) {
    os_ << (first_ ? "\n" : ",\n") << "{\"ph\":\"" << ph << "\",\"pid\":" << (pid < 0 ? pid_ : pid);
    first_ = false;
    if (tid >= 0) os_ << ",\"tid\":" << tid;
    os_ << ",\"name\":";
    write_string(os_, name);
    if (ts) {
      os_ << ",\"ts\":";
      write_us(os_, *ts - origin_);
    }
  }
  std::ostream& os() { return os_; }
  int pid() const { return pid_; }

 private:
  std::ostream& os_;
  int64_t origin_;
  int pid_ = static_cast<int>(::getpid());
  bool first_ = true;
};

void write_op_args(std::ostream& os, const ProfileEvent& e) {
  os << ",\"args\":{\"node\":";
  write_string(os, e.node);
  os << ",\"impl\":";
  write_string(os, e.impl);
  os << ",\"flops\":";
  write_number(os, e.flops);
  os << ",\"bytes\":";
  write_number(os, e.bytes);
  os << ",\"mem_delta_bytes\":" << e.mem_delta;
  if (e.device >= 0) os << ",\"device\":" << e.device << ",\"device_ns\":" << e.device_ns;
  if (!e.shapes.empty()) {
    os << ",\"input_shapes\":";
    write_string(os, e.shapes);
  }
  os << "}";
}

// GPUs are processes of their own in the trace, numbered above Linux's largest
// pid (2^22) and within int32 (what trace viewers read pids as).
int64_t gpu_pid(int device) { return (int64_t{1} << 28) + device; }

// One process per GPU, one track per stream; each span linked to its op by a
// flow event from the op's start (on its CPU thread) and by args.
// Writes at most `limit` spans; returns how many it left out.
int64_t write_device_tracks(TraceWriter& w, const std::vector<ProfileEvent>& ev,
                            const std::vector<DeviceActivity>& all, int64_t limit) {
  const std::vector<DeviceActivity> acts(
      all.begin(), all.begin() + static_cast<std::ptrdiff_t>(std::min<int64_t>(limit, all.size())));
  std::ostream& os = w.os();
  std::map<int, std::map<int64_t, bool>> streams;  // device -> its streams
  for (const DeviceActivity& a : acts) streams[a.device][a.stream] = true;
  for (const auto& [device, list] : streams) {
    w.begin("M", "process_name", -1, std::nullopt, gpu_pid(device));
    os << ",\"args\":{\"name\":\"GPU " << device << " (cuda:" << device << ")\"}}";
    w.begin("M", "process_sort_index", -1, std::nullopt, gpu_pid(device));
    os << ",\"args\":{\"sort_index\":" << 1000 + device << "}}";
    for (const auto& [stream, unused] : list) {
      w.begin("M", "thread_name", stream, std::nullopt, gpu_pid(device));
      os << ",\"args\":{\"name\":\"stream " << stream << "\"}}";
    }
  }
  int64_t flow = 0;
  for (const DeviceActivity& a : acts) {
    w.begin("X", a.name, a.stream, a.start_ns, gpu_pid(a.device));
    os << ",\"dur\":";
    write_us(os, a.duration_ns());
    os << ",\"cat\":\"kernel\",\"args\":{\"device\":" << a.device << ",\"stream\":" << a.stream;
    if (a.op >= 0) {
      const ProfileEvent& op = ev[a.op];
      os << ",\"op\":";
      write_string(os, op.name);
      os << ",\"op_node\":";
      write_string(os, op.node);
      os << ",\"op_thread\":" << op.thread;
    }
    os << "}}";
    if (a.op < 0) continue;
    const ProfileEvent& op = ev[a.op];
    ++flow;
    w.begin("s", "launch", op.thread, op.start_ns);
    os << ",\"cat\":\"launch\",\"id\":" << flow << "}";
    w.begin("f", "launch", a.stream, a.start_ns, gpu_pid(a.device));
    os << ",\"cat\":\"launch\",\"id\":" << flow << ",\"bp\":\"e\"}";
  }
  return static_cast<int64_t>(all.size() - acts.size());
}

}  // namespace

std::string Profiler::chrome_trace() const {
  const auto& ev = events();
  const State& s = *state_;
  std::ostringstream os;
  TraceWriter w(os, s.events_start);
  os << "{\"traceEvents\":[";

  w.begin("M", "process_name", -1, std::nullopt);
  os << ",\"args\":{\"name\":\"deepseek\"}}";
  std::map<int, std::vector<const ProfileEvent*>> by_thread;
  for (const ProfileEvent& e : ev) by_thread[e.thread].push_back(&e);
  for (auto& [tid, list] : by_thread) {
    w.begin("M", "thread_name", tid, std::nullopt);
    auto name = s.thread_names.find(tid);
    os << ",\"args\":{\"name\":";
    write_string(os, (name != s.thread_names.end() && !name->second.empty() ? name->second + " " : "") +
                         "(CPU thread " + std::to_string(tid) + ")");
    os << "}}";
    w.begin("M", "thread_sort_index", tid, std::nullopt);
    os << ",\"args\":{\"sort_index\":" << tid << "}}";
    // Parents before children: by start, then longer first.
    std::stable_sort(list.begin(), list.end(), [](const ProfileEvent* a, const ProfileEvent* b) {
      if (a->start_ns != b->start_ns) return a->start_ns < b->start_ns;
      return a->duration_ns() > b->duration_ns();
    });
    for (const ProfileEvent* e : list) {
      w.begin("X", e->name, tid, e->start_ns);
      os << ",\"dur\":";
      write_us(os, e->duration_ns());
      os << ",\"cat\":\"" << (e->kind == EventKind::Op ? "op" : "range") << "\"";
      if (e->kind == EventKind::Op) write_op_args(os, *e);
      os << "}";
    }
  }

  const int64_t device_dropped =
      write_device_tracks(w, ev, s.device_activities, s.options.max_events);

  // The allocator's live bytes after each event that changed them.
  int64_t counters_left = s.options.max_events;
  int64_t counters_dropped = 0;
  if (s.options.profile_memory) {
    std::vector<const ProfileEvent*> by_end;
    for (const ProfileEvent& e : ev) by_end.push_back(&e);
    std::stable_sort(by_end.begin(), by_end.end(),
                     [](const ProfileEvent* a, const ProfileEvent* b) { return a->end_ns < b->end_ns; });
    std::optional<int64_t> last;
    for (const ProfileEvent* e : by_end) {
      if (last && *last == e->mem_after) continue;
      last = e->mem_after;
      if (counters_left-- <= 0) {
        ++counters_dropped;
        continue;
      }
      w.begin("C", "memory", -1, e->end_ns);
      os << ",\"args\":{\"allocated_bytes\":" << e->mem_after << "}}";
    }
  }
  for (const CounterSample& c : s.counters) {
    if (counters_left-- <= 0) {
      ++counters_dropped;
      continue;
    }
    w.begin("C", c.track, -1, c.time_ns);
    os << ",\"args\":{";
    for (size_t i = 0; i < c.values.size(); ++i) {
      if (i) os << ",";
      write_string(os, c.values[i].first);
      os << ":";
      write_number(os, c.values[i].second);
    }
    os << "}}";
  }

  const bool truncated = s.dropped > 0 || counters_dropped > 0 || device_dropped > 0;
  if (truncated) {
    int64_t last_ts = s.events_start;
    for (const ProfileEvent& e : ev) last_ts = std::max(last_ts, e.end_ns);
    std::ostringstream msg;
    msg << "TRUNCATED: " << s.dropped << " events, " << device_dropped << " device spans and "
        << counters_dropped << " counter samples dropped (max_events " << s.options.max_events
        << ")";
    w.begin("i", msg.str(), -1, last_ts);
    os << ",\"s\":\"g\"}";
  }
  os << "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{\"truncated\":"
     << (truncated ? "true" : "false") << ",\"dropped_events\":" << s.dropped
     << ",\"dropped_counter_samples\":" << counters_dropped
     << ",\"dropped_device_spans\":" << device_dropped
     << ",\"max_events\":" << s.options.max_events << "}}\n";
  return os.str();
}

void Profiler::export_chrome_trace(const std::string& path) const {
  const std::string json = chrome_trace();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  DS_CHECK(f.good(), IOError, "export_chrome_trace: cannot open '", path, "' for writing");
  f.write(json.data(), static_cast<std::streamsize>(json.size()));
  f.close();
  DS_CHECK(!f.fail(), IOError, "export_chrome_trace: writing '", path, "' failed");
}

}  // namespace ds
