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
  int64_t duration_ns() const { return end_ns - start_ns; }
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
};

class KeyAverages {
 public:
  KeyAverages(std::vector<EventAverage> rows, int64_t dropped_events)
      : rows_(std::move(rows)), dropped_(dropped_events) {}
  const std::vector<EventAverage>& rows() const { return rows_; }
  // sort_by: self_time, total_time, calls, avg, flops, gflops, bytes, gbps,
  // self_mem or name (largest first; name ascending). row_limit <= 0: all rows.
  std::string table(const std::string& sort_by = "self_time", int row_limit = 100) const;

 private:
  std::vector<EventAverage> rows_;
  int64_t dropped_;
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
class OpEventScope {
 public:
  OpEventScope(const OpContext& ctx, const KernelEntry& kernel,
               const std::vector<TensorType>& outputs) {
    if (profiler_active()) [[unlikely]]
      begin(ctx, kernel, outputs);
  }
  ~OpEventScope() {
    if (token_.buffer) [[unlikely]]
      detail::end_event(token_);
  }
  OpEventScope(const OpEventScope&) = delete;
  OpEventScope& operator=(const OpEventScope&) = delete;

 private:
  void begin(const OpContext& ctx, const KernelEntry& kernel,
             const std::vector<TensorType>& outputs);
  detail::EventToken token_;
};

}  // namespace ds
