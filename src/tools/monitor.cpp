// ResourceMonitor: the sampling thread, the ring buffer and the exports.
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "ds/error.h"
#include "ds/monitor.h"
#include "ds/profile.h"
#include "ds/tensor.h"
#include "ds/tensorboard.h"

namespace ds {

namespace {

std::string read_whole_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return {};  // absent (not Linux, restricted /proc): the metric is skipped
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

int64_t steady_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One figure of a sample: the counter track it belongs to and its key.
struct Metric {
  std::string track;  // "cpu", "memory", "gpu0"
  std::string key;    // "process_cpu_pct", "gpu0/power_watts", ...
  double value;
};

std::vector<Metric> flatten(const ResourceSample& s) {
  std::vector<Metric> m;
  auto add = [&](const std::string& track, const std::string& key, auto opt) {
    if (opt) m.push_back({track, key, static_cast<double>(*opt)});
  };
  add("cpu", "process_cpu_pct", s.process_cpu_pct);
  add("cpu", "system_cpu_pct", s.system_cpu_pct);
  add("memory", "rss_bytes", s.rss_bytes);
  add("memory", "peak_rss_bytes", s.peak_rss_bytes);
  add("memory", "allocator_current_bytes", std::optional<int64_t>(s.allocator_current_bytes));
  add("memory", "allocator_reserved_bytes", std::optional<int64_t>(s.allocator_reserved_bytes));
  add("memory", "allocator_peak_bytes", std::optional<int64_t>(s.allocator_peak_bytes));
  for (const GpuSample& g : s.gpus) {
    const std::string track = "gpu" + std::to_string(g.index);
    add(track, track + "/utilization_pct", g.utilization_pct);
    add(track, track + "/memory_utilization_pct", g.memory_utilization_pct);
    add(track, track + "/memory_used_bytes", g.memory_used_bytes);
    add(track, track + "/memory_total_bytes", g.memory_total_bytes);
    add(track, track + "/power_watts", g.power_watts);
    add(track, track + "/temperature_c", g.temperature_c);
  }
  return m;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string format_value(const std::string& key, double v) {
  char buf[48];
  if (ends_with(key, "_bytes")) std::snprintf(buf, sizeof buf, "%.1f MiB", v / (1024.0 * 1024.0));
  else std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

struct ResourceMonitor::Impl {
  MonitorOptions options;
  std::function<int64_t()> clock;
  std::unique_ptr<GpuReader> gpus;
  double ticks_per_second = 100;

  mutable std::mutex mu;  // guards everything below
  std::deque<ResourceSample> ring;
  int64_t first_index = 0;  // sequence number of ring.front()
  std::optional<ProcessCpuTicks> prev_process;
  std::optional<SystemCpuTicks> prev_system;
  int64_t prev_time = 0;
  std::string last_error;  // the sampling thread's last failure, shown by summary()

  std::thread thread;
  std::condition_variable wake;
  bool stopping = false;

  std::string read(const std::string& path) const {
    return options.read_file ? options.read_file(path) : read_whole_file(path);
  }
};

ResourceMonitor::ResourceMonitor(MonitorOptions options) : impl_(std::make_unique<Impl>()) {
  DS_CHECK(options.interval >= kMinInterval, ValueError, "ResourceMonitor: interval ",
           options.interval.count(), " ms is below the minimum of ", kMinInterval.count(),
           " ms (sampling faster would measure the monitor itself)");
  DS_CHECK(options.capacity > 0, ValueError, "ResourceMonitor: capacity must be > 0");
  Impl& m = *impl_;
  m.options = std::move(options);
  m.clock = m.options.clock ? m.options.clock : std::function<int64_t()>(steady_now);
  const long ticks = sysconf(_SC_CLK_TCK);
  if (ticks > 0) m.ticks_per_second = static_cast<double>(ticks);
  std::optional<NvmlApi> api = m.options.nvml ? m.options.nvml : load_nvml();
  if (api) m.gpus = std::make_unique<GpuReader>(std::move(*api));
  if (!m.options.start_thread) return;
  m.thread = std::thread([this] {
    Impl& m = *impl_;
    std::unique_lock<std::mutex> lock(m.mu);
    while (!m.stopping) {
      lock.unlock();
      try {
        sample_now();
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> g(m.mu);
        m.last_error = e.what();
      }
      lock.lock();
      m.wake.wait_for(lock, m.options.interval, [&] { return m.stopping; });
    }
  });
}

ResourceMonitor::~ResourceMonitor() { stop(); }

void ResourceMonitor::stop() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.stopping = true;
  }
  m.wake.notify_all();
  if (m.thread.joinable()) m.thread.join();
}

ResourceSample ResourceMonitor::sample_now() {
  Impl& m = *impl_;
  ResourceSample s;
  const std::string self_stat = m.read("/proc/self/stat");
  const std::string stat = m.read("/proc/stat");
  const std::string status = m.read("/proc/self/status");
  std::optional<ProcessCpuTicks> process;
  std::optional<SystemCpuTicks> system;
  if (!self_stat.empty()) process = parse_proc_self_stat(self_stat);
  if (!stat.empty()) system = parse_proc_stat(stat);
  if (!status.empty()) {
    const ProcessMemory mem = parse_proc_status(status);
    s.rss_bytes = mem.rss_bytes;
    s.peak_rss_bytes = mem.peak_rss_bytes;
  }
  const MemoryStats alloc = memory_stats();
  s.allocator_current_bytes = alloc.current_bytes;
  s.allocator_reserved_bytes = alloc.reserved_bytes;
  s.allocator_peak_bytes = alloc.peak_bytes;
  if (m.gpus) s.gpus = m.gpus->read();

  std::lock_guard<std::mutex> lock(m.mu);
  s.time_ns = m.clock();
  const double seconds = (s.time_ns - m.prev_time) / 1e9;
  if (process && m.prev_process && seconds > 0) {
    const uint64_t now = process->user + process->system;
    const uint64_t before = m.prev_process->user + m.prev_process->system;
    if (now >= before) s.process_cpu_pct = 100.0 * (now - before) / m.ticks_per_second / seconds;
  }
  if (system && m.prev_system && system->total > m.prev_system->total &&
      system->busy >= m.prev_system->busy)
    s.system_cpu_pct =
        100.0 * (system->busy - m.prev_system->busy) / (system->total - m.prev_system->total);
  m.prev_process = process;
  m.prev_system = system;
  m.prev_time = s.time_ns;
  m.ring.push_back(s);
  if (m.ring.size() > m.options.capacity) {
    m.ring.pop_front();
    ++m.first_index;
  }
  return s;
}

ResourceSample ResourceMonitor::latest() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!impl_->ring.empty()) return impl_->ring.back();
  }
  return sample_now();
}

