// ds::sched — the scheduling layer: a priority scheduler with worker threads per
// device, deadlines, cancellation and idle-time auxiliary tasks; a dynamic batcher
// per model; batching policies (static, AIMD, Q-learning) behind one interface.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ds/compile.h"
#include "ds/device.h"
#include "ds/error.h"
#include "ds/placement.h"
#include "ds/tensor.h"

namespace ds::sched {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Micros = std::chrono::microseconds;

enum class TaskStatus { Queued, Running, Done, Failed, Rejected, Expired, Cancelled };
const char* status_name(TaskStatus s);

// Why a task has no result: its queue was full or the scheduler stopped
// (Rejected), its deadline passed (Expired), or it was cancelled.
class RejectedError : public Error {
 public:
  RejectedError(TaskStatus status, const std::string& message) : Error(message), status_(status) {}
  TaskStatus status() const { return status_; }

 private:
  TaskStatus status_;
};

using Outputs = std::vector<Tensor>;
using Work = std::function<Outputs()>;

namespace detail {
struct TaskState;
}

// A future for one task: wait for it, read its result, cancel it.
class TaskHandle {
 public:
  TaskHandle() = default;
  explicit TaskHandle(std::shared_ptr<detail::TaskState> s) : s_(std::move(s)) {}

  bool valid() const { return s_ != nullptr; }
  uint64_t id() const;
  int priority() const;
  TaskStatus status() const;
  bool done() const;  // resolved: neither queued nor running
  void wait() const;
  bool wait_until(TimePoint t) const;  // true when resolved by `t`
  // Waits, then returns the outputs; rethrows the work's exception, or throws
  // RejectedError when the task was rejected, expired or cancelled.
  Outputs get() const;
  // Cancels a task that has not started; true when it is now Cancelled.
  bool cancel() const;
  // Microseconds spent queued, and running (0 until known).
  int64_t queue_us() const;
  int64_t compute_us() const;
  const std::shared_ptr<detail::TaskState>& state() const { return s_; }

 private:
  std::shared_ptr<detail::TaskState> s_;
};

// Called once, on the thread that resolves the task.
using Callback = std::function<void(const TaskHandle&)>;

struct TaskOptions {
  int priority = 1;                   // 1 = most urgent .. SchedulerOptions::priority_levels
  std::optional<TimePoint> deadline;  // expired at once when passed, queued or running
  std::optional<Device> device;       // pins the task to this device's workers
  // With SchedulerOptions::placer and no pinned device: the placer picks the
  // device from this cost, and learns from the run time.
  std::optional<TaskCost> cost;
  Callback on_done;
};

struct DeviceWorkers {
  Device device = Device::cpu();
  int workers = 1;
};

struct SchedulerOptions {
  int priority_levels = 3;
  size_t queue_capacity = 1024;  // per level: a full level rejects new tasks at once
  // Each `aging_step` a task waits raises it one level, so low levels never
  // starve; zero turns aging off (strict priority).
  Micros aging_step{100000};
  std::vector<DeviceWorkers> devices = {DeviceWorkers{}};
  size_t auxiliary_capacity = 256;
  std::shared_ptr<Placer> placer;  // its devices must have workers here
};

// Handed to auxiliary work: true as soon as real work waits (or the scheduler
// stops), so the auxiliary task should return and let it run.
class YieldToken {
 public:
  explicit YieldToken(std::function<bool()> f) : f_(std::move(f)) {}
  bool should_yield() const { return f_(); }

 private:
  std::function<bool()> f_;
};
// Returns true when finished, false when it yielded and wants to resume later.
using AuxWork = std::function<bool(const YieldToken&)>;

struct SchedulerStats {
  std::vector<int64_t> queued;  // per level (index 0 = level 1)
  int64_t running = 0;
  int64_t completed = 0, failed = 0, rejected = 0, expired = 0, cancelled = 0;
  int64_t auxiliary_completed = 0, auxiliary_yields = 0;
  double busy_seconds = 0;       // summed over workers (regular work)
  double auxiliary_seconds = 0;  // summed over workers (auxiliary work)
  double uptime_seconds = 0;
  int workers = 0;
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options = {});
  ~Scheduler();  // shutdown()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Never blocks: a full level, a passed deadline or a stopped scheduler gives
  // a handle that is already resolved (Rejected / Expired).
  TaskHandle submit(Work work, TaskOptions options = {});
  // Lowest priority: runs only when a worker has no regular work, on a
  // companion thread at the lowest OS priority; the worker never waits for it.
  TaskHandle submit_auxiliary(AuxWork work, Callback on_done = {});
  // Expires `task` when its deadline passes, for front-ends (the batcher) that
  // hold tasks in queues of their own.
  void watch_deadline(const TaskHandle& task);

