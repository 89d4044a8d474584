// Profiler recording: one recording at a time, per-thread event buffers.
//
// Each thread appends to its own buffer under the buffer's own (uncontended)
// lock, so recording threads never wait on each other. Stopping a recording
// clears the global generation first and then takes every buffer's lock, so
// once it returns no thread can still be reading the recording's settings.
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "ds/error.h"
#include "ds/profile.h"
#include "ds/tensor.h"
#include "tools/cuda_timing.h"
#include "tools/profiler_state.h"

namespace ds {

namespace detail {
std::atomic<bool> g_profiling{false};
}

namespace {

struct ThreadBuffer;

struct RecordingConfig {
  ProfileClock clock;
  bool record_shapes = false;
  bool profile_memory = true;
  int64_t max_events = 0;
  DeviceTimer* timer = nullptr;  // times ops on CUDA devices; null: none
};

struct Registry {
  std::mutex mu;  // guards buffers, orphans, owner and next_thread
  std::vector<ThreadBuffer*> buffers;
  // Events of threads that exited during a recording, tagged with its generation.
  struct Orphan {
    uint64_t generation;
    std::vector<ProfileEvent> events;
    std::vector<std::pair<int, int64_t>> device_ops;
  };
  std::vector<Orphan> orphans;
  const void* owner = nullptr;  // the Profiler that holds the recorder
  int next_thread = 0;
  std::map<int, std::string> thread_names;  // OS names, by profiler thread index
  uint64_t last_generation = 0;
  // Nonzero while recording; written only with every buffer mutex released.
  std::atomic<uint64_t> generation{0};
  RecordingConfig config;  // written only while generation is 0
  std::atomic<int64_t> count{0};
  std::atomic<int64_t> dropped{0};
};

// Never destroyed: thread buffers unregister during static destruction.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

constexpr int64_t kOpen = -1;

// A thread's buffer is locked by its own thread for every event and by another
// thread only when a recording ends, so a spin lock (half the cost of an
// uncontended std::mutex) never spins in practice.
class SpinLock {
 public:
  void lock() {
    while (flag_.test_and_set(std::memory_order_acquire)) std::this_thread::yield();
  }
  void unlock() { flag_.clear(std::memory_order_release); }

 private:
  std::atomic_flag flag_;
};

// A thread's events in fixed chunks: appending never moves earlier events, and
// chunks below malloc's mmap threshold are reused from the heap by the next
// recording instead of being faulted in afresh.
class EventLog {
 public:
  ProfileEvent& push() {
    if (size_ == chunks_.size() * kChunk) chunks_.push_back(std::make_unique<ProfileEvent[]>(kChunk));
    ProfileEvent& e = (*this)[size_++];
    // Field by field: a reused event keeps its strings' capacity.
    e.node.clear();
    e.impl.clear();
    e.shapes.clear();
    e.flops = e.bytes = 0;
    e.mem_delta = e.mem_after = 0;
    return e;
  }
  ProfileEvent& operator[](size_t i) { return chunks_[i / kChunk][i % kChunk]; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Moves the events out; keeps a few chunks for the next recording.
  std::vector<ProfileEvent> take() {
    std::vector<ProfileEvent> out;
    out.reserve(size_);
    for (size_t i = 0; i < size_; ++i) out.push_back(std::move((*this)[i]));
    clear();
    return out;
  }
  void clear() {
    size_ = 0;
    if (chunks_.size() > kChunksKept) chunks_.resize(kChunksKept);
  }

 private:
  static constexpr size_t kChunk = 128;
  static constexpr size_t kChunksKept = 16;
  std::vector<std::unique_ptr<ProfileEvent[]>> chunks_;
  size_t size_ = 0;
};

struct ThreadBuffer {
  SpinLock mu;
  uint64_t generation = 0;  // the recording `events` belong to
  int thread = 0;
  EventLog events;
  std::vector<int> open;  // indices of events begun and not yet ended, innermost last
  std::vector<std::pair<int, int64_t>> device_ops;  // (event index, device timer id)

