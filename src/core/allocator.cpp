// 64-byte-aligned pooled CPU allocator. Blocks are cached per size class (powers
// of two from 64 B, and 2 MiB multiples above 4 MiB) so steady-state runs allocate
// nothing from the system.
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "core/device_hooks.h"
#include "ds/tensor.h"

namespace ds {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kLargeThreshold = size_t{4} << 20;
constexpr size_t kLargeGranule = size_t{2} << 20;

size_t size_class(size_t n) {
  if (n <= kAlign) return kAlign;
  if (n >= kLargeThreshold) return (n + kLargeGranule - 1) / kLargeGranule * kLargeGranule;
  size_t c = kAlign;
  while (c < n) c <<= 1;
  return c;
}

class CpuPool {
 public:
  void* allocate(size_t nbytes) {
    const size_t cls = size_class(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.allocations;
    stats_.current_bytes += static_cast<int64_t>(cls);
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    auto it = free_.find(cls);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      ++stats_.pool_hits;
      return p;
    }
    void* p = std::aligned_alloc(kAlign, cls);
    if (!p) {
      stats_.current_bytes -= static_cast<int64_t>(cls);
      throw OutOfMemoryError(detail::cat("CPU allocation of ", nbytes, " bytes failed (",
                                         stats_.current_bytes, " bytes in use)"));
    }
    stats_.reserved_bytes += static_cast<int64_t>(cls);
    return p;
  }

  void release(void* p, size_t nbytes) {
    const size_t cls = size_class(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.current_bytes -= static_cast<int64_t>(cls);
    free_[cls].push_back(p);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [cls, blocks] : free_) {
      for (void* p : blocks) std::free(p);
      stats_.reserved_bytes -= static_cast<int64_t>(cls * blocks.size());
      blocks.clear();
    }
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_bytes = stats_.current_bytes;
  }

 private:
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  MemoryStats stats_;
};

// Never destroyed: storages released during static destruction still find it.
CpuPool& pool() {
  static CpuPool* p = new CpuPool;
  return *p;
}

DeviceHooks*& hooks_slot(DeviceKind kind) {
  static DeviceHooks* cuda = nullptr;  // leaked like the pool: used during static destruction
  DS_CHECK(kind == DeviceKind::CUDA, ValueError, "device hooks: only CUDA registers hooks");
  return cuda;
}

}  // namespace

void register_device_hooks(DeviceKind kind, DeviceHooks hooks) {
  hooks_slot(kind) = new DeviceHooks(std::move(hooks));
}

const DeviceHooks* device_hooks(DeviceKind kind) {
  return kind == DeviceKind::CPU ? nullptr : hooks_slot(kind);
}

std::shared_ptr<Storage> allocate_storage(size_t nbytes, Device device) {
  if (device.kind != DeviceKind::CPU) {
    const DeviceHooks* hooks = device_hooks(device.kind);
    DS_CHECK(hooks, UnavailableError, "allocate_storage: device ", device.str(),
             " has no allocator in this build (built without CUDA)");
    return hooks->allocate(nbytes, device);
  }
  auto s = std::make_shared<Storage>();
  s->nbytes = nbytes;
  s->device = device;
  s->data = pool().allocate(nbytes);
  s->deleter = [nbytes](void* p) { pool().release(p, nbytes); };
  return s;
}

MemoryStats memory_stats() { return pool().stats(); }
void reset_peak_memory() { pool().reset_peak(); }
void empty_cache() { pool().empty_cache(); }

}  // namespace ds
