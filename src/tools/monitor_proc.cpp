// Parsers for the /proc files the monitor reads (proc(5)).
#include <sstream>

#include "ds/error.h"
#include "ds/monitor.h"

namespace ds {

ProcessCpuTicks parse_proc_self_stat(const std::string& text) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the
  // fields are counted from the last ')'.
  const size_t close = text.rfind(')');
  DS_CHECK(close != std::string::npos, IOError,
           "/proc/self/stat: expected 'pid (comm) state ...', got '", text.substr(0, 80), "'");
  std::istringstream in(text.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  constexpr size_t kUtime = 14 - 3, kStime = 15 - 3;
  DS_CHECK(fields.size() > kStime, IOError, "/proc/self/stat: expected at least 15 fields, got ",
           fields.size() + 2);
  try {
    return {std::stoull(fields[kUtime]), std::stoull(fields[kStime])};
  } catch (const std::logic_error&) {
    throw IOError("/proc/self/stat: utime/stime are not numbers: '" + fields[kUtime] + "', '" +
                  fields[kStime] + "'");
  }
}

SystemCpuTicks parse_proc_stat(const std::string& text) {
  std::istringstream in(text);
  std::string label;
  in >> label;
  DS_CHECK(label == "cpu", IOError, "/proc/stat: expected the first line to start with 'cpu', got '",
           label, "'");
  // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time
  // is already part of user, so only the first eight add up to the total.
  uint64_t v[8] = {};
  for (int i = 0; i < 8; ++i) {
    if (!(in >> v[i])) {
      DS_CHECK(i >= 4, IOError, "/proc/stat: expected at least 4 numbers on the 'cpu' line, got ", i);
      break;
    }
  }
  SystemCpuTicks t;
  for (uint64_t x : v) t.total += x;
  t.busy = t.total - v[3] - v[4];
  return t;
}

ProcessMemory parse_proc_status(const std::string& text) {
  ProcessMemory m;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const bool rss = line.rfind("VmRSS:", 0) == 0, hwm = line.rfind("VmHWM:", 0) == 0;
    if (!rss && !hwm) continue;
    std::istringstream fields(line.substr(6));
    int64_t value = 0;
    std::string unit;
    DS_CHECK(fields >> value >> unit && unit == "kB", IOError,
             "/proc/self/status: expected '<n> kB' in '", line, "'");
    (rss ? m.rss_bytes : m.peak_rss_bytes) = value * 1024;
  }
  return m;
}

}  // namespace ds