  // Stops accepting work; queued tasks are rejected, running ones finish.
  void shutdown();
  SchedulerStats stats() const;
  const SchedulerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- dynamic batching

// Runs one batch: inputs concatenated along dim 0, outputs with the same batch.
using BatchFn = std::function<Outputs(const Outputs& inputs)>;
BatchFn batch_fn(Executable exe);

struct BatcherOptions {
  int64_t max_batch_size = 8;  // rows per batch
  Micros max_queue_delay{0};   // how long the oldest request may wait for more
  // Sizes a batch is cut to when more rows wait (e.g. sizes with fast kernels).
  std::vector<int64_t> preferred_batch_sizes;
  size_t max_queue_size = 1024;  // pending requests per level
  int instance_count = 1;        // batches of this model running at once
  std::optional<Device> device;
};

struct RequestOptions {
  int priority = 1;
  std::optional<TimePoint> deadline;
  Callback on_done;
};

// What a policy sees when it decides the next batch.
struct PolicyState {
  std::vector<int64_t> queue_depth;  // pending requests per level
  double arrival_rate = 0;           // requests per second, recent (tens of ms)
  double long_arrival_rate = 0;      // over a longer window: the trend is arrival_rate / this
  double utilization = 0;            // busy fraction of the model's instances, recent
  int64_t oldest_wait_us = 0;
};

struct PolicyDecision {
  int64_t max_batch_size = 8;
  int64_t max_queue_delay_us = 0;
};

// What happened to one batch, for policies that learn.
struct BatchOutcome {
  int64_t batch_size = 0;        // rows
  double service_us = 0;         // compute time of the batch
  double held_us = 0;            // time a free instance held waiting work back (queue delay)
  int64_t requests = 0;
  int64_t deadlines_met = 0;     // requests answered in time (or without a deadline)
  int64_t deadlines_missed = 0;  // answered late, or expired while waiting
  std::vector<double> latency_us;  // per request, arrival to answer
};

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string name() const = 0;
  virtual PolicyDecision decide(const PolicyState& state) = 0;
  virtual void observe(const BatchOutcome&) {}
};

// Triton-like: fixed batch cap and queue delay.
std::shared_ptr<Policy> static_policy(int64_t max_batch_size, int64_t max_queue_delay_us);
// Additive increase of the batch cap while every batch of a window of `window`
// batches computes within `target_latency_us`, multiplicative decrease when one
// does not (Clipper's AIMD).
std::shared_ptr<Policy> aimd_policy(double target_latency_us, int64_t max_batch_size,
                                    int64_t max_queue_delay_us, int window = 8);

