// key_averages(): events grouped by name (or name and shapes) and the table.
//
// Self time is an event's duration minus the durations of its direct children,
// so the self times of all rows add up to the profiled wall time per thread
// exactly once. Total time counts a recursive call (an event nested in an event
// of the same group) only at its outermost level.
#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "ds/error.h"
#include "ds/profile.h"
#include "tools/profiler_state.h"

namespace ds {

namespace {

std::string format_time(int64_t ns) {
  char buf[32];
  const double v = static_cast<double>(ns);
  if (ns < 1000 && ns > -1000) std::snprintf(buf, sizeof buf, "%lldns", static_cast<long long>(ns));
  else if (ns < 1'000'000 && ns > -1'000'000) std::snprintf(buf, sizeof buf, "%.3fus", v / 1e3);
  else if (ns < 1'000'000'000 && ns > -1'000'000'000) std::snprintf(buf, sizeof buf, "%.3fms", v / 1e6);
  else std::snprintf(buf, sizeof buf, "%.3fs", v / 1e9);
  return buf;
}

std::string format_bytes(double bytes, bool sign) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = bytes < 0 ? -bytes : bytes;
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[40];
  const char* s = bytes < 0 ? "-" : (sign && bytes > 0 ? "+" : "");
  if (u == 0) std::snprintf(buf, sizeof buf, "%s%.0f %s", s, v, units[u]);
  else std::snprintf(buf, sizeof buf, "%s%.2f %s", s, v, units[u]);
  return buf;
}

std::string format_percent(int64_t part, int64_t whole) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.2f%%", whole > 0 ? 100.0 * part / whole : 0.0);
  return buf;
}

// Work per nanosecond is work per second in units of 1e9: GFLOP/s and GB/s.
std::string format_rate(double amount, int64_t ns) {
  if (amount <= 0 || ns <= 0) return "-";
  char buf[24];
  std::snprintf(buf, sizeof buf, "%.3f", amount / static_cast<double>(ns));
  return buf;
}

// Ops on a GPU return before their work is done: their rates are per device time.
int64_t work_ns(const EventAverage& r) {
  return r.device_total_ns > 0 ? r.device_total_ns : r.total_ns;
}
double gflops(const EventAverage& r) { return work_ns(r) > 0 ? r.flops / work_ns(r) : 0; }
double gbps(const EventAverage& r) { return work_ns(r) > 0 ? r.bytes / work_ns(r) : 0; }
double avg_ns(const EventAverage& r) { return r.calls > 0 ? double(r.total_ns) / r.calls : 0; }

const std::vector<std::string>& sort_keys() {
  static const std::vector<std::string> keys = {"self_time", "total_time", "calls", "avg",
                                                "flops",     "gflops",     "bytes", "gbps",
                                                "self_mem",  "self_cuda", "cuda_total",
                                                "name"};
  return keys;
}

double sort_value(const EventAverage& r, const std::string& key) {
  if (key == "self_time") return static_cast<double>(r.self_ns);
  if (key == "total_time") return static_cast<double>(r.total_ns);
  if (key == "calls") return static_cast<double>(r.calls);
  if (key == "avg") return avg_ns(r);
  if (key == "flops") return r.flops;
  if (key == "gflops") return gflops(r);
  if (key == "bytes") return r.bytes;
  if (key == "gbps") return gbps(r);
  if (key == "self_cuda") return static_cast<double>(r.self_device_ns);
  if (key == "cuda_total") return static_cast<double>(r.device_total_ns);
  return static_cast<double>(r.self_mem);
}

std::string clip(const std::string& s, size_t width) {
  return s.size() <= width ? s : s.substr(0, width - 3) + "...";
}

}  // namespace

KeyAverages Profiler::key_averages(const std::string& group_by) const {
  DS_CHECK(group_by == "op" || group_by == "shape", ValueError,
           "key_averages: group_by must be \"op\" or \"shape\", got \"", group_by, "\"");
  const auto& ev = events();
  const bool by_shape = group_by == "shape";
  std::vector<std::string> key(ev.size());
  for (size_t i = 0; i < ev.size(); ++i)
    key[i] = by_shape ? ev[i].name + '\x1f' + ev[i].shapes : ev[i].name;

  std::vector<int64_t> child_ns(ev.size(), 0), child_mem(ev.size(), 0);
  for (const ProfileEvent& e : ev)
    if (e.parent >= 0) {
      child_ns[e.parent] += e.duration_ns();
      child_mem[e.parent] += e.mem_delta;
    }
  // Device time with the nested events' (a parent precedes its children).
  std::vector<int64_t> device_total(ev.size(), 0);
  for (size_t i = ev.size(); i-- > 0;) {
    device_total[i] += ev[i].device_ns;
    if (ev[i].parent >= 0) device_total[ev[i].parent] += device_total[i];
  }
  std::map<std::string, size_t> row_of;
  std::vector<EventAverage> rows;
  for (size_t i = 0; i < ev.size(); ++i) {
    const ProfileEvent& e = ev[i];
    auto [it, added] = row_of.try_emplace(key[i], rows.size());
    if (added) rows.push_back({e.name, by_shape ? e.shapes : ""});
    EventAverage& r = rows[it->second];
    ++r.calls;
    r.self_ns += e.duration_ns() - child_ns[i];
    r.self_mem += e.mem_delta - child_mem[i];
    r.flops += e.flops;
    r.bytes += e.bytes;
    r.self_device_ns += e.device_ns;
    bool recursive = false;
    for (int p = e.parent; p >= 0 && !recursive; p = ev[p].parent) recursive = key[p] == key[i];
    if (!recursive) {
      r.total_ns += e.duration_ns();
      r.device_total_ns += device_total[i];
    }
  }
  std::string note;
  if (!device_activities().empty() || !device_timer_warning().empty())
    note = "Device times: " + (device_timer_kind().empty() ? "none" : device_timer_kind()) +
           (device_timer_warning().empty() ? "" : " (" + device_timer_warning() + ")");
  return KeyAverages(std::move(rows), dropped_events(), note);
}

