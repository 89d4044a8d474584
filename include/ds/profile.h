// The profiler: per-op events (time, FLOPs and bytes from the OpDef cost model,
// allocator memory), user ranges, a PyTorch-like schedule, aggregated tables
// and Chrome Trace Event JSON.
//
//   ds::Profiler prof;                       // records until stop() / destruction
//   { auto r = ds::record_function("fwd"); exe.run(feeds); }
//   prof.stop();
//   std::cout << prof.key_averages().table("self_time", 20);
//   prof.export_chrome_trace("trace.json");
//
// With the profiler off, the hooks in the executor cost one relaxed atomic load.
//
// Ops that run on a CUDA device also get device time: the kernels they launched,
// timed by CUPTI (kernel names, per-kernel times) or, when CUPTI is missing or
// taken by another tool, by a pair of CUDA events around the op's launches on its
// stream. Nothing synchronizes while recording; device times are resolved when
// a recording ends (stop(), or step() at the end of a scheduled period).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ds/op.h"

namespace ds {

class Profiler;
class DeviceTimer;

// Monotonic time in nanoseconds. Tests inject a fake clock.
using ProfileClock = std::function<int64_t()>;

// PyTorch's schedule: each cycle is `wait` idle steps, `warmup` steps recorded
// and discarded, `active` steps kept; `repeat` cycles (0: cycles forever).
struct ProfileSchedule {
  int wait = 0;
  int warmup = 0;
  int active = 1;
  int repeat = 0;
};
enum class ProfilerAction { None, Warmup, Record, RecordAndSave };
// What step number `step` (counted from 0) does under `s`; throws ValueError on
// negative counts or active < 1.
ProfilerAction schedule_action(const ProfileSchedule& s, int64_t step);
const char* action_name(ProfilerAction a);

struct ProfilerOptions {
  bool record_shapes = false;   // input shapes per op event (copied strings)
  bool profile_memory = true;   // allocator live bytes at each event's start and end
  int64_t max_events = 1'000'000;  // events kept per recording; later ones are dropped and counted
  ProfileClock clock;           // empty: std::chrono::steady_clock
  std::optional<ProfileSchedule> schedule;  // none: record from construction to stop()
  // Called at the end of each active period of the schedule (and by stop() or
  // the destructor for a partly recorded one); events() then holds that period's
  // events. It must not throw when the destructor may call it.
  std::function<void(Profiler&)> on_trace_ready;
  // Times ops that run on a CUDA device. Empty: CUPTI, else CUDA events, when a
  // GPU is visible; none without one. Tests inject a fake.
  std::shared_ptr<DeviceTimer> device_timer;
};

enum class EventKind { Op, Range };

struct ProfileEvent {
  EventKind kind = EventKind::Range;
  std::string name;    // op name ("matmul") or range name
  std::string node;    // node label ("%3 matmul 'c'"), empty in eager mode and for ranges
  std::string impl;    // kernel implementation ("reference", "onednn", ...)
  std::string shapes;  // "[2, 3], [3, 4]" with record_shapes
  int thread = 0;      // profiler thread index (0, 1, ... in order of first event)
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  double flops = 0;    // OpDef cost model
  double bytes = 0;    // bytes read + written, OpDef cost model
  // Net change of the allocator's live bytes between start and end, children
  // included; the table shows it with the children's share taken out.
  int64_t mem_delta = 0;
  int64_t mem_after = 0;  // allocator live bytes at the end (the trace's memory counter)
  int parent = -1;        // index in events() of the directly enclosing event, same thread
  int device = -1;        // CUDA device the op ran on; -1: the CPU
  int64_t device_ns = 0;  // device time of the work it launched (its DeviceActivity spans)
  int64_t duration_ns() const { return end_ns - start_ns; }
};

// A span of GPU work: one kernel, copy or memset (CUPTI), or everything an op
// launched on its stream between its two CUDA events.
struct DeviceActivity {
  std::string name;      // kernel name (CUPTI), else the launching op's name
  int device = 0;
  int64_t stream = 0;    // CUDA stream id (CUPTI's, or numbered per device in order of use)
  int64_t start_ns = 0;  // on the profiler's clock
  int64_t end_ns = 0;
  int64_t op = -1;       // index in events() of the op that launched it; -1: unknown
  int64_t duration_ns() const { return end_ns - start_ns; }
};

// Times the device work of ops. The profiler calls begin_op/end_op on the
// launching thread around each op that runs on a CUDA device (they must not
// synchronize), and collect() once when a recording ends.
class DeviceTimer {
 public:
  virtual ~DeviceTimer() = default;
  // "cupti", "cuda-events", ...: shown under the table.
  virtual std::string kind() const = 0;
  // A recording begins; device times are to be reported on `clock`.
  virtual void start(const ProfileClock& clock) = 0;
  // An op is about to launch work on `device`; returns its id (>= 0).
  virtual int64_t begin_op(int device) = 0;
  virtual void end_op(int64_t id) = 0;
  // Waits for the recorded work and returns it; DeviceActivity::op holds the
  // begin_op id of the launching op (-1: none). Ops never ended are left out.
  virtual std::vector<DeviceActivity> collect() = 0;
  // Why a better source was not used ("CUPTI ...: using CUDA events"), or "".
  virtual std::string warning() const { return ""; }
};

// A sample of named values at one time: a Chrome trace counter track.
struct CounterSample {
  std::string track;  // "memory", "cpu", "gpu0", ...
  int64_t time_ns = 0;
  std::vector<std::pair<std::string, double>> values;
};

// One row of key_averages(): events grouped by name (and shapes).
struct EventAverage {
  std::string name;
  std::string shapes;
  int64_t calls = 0;
  int64_t self_ns = 0;   // total minus time spent in directly nested events
  int64_t total_ns = 0;  // nested calls of the same name are counted once
  double flops = 0;
  double bytes = 0;
  int64_t self_mem = 0;  // net allocator bytes, children excluded
  // Device time (PyTorch's "Self CUDA" / "CUDA total"): of the work the group's
  // events launched themselves, and with that of their nested events.
  int64_t self_device_ns = 0;
  int64_t device_total_ns = 0;
};

class KeyAverages {
 public:
  // `note`: a line printed under the table (where device times came from).
  KeyAverages(std::vector<EventAverage> rows, int64_t dropped_events, std::string note = "")
      : rows_(std::move(rows)), dropped_(dropped_events), note_(std::move(note)) {}
  const std::vector<EventAverage>& rows() const { return rows_; }
  // sort_by: self_time, total_time, calls, avg, flops, gflops, bytes, gbps,
  // self_mem, self_cuda, cuda_total or name (largest first; name ascending).
  // row_limit <= 0: all rows. With device times, CUDA columns are added and
  // GFLOP/s and GB/s are per device time.
  std::string table(const std::string& sort_by = "self_time", int row_limit = 100) const;