struct QLearningOptions {
  std::vector<int64_t> batch_caps = {1, 2, 4, 8, 16, 32};
  std::vector<int64_t> queue_delays_us = {0, 500};
  // Step size of a state-action's first updates; it decays with the visits n
  // as learning_rate / (1 + n / learning_rate_visits), down to min_learning_rate.
  double learning_rate = 0.3;
  double min_learning_rate = 0.02;
  double learning_rate_visits = 100;
  // Per fastest-batch time: a step that takes k such times is discounted discount^k,
  // so a decision is not worth more for cutting many small batches.
  double discount = 0.95;
  double epsilon = 0.1;            // exploration rate
  double met_reward = 1;           // per request answered in time (or without a deadline)
  double miss_penalty = 1;         // per request late, expired or rejected
  double throughput_weight = 0;    // per served row
  double latency_weight = 0;       // per request per fastest-batch time of latency
  double initial_value = 30;       // optimistic (above most returns): greedy choices try each action
  double max_rate = 2000;          // requests/s at the top arrival-rate bucket
  int rate_buckets = 8;            // arrival rate 0..max_rate in equal steps (at most 10)
  uint64_t seed = 1;
};
// Tabular Q-learning, online: state = (queue depth bucket of level 1 and of the
// other levels, arrival-rate bucket, trend of the arrival rate, utilization
// bucket); action = (batch cap, queue delay); reward = met deadlines - missed
// deadlines (+ throughput - latency), credited to the decision that formed each
// batch, discounted by the time a step takes.
class QLearningPolicy : public Policy {
 public:
  explicit QLearningPolicy(QLearningOptions options = {});
  ~QLearningPolicy() override;
  std::string name() const override { return "qlearning"; }
  PolicyDecision decide(const PolicyState& state) override;
  void observe(const BatchOutcome& outcome) override;
  void set_exploration(double epsilon);
  // The table as text: one line per visited state; load() checks the action set.
  void save(const std::string& path) const;
  void load(const std::string& path);
  size_t states_visited() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class DynamicBatcher {
 public:
  DynamicBatcher(std::string name, BatchFn fn, Scheduler& scheduler, BatcherOptions options = {},
                 std::shared_ptr<Policy> policy = nullptr);
  ~DynamicBatcher();  // rejects pending requests, waits for its running batches
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Every input has the batch as dim 0; all inputs the same batch.
  TaskHandle submit(Outputs inputs, RequestOptions options = {});

  void set_options(const BatcherOptions& options);  // takes effect for the next batch
  BatcherOptions options() const;
  void set_policy(std::shared_ptr<Policy> policy);

  struct Stats {
    std::vector<int64_t> queued;  // per level
    int64_t requests = 0, batches = 0, rows = 0;
    int64_t succeeded = 0, failed = 0, rejected = 0, expired = 0, cancelled = 0;
    double queue_seconds = 0, compute_seconds = 0;  // summed over requests / batches
  };
  Stats stats() const;
  const std::string& name() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// ---- discrete-event simulation of one batched model

// Service time of a batch of b rows: linear interpolation in a measured t(b)
// table, linear extrapolation past its ends.
class ServiceModel {
 public:
  explicit ServiceModel(std::vector<std::pair<int64_t, double>> table_us);
  double operator()(int64_t rows) const;
  const std::vector<std::pair<int64_t, double>>& table() const { return table_; }
  // "1:100,16:400" (rows:microseconds)
  static ServiceModel parse(const std::string& spec);

 private:
  std::vector<std::pair<int64_t, double>> table_;
};
// Times `fn` on batches of each size (a median of `repeats` runs after a warm-up).
ServiceModel measure_service_model(const BatchFn& fn, const Outputs& one_row_inputs,
                                   const std::vector<int64_t>& batch_sizes, int repeats = 5);

struct SimClass {
  std::string name;
  int priority = 1;
  double share = 1;                  // fraction of the arrivals
  int64_t rows = 1;                  // rows per request
  std::optional<int64_t> timeout_us;  // deadline after arrival
};

struct SimPhase {
  double seconds = 1;
  double rate = 100;  // requests per second, Poisson
};

struct SimOptions {
  std::vector<SimClass> classes = {SimClass{}};
  std::vector<SimPhase> phases = {SimPhase{}};
  int workers = 1;
  int priority_levels = 3;
  size_t max_queue_size = 1024;  // per level
  std::vector<int64_t> preferred_batch_sizes;
  uint64_t seed = 1;
};

struct SimClassResult {
  std::string name;
  int64_t requests = 0, completed = 0, rejected = 0, expired = 0, late = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0;
  double throughput = 0;  // completed requests per second
};

struct SimResult {
  std::string policy;
  std::vector<SimClassResult> classes;
  int64_t batches = 0;
  double avg_batch_size = 0;
  double utilization = 0;  // busy fraction of the workers
  double seconds = 0;      // simulated time until the last answer
  double deadline_hit_rate = 0;  // answered in time / requests (all classes)
};

// Replays Poisson arrivals (deterministic by seed) against `service` with the
// same batch rule as DynamicBatcher, asking `policy` for each batch.
SimResult simulate(const SimOptions& options, const ServiceModel& service, Policy& policy);

}  // namespace ds::sched