std::vector<ResourceSample> ResourceMonitor::samples() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return {impl_->ring.begin(), impl_->ring.end()};
}

int ResourceMonitor::gpu_count() const { return impl_->gpus ? impl_->gpus->device_count() : 0; }

std::string ResourceMonitor::summary() const {
  const auto all = samples();
  std::string error;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    error = impl_->last_error;
  }
  struct Stat {
    double sum = 0, max = 0, last = 0;
    int n = 0;
  };
  // Rows in flatten() order (CPU, memory, GPUs), although the first sample has no
  // CPU figures: the fullest sample sets the order, other keys follow.
  std::vector<std::string> order;
  std::map<std::string, Stat> stats;
  const ResourceSample* fullest = nullptr;
  for (const ResourceSample& s : all)
    if (!fullest || flatten(s).size() > flatten(*fullest).size()) fullest = &s;
  if (fullest)
    for (const Metric& m : flatten(*fullest)) order.push_back(m.key);
  for (const ResourceSample& s : all)
    for (const Metric& m : flatten(s)) {
      auto [it, added] = stats.try_emplace(m.key);
      if (added && std::find(order.begin(), order.end(), m.key) == order.end())
        order.push_back(m.key);
      Stat& st = it->second;
      st.max = st.n ? std::max(st.max, m.value) : m.value;
      st.sum += m.value;
      st.last = m.value;
      ++st.n;
    }
  std::ostringstream os;
  const double span = all.size() > 1 ? (all.back().time_ns - all.front().time_ns) / 1e9 : 0;
  char head[128];
  std::snprintf(head, sizeof head, "Resource monitor: %zu samples over %.1f s (interval %lld ms), %d GPU(s)\n",
                all.size(), span, static_cast<long long>(impl_->options.interval.count()),
                gpu_count());
  os << head;
  size_t width = 6;
  for (const auto& k : order) width = std::max(width, k.size());
  char row[256];
  std::snprintf(row, sizeof row, "%-*s  %14s  %14s  %14s\n", static_cast<int>(width), "metric",
                "mean", "max", "last");
  os << row;
  for (const auto& k : order) {
    const Stat& st = stats[k];
    std::snprintf(row, sizeof row, "%-*s  %14s  %14s  %14s\n", static_cast<int>(width), k.c_str(),
                  format_value(k, st.sum / st.n).c_str(), format_value(k, st.max).c_str(),
                  format_value(k, st.last).c_str());
    os << row;
  }
  if (!error.empty()) os << "last sampling error: " << error << "\n";
  return os.str();
}

