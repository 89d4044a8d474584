// Hardware-aware placement: which device a task (or a batch) should run on,
// from its cost (FLOPs and bytes from the OpDef cost model, as in
// Executable::stats()) and what each device is measured to deliver at run time.
//
//   ds::sched::Placer placer({{Device::cpu(), 1e11, 2e10, 2}, {Device::cuda(0), 5e13, 3e12, 1}});
//   auto p = placer.place(ds::sched::cost_of(exe));      // device where it finishes first
//   ... run on p.device ...
//   placer.complete(p, seconds);                        // learn the achieved rate
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "ds/compile.h"
#include "ds/device.h"

namespace ds {
struct ResourceSample;
}

namespace ds::sched {

struct TaskCost {
  double flops = 0;
  double bytes = 0;  // memory traffic
};
// Per run, from the OpDef cost model of the executable's graph.
TaskCost cost_of(const Executable& exe);

struct DeviceProfile {
  Device device = Device::cpu();
  // Priors used until runs are measured: peak compute and memory bandwidth.
  double flops_per_s = 1e10;
  double bytes_per_s = 1e10;
  int workers = 1;  // tasks the device runs at once
};

struct Placement {
  size_t index = 0;  // into the placer's devices
  Device device = Device::cpu();
  double estimated_seconds = 0;  // this task's own run time
  double finish_seconds = 0;     // queued work ahead of it plus its own time
};

struct PlacementDeviceState {
  Device device;
  double efficiency = 1;        // EWMA of achieved / prior roofline speed
  double achieved_flops_per_s = 0;  // efficiency x prior peak
  double outside_utilization = 0;   // 0..1, load from others (the resource monitor)
  double queued_seconds = 0;    // estimates of placed, unfinished tasks
  int64_t in_flight = 0;
};

// Thread-safe. A task's time on a device is the roofline max(flops / F,
// bytes / B) at the device's priors, divided by the measured efficiency and by
// the share of the device others leave free; it finishes after the work
// already placed there (spread over the device's workers).
class Placer {
 public:
  explicit Placer(std::vector<DeviceProfile> devices, double ewma_weight = 0.2);

  // The device where the task would finish first; `pinned` is used as is
  // (NotFoundError when the placer does not know it). The estimate is added to
  // the device's queue until complete() or cancel().
  Placement place(const TaskCost& cost, std::optional<Device> pinned = std::nullopt);
  // The task ran in `seconds`: its estimate leaves the queue and the achieved
  // speed is folded into the device's EWMA.
  void complete(const Placement& p, const TaskCost& cost, double seconds);
  // The task never ran (rejected, expired, cancelled).
  void cancel(const Placement& p);

  // Load on a device from outside this placer, 0..1.
  void set_outside_utilization(Device d, double fraction);
  // From a monitor sample: CPU = system CPU minus this process's share; each
  // GPU = its SM utilization.
  void observe(const ResourceSample& sample);

  double estimate_seconds(size_t index, const TaskCost& cost) const;
  std::vector<PlacementDeviceState> devices() const;

 private:
  struct Slot {
    DeviceProfile profile;
    double efficiency = 1;
    double outside = 0;
    double queued_seconds = 0;
    int64_t in_flight = 0;
  };
  double estimate_locked(const Slot& s, const TaskCost& cost) const;
  size_t index_of(Device d) const;

  mutable std::mutex m_;
  std::vector<Slot> slots_;
  double weight_;
};

}  // namespace ds::sched