  ThreadBuffer() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    thread = r.next_thread++;
    r.buffers.push_back(this);
    char name[64] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    r.thread_names[thread] = name;
  }
  ~ThreadBuffer() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.buffers.erase(std::find(r.buffers.begin(), r.buffers.end(), this));
    std::lock_guard<SpinLock> own(mu);
    if (generation != 0 && generation == r.generation.load() && !events.empty())
      r.orphans.push_back({generation, events.take(), std::move(device_ops)});
  }
};

ThreadBuffer& local_buffer() {
  thread_local ThreadBuffer buffer;
  return buffer;
}

int64_t steady_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t live_bytes() { return memory_stats().current_bytes; }

// Starts an event on this thread; `fill` sets its details (called only when the
// event is kept). Returns an empty token when not recording or over the cap.
template <typename Fill>
detail::EventToken begin_event(EventKind kind, std::string_view name, int cuda_device, Fill&& fill) {
  Registry& r = registry();
  ThreadBuffer& b = local_buffer();
  std::lock_guard<SpinLock> lock(b.mu);
  const uint64_t gen = r.generation.load(std::memory_order_acquire);
  if (gen == 0) return {};
  if (b.generation != gen) {
    b.events.clear();
    b.open.clear();
    b.device_ops.clear();
    b.generation = gen;
  }
  const RecordingConfig& c = r.config;
  if (r.count.fetch_add(1, std::memory_order_relaxed) >= c.max_events) {
    r.dropped.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  ProfileEvent& e = b.events.push();
  e.kind = kind;
  e.name = name;
  e.thread = b.thread;
  e.parent = b.open.empty() ? -1 : b.open.back();
  fill(e, c);
  const int index = static_cast<int>(b.events.size()) - 1;
  b.open.push_back(index);
  if (c.profile_memory) e.mem_after = live_bytes();  // the start value until the event ends
  e.end_ns = kOpen;
  e.device = cuda_device;
  int64_t device_op = -1;
  if (cuda_device >= 0 && c.timer) {
    device_op = c.timer->begin_op(cuda_device);
    b.device_ops.emplace_back(index, device_op);
  }
  // Last, so the bookkeeping above is charged to the parent, not to this event.
  e.start_ns = c.clock();
  return {&b, gen, index, device_op};
}

// Takes the events of recording `gen` from every thread; the caller has set the
// generation to 0. Unfinished events are left out (their finished descendants
// move up to the top level: their ancestors are unfinished too). `op_of_id`
// receives the index of each kept event that has a device timer id.
std::vector<ProfileEvent> collect_events(uint64_t gen, std::unordered_map<int64_t, int>& op_of_id) {
  Registry& r = registry();
  std::vector<Registry::Orphan> per_thread;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (ThreadBuffer* b : r.buffers) {
      std::lock_guard<SpinLock> own(b->mu);
      if (b->generation == gen) per_thread.push_back({gen, b->events.take(), std::move(b->device_ops)});
      b->events.clear();
      b->open.clear();
      b->device_ops.clear();
      b->generation = 0;
    }
    for (auto& o : r.orphans)
      if (o.generation == gen) per_thread.push_back(std::move(o));
    r.orphans.clear();
  }
  std::vector<ProfileEvent> all;
  for (auto& [g, events, device_ops] : per_thread) {
    std::vector<int> new_index(events.size(), -1);
    const int base = static_cast<int>(all.size());
    int kept = 0;
    for (size_t i = 0; i < events.size(); ++i)
      if (events[i].end_ns != kOpen) new_index[i] = base + kept++;
    for (size_t i = 0; i < events.size(); ++i) {
      if (new_index[i] < 0) continue;
      ProfileEvent& e = events[i];
      e.parent = e.parent >= 0 ? new_index[e.parent] : -1;
      all.push_back(std::move(e));
    }
    for (const auto& [index, id] : device_ops)
      if (new_index[index] >= 0) op_of_id[id] = new_index[index];
  }
  return all;
}

}  // namespace

// ---- events -------------------------------------------------------------------

void RecordFunction::begin(std::string_view name) {
  token_ = begin_event(EventKind::Range, name, -1, [](ProfileEvent&, const RecordingConfig&) {});
}

void detail::end_event(const EventToken& t) {
  auto& b = *static_cast<ThreadBuffer*>(t.buffer);
  Registry& r = registry();
  std::lock_guard<SpinLock> lock(b.mu);
  // The recording this event belongs to may have ended (or a new one begun).
  if (b.generation != t.generation || r.generation.load(std::memory_order_acquire) != t.generation)
    return;
  const RecordingConfig& c = r.config;
  ProfileEvent& e = b.events[t.index];
  if (t.device_op >= 0) c.timer->end_op(t.device_op);
  e.end_ns = c.clock();
  if (c.profile_memory) {
    const int64_t now = live_bytes();
    e.mem_delta = now - e.mem_after;
    e.mem_after = now;
  }
  // Scopes end in reverse order of their start on one thread.
  if (!b.open.empty() && b.open.back() == t.index) b.open.pop_back();
}