 private:
  std::vector<EventAverage> rows_;
  int64_t dropped_;
  std::string note_;
};

class Profiler {
 public:
  explicit Profiler(ProfilerOptions options = {});
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Advances the schedule by one step (no effect without a schedule).
  void step();
  // Ends recording; the events stay available. Idempotent.
  void stop();
  bool recording() const;

  // The recorded events of every thread (after stop(), or inside on_trace_ready);
  // events still open when recording ended are left out.
  const std::vector<ProfileEvent>& events() const;
  int64_t dropped_events() const;
  int64_t start_ns() const;
  // The device work of the last recording, sorted by device, stream and start;
  // spans on one stream never overlap.
  const std::vector<DeviceActivity>& device_activities() const;
  // The device timer's kind and its warning ("" when none).
  std::string device_timer_kind() const;
  std::string device_timer_warning() const;
  // group_by: "op" (event name) or "shape" (name and input shapes).
  KeyAverages key_averages(const std::string& group_by = "op") const;

  // Extra counter tracks for the trace (the resource monitor adds its samples).
  void add_counters(std::vector<CounterSample> samples);
  std::string chrome_trace() const;
  void export_chrome_trace(const std::string& path) const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

namespace detail {
extern std::atomic<bool> g_profiling;
// An open event: its thread's buffer, the recording it belongs to, its index.
struct EventToken {
  void* buffer = nullptr;
  uint64_t generation = 0;
  int index = -1;
  int64_t device_op = -1;  // the device timer's id for an op on a CUDA device
};
void end_event(const EventToken& t);
}  // namespace detail
inline bool profiler_active() { return detail::g_profiling.load(std::memory_order_relaxed); }

// A user range: every event started on this thread while it is open nests in it.
class RecordFunction {
 public:
  explicit RecordFunction(std::string_view name) {
    if (profiler_active()) [[unlikely]]
      begin(name);
  }
  ~RecordFunction() {
    if (token_.buffer) [[unlikely]]
      detail::end_event(token_);
  }
  RecordFunction(const RecordFunction&) = delete;
  RecordFunction& operator=(const RecordFunction&) = delete;

 private:
  void begin(std::string_view name);
  detail::EventToken token_;
};
inline RecordFunction record_function(std::string_view name) { return RecordFunction(name); }

// The executor's hook around one kernel call; nothing but a flag test when off.
// `cuda_device` >= 0: the kernel launches on that CUDA device (timed there too).
class OpEventScope {
 public:
  OpEventScope(const OpContext& ctx, const KernelEntry& kernel,
               const std::vector<TensorType>& outputs, int cuda_device = -1) {
    if (profiler_active()) [[unlikely]]
      begin(ctx, kernel, outputs, cuda_device);
  }
  ~OpEventScope() {
    if (token_.buffer) [[unlikely]]
      detail::end_event(token_);
  }
  OpEventScope(const OpEventScope&) = delete;
  OpEventScope& operator=(const OpEventScope&) = delete;

 private:
  void begin(const OpContext& ctx, const KernelEntry& kernel,
             const std::vector<TensorType>& outputs, int cuda_device);
  detail::EventToken token_;
};

}  // namespace ds