std::string KeyAverages::table(const std::string& sort_by, int row_limit) const {
  const auto& keys = sort_keys();
  if (std::find(keys.begin(), keys.end(), sort_by) == keys.end()) {
    std::string list;
    for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
    throw ValueError("key_averages().table: unknown sort_by \"" + sort_by + "\"; choose one of: " +
                     list);
  }
  std::vector<const EventAverage*> order;
  for (const auto& r : rows_) order.push_back(&r);
  std::stable_sort(order.begin(), order.end(), [&](const EventAverage* a, const EventAverage* b) {
    if (sort_by == "name") return a->name < b->name;
    return sort_value(*a, sort_by) > sort_value(*b, sort_by);
  });
  int64_t all_self = 0, all_self_device = 0;
  for (const auto& r : rows_) all_self += r.self_ns, all_self_device += r.self_device_ns;
  const bool device = all_self_device > 0;
  const size_t shown =
      row_limit > 0 ? std::min(order.size(), static_cast<size_t>(row_limit)) : order.size();
  bool any_shapes = false;
  for (const auto& r : rows_) any_shapes |= !r.shapes.empty();

  std::vector<std::string> header = {"Name",  "Self time", "Self %", "Total time", "Total %",
                                     "Calls", "Avg",       "GFLOP/s", "GB/s",     "Bytes",
                                     "Self mem"};
  if (device) {
    const std::vector<std::string> cols = {"Self CUDA", "Self CUDA %", "CUDA total", "CUDA avg"};
    header.insert(header.begin() + 7, cols.begin(), cols.end());
  }
  if (any_shapes) header.push_back("Input shapes");
  std::vector<std::vector<std::string>> cells;
  for (size_t i = 0; i < shown; ++i) {
    const EventAverage& r = *order[i];
    std::vector<std::string> row = {clip(r.name, 40),
                                    format_time(r.self_ns),
                                    format_percent(r.self_ns, all_self),
                                    format_time(r.total_ns),
                                    format_percent(r.total_ns, all_self),
                                    std::to_string(r.calls),
                                    format_time(static_cast<int64_t>(avg_ns(r))),
                                    format_rate(r.flops, work_ns(r)),
                                    format_rate(r.bytes, work_ns(r)),
                                    r.bytes > 0 ? format_bytes(r.bytes, false) : "-",
                                    format_bytes(static_cast<double>(r.self_mem), true)};
    if (device) {
      const int64_t avg = r.calls > 0 ? r.device_total_ns / r.calls : 0;
      const std::vector<std::string> cols = {format_time(r.self_device_ns),
                                             format_percent(r.self_device_ns, all_self_device),
                                             format_time(r.device_total_ns), format_time(avg)};
      row.insert(row.begin() + 7, cols.begin(), cols.end());
    }
    if (any_shapes) row.push_back(clip(r.shapes, 60));
    cells.push_back(std::move(row));
  }
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& row : cells) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& row) {
    for (size_t c = 0; c < row.size(); ++c) {
      // Names and shapes read left-aligned, figures right-aligned.
      const bool left = c == 0 || (any_shapes && c + 1 == header.size());
      const std::string pad(width[c] - row[c].size(), ' ');
      os << (c ? "  " : "") << (left ? row[c] + pad : pad + row[c]);
    }
    os << "\n";
  };
  size_t total_width = 0;
  for (size_t w : width) total_width += w;
  total_width += 2 * (width.size() - 1);
  const std::string rule(total_width, '-');
  os << rule << "\n";
  line(header);
  os << rule << "\n";
  for (const auto& row : cells) line(row);
  os << rule << "\n";
  os << "Self time total: " << format_time(all_self) << "\n";
  if (device) os << "Self CUDA time total: " << format_time(all_self_device) << "\n";
  if (!note_.empty()) os << note_ << "\n";
  if (shown < order.size()) os << "(" << order.size() - shown << " more rows not shown)\n";
  if (dropped_ > 0)
    os << "WARNING: " << dropped_ << " events were dropped (max_events reached); times are partial\n";
  return os.str();
}

}  // namespace ds