void ResourceMonitor::export_counters(Profiler& profiler) const {
  std::vector<CounterSample> out;
  for (const ResourceSample& s : samples()) {
    std::map<std::string, size_t> track_index;
    for (const Metric& m : flatten(s)) {
      auto [it, added] = track_index.try_emplace(m.track, out.size());
      if (added) out.push_back({"monitor " + m.track, s.time_ns, {}});
      // Inside a GPU track the key's "gpuN/" prefix repeats the track name.
      const size_t slash = m.key.find('/');
      out[it->second].values.emplace_back(slash == std::string::npos ? m.key : m.key.substr(slash + 1),
                                          m.value);
    }
  }
  profiler.add_counters(std::move(out));
}

int64_t ResourceMonitor::write_scalars(const ScalarSink& sink, int64_t from_step) const {
  int64_t first = 0;
  std::vector<ResourceSample> all;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    first = impl_->first_index;
    all.assign(impl_->ring.begin(), impl_->ring.end());
  }
  for (size_t i = 0; i < all.size(); ++i) {
    const int64_t step = first + static_cast<int64_t>(i);
    if (step < from_step) continue;
    for (const Metric& m : flatten(all[i])) sink("monitor/" + m.key, m.value, step);
  }
  return std::max(from_step, first + static_cast<int64_t>(all.size()));
}

int64_t ResourceMonitor::write_scalars(tensorboard::SummaryWriter& writer, int64_t from_step) const {
  // Sample times are steady-clock; TensorBoard wants seconds since the epoch.
  const double now_wall = std::chrono::duration<double>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
  const int64_t now_steady = impl_->clock();
  std::map<int64_t, double> wall_of_step;
  int64_t first = 0;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    first = impl_->first_index;
    for (size_t i = 0; i < impl_->ring.size(); ++i)
      wall_of_step[first + static_cast<int64_t>(i)] =
          now_wall - (now_steady - impl_->ring[i].time_ns) / 1e9;
  }
  return write_scalars(
      [&](const std::string& tag, double value, int64_t step) {
        auto it = wall_of_step.find(step);
        writer.add_scalar(tag, value, step,
                          it == wall_of_step.end() ? std::nullopt : std::optional<double>(it->second));
      },
      from_step);
}

}  // namespace ds