void OpEventScope::begin(const OpContext& ctx, const KernelEntry& kernel,
                         const std::vector<TensorType>& outputs, int cuda_device) {
  token_ = begin_event(EventKind::Op, ctx.op.name, cuda_device, [&](ProfileEvent& e, const RecordingConfig& c) {
    e.node = ctx.node;
    e.impl = kernel.impl;
    const Cost cost = ctx.op.estimate(ctx, outputs);
    e.flops = cost.flops;
    e.bytes = cost.bytes;
    if (c.record_shapes)
      for (const TensorType& t : ctx.inputs) e.shapes += (e.shapes.empty() ? "" : ", ") + t.str();
  });
}

// ---- schedule -----------------------------------------------------------------

ProfilerAction schedule_action(const ProfileSchedule& s, int64_t step) {
  DS_CHECK(s.wait >= 0 && s.warmup >= 0 && s.repeat >= 0 && s.active >= 1, ValueError,
           "profiler schedule: expected wait, warmup, repeat >= 0 and active >= 1, got wait=",
           s.wait, " warmup=", s.warmup, " active=", s.active, " repeat=", s.repeat);
  DS_CHECK(step >= 0, ValueError, "profiler schedule: step must be >= 0, got ", step);
  const int64_t cycle = int64_t{s.wait} + s.warmup + s.active;
  if (s.repeat > 0 && step / cycle >= s.repeat) return ProfilerAction::None;
  const int64_t pos = step % cycle;
  if (pos < s.wait) return ProfilerAction::None;
  if (pos < s.wait + s.warmup) return ProfilerAction::Warmup;
  return pos < cycle - 1 ? ProfilerAction::Record : ProfilerAction::RecordAndSave;
}

const char* action_name(ProfilerAction a) {
  switch (a) {
    case ProfilerAction::None: return "none";
    case ProfilerAction::Warmup: return "warmup";
    case ProfilerAction::Record: return "record";
    case ProfilerAction::RecordAndSave: return "record_and_save";
  }
  return "?";
}

// ---- the Profiler ---------------------------------------------------------------


namespace {

// The timer's work of the recording that just ended. A failure (a CUDA error)
// costs the device times, not the profile: stop() runs in destructors.
std::vector<DeviceActivity> collect_device_activities(Profiler::State& s) {
  if (!s.timer) return {};
  std::vector<DeviceActivity> acts;
  try {
    acts = s.timer->collect();
  } catch (const std::exception& e) {
    s.device_warning = std::string("device times lost: ") + e.what();
  }
  const std::string w = s.device_warning.empty() ? s.timer->warning() : s.device_warning;
  if (!w.empty() && !s.warned) {
    std::fprintf(stderr, "ds.profile: warning: %s\n", w.c_str());
    s.warned = true;
  }
  return acts;
}

void start_recording(Profiler::State& s) {
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    s.generation = ++r.last_generation;
    r.config = {s.clock, s.options.record_shapes, s.options.profile_memory, s.options.max_events,
                s.timer.get()};
    r.count.store(0);
    r.dropped.store(0);
  }
  if (s.timer) s.timer->start(s.clock);
  s.recording_start = s.clock();
  r.generation.store(s.generation, std::memory_order_release);
  detail::g_profiling.store(true, std::memory_order_relaxed);
}

// Ends the recording; returns its events (or discards them).
void stop_recording(Profiler::State& s, bool keep) {
  Registry& r = registry();
  detail::g_profiling.store(false, std::memory_order_relaxed);
  r.generation.store(0, std::memory_order_release);
  std::unordered_map<int64_t, int> op_of_id;
  auto events = collect_events(s.generation, op_of_id);
  s.generation = 0;
  // Even a discarded recording is collected: that returns the timer's events.
  std::vector<DeviceActivity> device = collect_device_activities(s);
  if (!keep) return;
  attach_device_activities(events, device, op_of_id);
  s.device_activities = std::move(device);
  s.events = std::move(events);
  s.thread_names.clear();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (const ProfileEvent& e : s.events) s.thread_names.try_emplace(e.thread, r.thread_names[e.thread]);
  }
  s.dropped = r.dropped.load();
  s.events_start = s.recording_start;
}

}  // namespace

