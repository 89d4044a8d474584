// The resource monitor: a sampling thread that records process and system CPU,
// resident memory, the ds allocator and, through NVML (loaded with dlopen, no
// build dependency), each GPU's utilization, memory, power and temperature.
//
//   ds::ResourceMonitor mon;            // samples every second
//   ...
//   std::cout << mon.summary();
//   ds::ResourceSample now = mon.latest();   // what the scheduler reads
//
// A metric the machine does not offer (no NVML, no power sensor) is absent from
// the samples, not an error.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ds {

class Profiler;
namespace tensorboard {
class SummaryWriter;
}

struct GpuSample {
  int index = 0;
  std::string name;
  std::optional<double> utilization_pct;         // SM busy time, 0..100
  std::optional<double> memory_utilization_pct;  // memory controller busy time, 0..100
  std::optional<int64_t> memory_used_bytes;
  std::optional<int64_t> memory_total_bytes;
  std::optional<double> power_watts;
  std::optional<double> temperature_c;
};

struct ResourceSample {
  int64_t time_ns = 0;  // steady clock, the profiler's default time base
  // Since the previous sample; absent in the first one. Process CPU counts all
  // cores (200% = two cores busy); system CPU is 0..100 over all cores.
  std::optional<double> process_cpu_pct;
  std::optional<double> system_cpu_pct;
  std::optional<int64_t> rss_bytes;
  std::optional<int64_t> peak_rss_bytes;
  int64_t allocator_current_bytes = 0;
  int64_t allocator_reserved_bytes = 0;
  int64_t allocator_peak_bytes = 0;
  std::vector<GpuSample> gpus;
};

// ---- /proc parsing (pure, tested on fixture text) ----------------------------
struct ProcessCpuTicks {
  uint64_t user = 0, system = 0;  // utime and stime, in clock ticks
};
struct SystemCpuTicks {
  uint64_t busy = 0, total = 0;  // all cores, in clock ticks; busy excludes idle and iowait
};
struct ProcessMemory {
  std::optional<int64_t> rss_bytes, peak_rss_bytes;  // VmRSS, VmHWM
};
// Throw IOError naming the file when the text is not what the kernel writes.
ProcessCpuTicks parse_proc_self_stat(const std::string& text);
SystemCpuTicks parse_proc_stat(const std::string& text);
ProcessMemory parse_proc_status(const std::string& text);

// ---- NVML behind a function table (tests inject a fake) ----------------------
// The few NVML entry points used, with NVML's C signatures (return 0 = success;
// device handles are opaque pointers).
struct NvmlUtilization {
  unsigned int gpu;
  unsigned int memory;
};
struct NvmlMemory {
  unsigned long long total, free, used;
};
struct NvmlApi {
  std::function<int()> init;
  std::function<int()> shutdown;
  std::function<int(unsigned int*)> device_count;
  std::function<int(unsigned int, void**)> device_handle;
  std::function<int(void*, NvmlUtilization*)> utilization;
  std::function<int(void*, NvmlMemory*)> memory;
  std::function<int(void*, unsigned int*)> power_mw;
  std::function<int(void*, int, unsigned int*)> temperature;  // sensor 0: the GPU die
  std::function<int(void*, char*, unsigned int)> name;
};
// NVML from libnvidia-ml.so.1, or nullopt when the library or a symbol is missing.
std::optional<NvmlApi> load_nvml();

// Reads every GPU through `api`; devices or metrics that fail are skipped.
class GpuReader {
 public:
  explicit GpuReader(NvmlApi api);  // calls init; no devices if it fails
  ~GpuReader();
  GpuReader(const GpuReader&) = delete;
  GpuReader& operator=(const GpuReader&) = delete;
  int device_count() const { return static_cast<int>(devices_.size()); }
  std::vector<GpuSample> read() const;

 private:
  NvmlApi api_;
  bool initialized_ = false;
  std::vector<std::pair<unsigned int, void*>> devices_;
  std::vector<std::string> names_;
};

// ---- the monitor ---------------------------------------------------------------
struct MonitorOptions {
  std::chrono::milliseconds interval{1000};  // at least kMinInterval
  size_t capacity = 3600;                    // samples kept in the ring buffer
  bool start_thread = true;  // false: samples only on sample_now() (tests)
  // NVML: nullopt loads the real library (absent is fine); tests give a fake table.
  std::optional<NvmlApi> nvml;
  // Reads a /proc file ("/proc/self/stat", "/proc/stat", "/proc/self/status");
  // empty: the real file. Tests read fixtures.
  std::function<std::string(const std::string& path)> read_file;
  std::function<int64_t()> clock;  // sample times in ns; empty: the steady clock
};

class ResourceMonitor {
 public:
  static constexpr std::chrono::milliseconds kMinInterval{100};

  // Throws ValueError when the interval is below kMinInterval or capacity is 0.
  explicit ResourceMonitor(MonitorOptions options = {});
  ~ResourceMonitor();  // stops the thread
  ResourceMonitor(const ResourceMonitor&) = delete;
  ResourceMonitor& operator=(const ResourceMonitor&) = delete;

  void stop();
  // Takes a sample now and stores it (the thread calls this every interval).
  ResourceSample sample_now();
  // The newest sample (taking one if there is none yet).
  ResourceSample latest();
  std::vector<ResourceSample> samples() const;  // oldest first
  int gpu_count() const;
  // Mean and max of each metric over the stored samples, as text.
  std::string summary() const;

  // The samples as Chrome trace counter tracks ("cpu", "memory", "gpu0", ...).
  void export_counters(Profiler& profiler) const;
  // The stored samples from step `from_step` on as scalars, e.g.
  // ("monitor/process_cpu_pct", 37.5, step) with step = the sample's index since
  // the monitor started. Returns the step to pass next time, so that periodic
  // calls write each sample once.
  using ScalarSink = std::function<void(const std::string& tag, double value, int64_t step)>;
  int64_t write_scalars(const ScalarSink& sink, int64_t from_step = 0) const;
  // The same into a TensorBoard run, with each sample's own wall time.
  int64_t write_scalars(tensorboard::SummaryWriter& writer, int64_t from_step = 0) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds
