// Placement: earliest estimated finish over a device table whose speeds are
// learned from the runs themselves (EWMA of achieved vs prior roofline speed).
#include "ds/placement.h"

#include <algorithm>
#include <thread>

#include "ds/error.h"
#include "ds/monitor.h"

namespace ds::sched {

TaskCost cost_of(const Executable& exe) {
  const ExecutableStats st = exe.stats();
  return {st.flops, st.bytes};
}

Placer::Placer(std::vector<DeviceProfile> devices, double ewma_weight) : weight_(ewma_weight) {
  DS_CHECK(!devices.empty(), ValueError, "Placer: no devices given");
  DS_CHECK(ewma_weight > 0 && ewma_weight <= 1, ValueError,
           "Placer: ewma_weight must be in (0, 1], got ", ewma_weight);
  for (auto& d : devices) {
    DS_CHECK(d.flops_per_s > 0 && d.bytes_per_s > 0 && d.workers >= 1, ValueError, "Placer: device ",
             d.device.str(), " needs positive flops_per_s, bytes_per_s and workers, got ",
             d.flops_per_s, ", ", d.bytes_per_s, ", ", d.workers);
    slots_.push_back({std::move(d)});
  }
}

size_t Placer::index_of(Device d) const {
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].profile.device == d) return i;
  throw NotFoundError(detail::cat("Placer: no device ", d.str(), " in the placement table"));
}

double Placer::estimate_locked(const Slot& s, const TaskCost& cost) const {
  const double roofline =
      std::max(cost.flops / s.profile.flops_per_s, cost.bytes / s.profile.bytes_per_s);
  // A device others keep fully busy still gets a time slice now and then.
  const double free_share = std::max(0.05, 1.0 - s.outside);
  return roofline / (s.efficiency * free_share);
}

double Placer::estimate_seconds(size_t index, const TaskCost& cost) const {
  std::lock_guard l(m_);
  DS_CHECK(index < slots_.size(), ValueError, "Placer::estimate_seconds: device index ", index,
           " out of range for ", slots_.size(), " devices");
  return estimate_locked(slots_[index], cost);
}

Placement Placer::place(const TaskCost& cost, std::optional<Device> pinned) {
  std::lock_guard l(m_);
  auto finish = [&](const Slot& s, double own) {
    // A free worker starts at once; otherwise the placed work drains over all workers.
    const double wait = s.in_flight >= s.profile.workers ? s.queued_seconds / s.profile.workers : 0;
    return wait + own;
  };
  size_t best = pinned ? index_of(*pinned) : 0;
  double best_own = estimate_locked(slots_[best], cost);
  double best_finish = finish(slots_[best], best_own);
  if (!pinned) {
    for (size_t i = 1; i < slots_.size(); ++i) {
      const double own = estimate_locked(slots_[i], cost);
      const double f = finish(slots_[i], own);
      if (f < best_finish) {
        best = i;
        best_own = own;
        best_finish = f;
      }
    }
  }
  Slot& s = slots_[best];
  s.queued_seconds += best_own;
  ++s.in_flight;
  return {best, s.profile.device, best_own, best_finish};
}

void Placer::cancel(const Placement& p) {
  std::lock_guard l(m_);
  DS_CHECK(p.index < slots_.size(), ValueError, "Placer::cancel: device index ", p.index,
           " out of range for ", slots_.size(), " devices");
  Slot& s = slots_[p.index];
  s.queued_seconds = std::max(0.0, s.queued_seconds - p.estimated_seconds);
  s.in_flight = std::max<int64_t>(0, s.in_flight - 1);
}

void Placer::complete(const Placement& p, const TaskCost& cost, double seconds) {
  cancel(p);
  if (seconds <= 0) return;  // nothing measurable (an empty graph)
  std::lock_guard l(m_);
  Slot& s = slots_[p.index];
  const double roofline =
      std::max(cost.flops / s.profile.flops_per_s, cost.bytes / s.profile.bytes_per_s);
  if (roofline <= 0) return;
  // Measured against the share others left free, so outside load is not learned twice.
  const double achieved = roofline / (seconds * std::max(0.05, 1.0 - s.outside));
  s.efficiency = (1 - weight_) * s.efficiency + weight_ * achieved;
}

void Placer::set_outside_utilization(Device d, double fraction) {
  DS_CHECK(fraction >= 0 && fraction <= 1, ValueError,
           "Placer::set_outside_utilization: fraction must be in [0, 1], got ", fraction);
  std::lock_guard l(m_);
  slots_[index_of(d)].outside = fraction;
}

void Placer::observe(const ResourceSample& sample) {
  std::lock_guard l(m_);
  for (Slot& s : slots_) {
    const Device d = s.profile.device;
    if (d.kind == DeviceKind::CPU && sample.system_cpu_pct) {
      // process_cpu_pct counts cores (200% = two); system CPU is over all cores.
      const double cores = std::max(1u, std::thread::hardware_concurrency());
      const double own = sample.process_cpu_pct.value_or(0) / cores;
      s.outside = std::clamp((*sample.system_cpu_pct - own) / 100, 0.0, 1.0);
    } else if (d.kind == DeviceKind::CUDA) {
      for (const GpuSample& g : sample.gpus)
        if (g.index == d.index && g.utilization_pct)
          s.outside = std::clamp(*g.utilization_pct / 100, 0.0, 1.0);
    }
  }
}

std::vector<PlacementDeviceState> Placer::devices() const {
  std::lock_guard l(m_);
  std::vector<PlacementDeviceState> out;
  for (const Slot& s : slots_)
    out.push_back({s.profile.device, s.efficiency, s.efficiency * s.profile.flops_per_s, s.outside,
                   s.queued_seconds, s.in_flight});
  return out;
}

}  // namespace ds::sched