Profiler::Profiler(ProfilerOptions options) : state_(std::make_unique<State>()) {
  DS_CHECK(options.max_events > 0, ValueError, "Profiler: max_events must be > 0, got ",
           options.max_events);
  state_->options = std::move(options);
  state_->clock = state_->options.clock ? state_->options.clock : ProfileClock(steady_now);
  state_->timer = state_->options.device_timer ? state_->options.device_timer : default_device_timer();
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    DS_CHECK(r.owner == nullptr, ValueError,
             "Profiler: another Profiler is already active; stop it before starting a new one");
    r.owner = this;
  }
  const auto& sched = state_->options.schedule;
  if (!sched || schedule_action(*sched, 0) != ProfilerAction::None) start_recording(*state_);
}

Profiler::~Profiler() { stop(); }

void Profiler::step() {
  State& s = *state_;
  if (!s.options.schedule || s.finished) return;
  const ProfilerAction current = schedule_action(*s.options.schedule, s.step);
  const ProfilerAction next = schedule_action(*s.options.schedule, ++s.step);
  const bool next_records = next == ProfilerAction::Record || next == ProfilerAction::RecordAndSave;
  if (current == ProfilerAction::RecordAndSave) {
    stop_recording(s, true);
    if (s.options.on_trace_ready) s.options.on_trace_ready(*this);
  } else if (s.generation != 0 && (next == ProfilerAction::None ||
                                   (current == ProfilerAction::Warmup && next_records))) {
    stop_recording(s, false);  // warmup events are discarded
  }
  if (next != ProfilerAction::None && s.generation == 0) start_recording(s);
}

void Profiler::stop() {
  State& s = *state_;
  if (s.finished) return;
  s.finished = true;
  if (s.generation != 0) {
    // Inside a schedule, a partly recorded active period is kept; warmup is not.
    const ProfilerAction a =
        s.options.schedule ? schedule_action(*s.options.schedule, s.step) : ProfilerAction::Record;
    const bool keep = a == ProfilerAction::Record || a == ProfilerAction::RecordAndSave;
    stop_recording(s, keep);
    if (keep && s.options.schedule && s.options.on_trace_ready) s.options.on_trace_ready(*this);
  }
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.owner == this) r.owner = nullptr;
}

bool Profiler::recording() const { return state_->generation != 0; }

const std::vector<ProfileEvent>& Profiler::events() const {
  DS_CHECK(state_->generation == 0 || state_->options.schedule, ValueError,
           "Profiler: events are available after stop() (the profiler is still recording)");
  return state_->events;
}

int64_t Profiler::dropped_events() const { return state_->dropped; }

const std::vector<DeviceActivity>& Profiler::device_activities() const {
  events();  // the same availability rule
  return state_->device_activities;
}

std::string Profiler::device_timer_kind() const { return state_->timer ? state_->timer->kind() : ""; }

std::string Profiler::device_timer_warning() const {
  if (!state_->device_warning.empty() || !state_->timer) return state_->device_warning;
  return state_->timer->warning();
}
int64_t Profiler::start_ns() const { return state_->events_start; }

void Profiler::add_counters(std::vector<CounterSample> samples) {
  auto& c = state_->counters;
  c.insert(c.end(), std::make_move_iterator(samples.begin()), std::make_move_iterator(samples.end()));
}

void attach_device_activities(std::vector<ProfileEvent>& events, std::vector<DeviceActivity>& acts,
                              const std::unordered_map<int64_t, int>& op_of_id) {
  for (DeviceActivity& a : acts) {
    const auto it = a.op >= 0 ? op_of_id.find(a.op) : op_of_id.end();
    a.op = it == op_of_id.end() ? -1 : it->second;
    if (a.name.empty()) a.name = a.op >= 0 ? events[a.op].name : "device work";
  }
  std::stable_sort(acts.begin(), acts.end(), [](const DeviceActivity& a, const DeviceActivity& b) {
    if (a.device != b.device) return a.device < b.device;
    if (a.stream != b.stream) return a.stream < b.stream;
    return a.start_ns < b.start_ns;
  });
  for (size_t i = 0; i < acts.size(); ++i) {
    DeviceActivity& a = acts[i];
    if (i > 0 && acts[i - 1].device == a.device && acts[i - 1].stream == a.stream)
      a.start_ns = std::max(a.start_ns, acts[i - 1].end_ns);
    a.end_ns = std::max(a.end_ns, a.start_ns);
    if (a.op >= 0) events[a.op].device_ns += a.duration_ns();
  }
}

}  // namespace ds
