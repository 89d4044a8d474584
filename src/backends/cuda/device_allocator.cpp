// The stream-ordered caching allocator. Every ds kernel and copy on a device runs
// on that device's one default stream, so a block freed there may be handed out
// again at once: later work on the same stream is ordered after the old readers.
// Sizes round up to 512 B (2 MiB multiples above 1 MiB) and cached blocks are
// kept per exact rounded size, so steady-state runs never call cudaMalloc.
#include <cstdlib>
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_allocator.h"
#include "core/device_hooks.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeThreshold = size_t{1} << 20;
constexpr size_t kLargeGranule = size_t{2} << 20;

size_t rounded(size_t n) {
  const size_t g = n >= kLargeThreshold ? kLargeGranule : kSmallGranule;
  return std::max<size_t>(g, (n + g - 1) / g * g);
}

int64_t default_budget(int device) {
  if (const char* env = std::getenv("DS_CUDA_MEMORY_BUDGET")) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    DS_CHECK(end != env && *end == '\0' && v > 0, ValueError,
             "DS_CUDA_MEMORY_BUDGET must be a positive number of bytes, got '", env, "'");
    return v;
  }
  return device_info(device).total_memory;
}

std::string mib(int64_t bytes) {
  return detail::cat(bytes, " bytes (", static_cast<double>(bytes) / (1 << 20), " MiB)");
}

class DevicePool {
 public:
  explicit DevicePool(int device) : device_(device) {}

  void* allocate(size_t nbytes) {
    const size_t size = rounded(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.budget == 0) stats_.budget = default_budget(device_);
    ++stats_.allocations;
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      ++stats_.cache_hits;
      note_allocated(size);
      if (captured_) captured_->insert({p, size});
      return p;
    }
    // Cached blocks go back to the driver to make room, except during a graph
    // capture: the captured launches may already point into them.
    if (stats_.reserved + static_cast<int64_t>(size) > stats_.budget && !captured_)
      release_cached_locked();
    if (stats_.reserved + static_cast<int64_t>(size) > stats_.budget)
      throw_oom(nbytes, "the allocation would exceed the budget");
    set_device(device_);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation && !captured_) {
      cudaGetLastError();
      release_cached_locked();  // cached blocks may be what the driver lacks
      e = cudaMalloc(&p, size);
    }
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // leave no error behind: the process keeps working
      throw_oom(nbytes, "cudaMalloc: cudaErrorMemoryAllocation");
    }
    DS_CUDA_CHECK(e);
    stats_.reserved += static_cast<int64_t>(size);
    note_allocated(size);
    if (captured_) captured_->insert({p, size});
    return p;
  }

  void release(void* p, size_t nbytes) {
    const size_t size = rounded(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.allocated -= static_cast<int64_t>(size);
    free_[size].push_back(p);
  }

  // Blocks handed out during a capture may be released and reused within it
  // (replays run in the same stream order); at the end, those back in the cache
  // are taken out for the graph. Live ones belong to tensors the graph keeps.
  void begin_hold() {
    std::lock_guard<std::mutex> lock(mu_);
    DS_CHECK(!captured_, Error, "CUDA graph capture on cuda:", device_, " is already under way");
    captured_ = std::make_unique<std::set<std::pair<void*, size_t>>>();
  }

  std::shared_ptr<void> end_hold() {
    std::lock_guard<std::mutex> lock(mu_);
    auto* blocks = new std::vector<std::pair<void*, size_t>>;
    for (const auto& [p, size] : *captured_) {
      auto& cached = free_[size];
      const auto at = std::find(cached.begin(), cached.end(), p);
      if (at == cached.end()) continue;
      cached.erase(at);
      stats_.allocated += static_cast<int64_t>(size);  // the graph's now
      blocks->emplace_back(p, size);
    }
    captured_.reset();
    return std::shared_ptr<void>(blocks, [this](void* b) {
      std::unique_ptr<std::vector<std::pair<void*, size_t>>> list(
          static_cast<std::vector<std::pair<void*, size_t>>*>(b));
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [p, size] : *list) {
        stats_.allocated -= static_cast<int64_t>(size);
        free_[size].push_back(p);
      }
    });
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked();
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.budget == 0) stats_.budget = default_budget(device_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak = stats_.allocated;
  }
  void set_budget(int64_t bytes) {
    DS_CHECK(bytes >= 0, ValueError, "set_memory_budget: bytes must be >= 0, got ", bytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.budget = bytes > 0 ? bytes : default_budget(device_);
  }

 private:
  void note_allocated(size_t size) {
    stats_.allocated += static_cast<int64_t>(size);
    stats_.peak = std::max(stats_.peak, stats_.allocated);
  }

  void release_cached_locked() {
    set_device(device_);
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) DS_CUDA_CHECK(cudaFree(p));  // cudaFree waits for pending work
      stats_.reserved -= static_cast<int64_t>(size * blocks.size());
      blocks.clear();
    }
  }

  [[noreturn]] void throw_oom(size_t nbytes, const char* why) {
    throw OutOfMemoryError(detail::cat(
        "CUDA out of memory on cuda:", device_, ": allocating ", mib(static_cast<int64_t>(nbytes)),
        " failed (", why, "); in use ", mib(stats_.allocated), ", reserved ", mib(stats_.reserved),
        ", budget ", mib(stats_.budget),
        ". Free tensors or lower the batch size; ds.cuda.set_memory_budget() sets the budget"));
  }

  int device_;
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  std::unique_ptr<std::set<std::pair<void*, size_t>>> captured_;  // handed out during a capture
  AllocatorStats stats_;
};

DevicePool& pool(int device) {
  static std::mutex mu;
  static auto* pools = new std::vector<DevicePool*>;  // leaked: storages die during exit
  std::lock_guard<std::mutex> lock(mu);
  DS_CHECK(device >= 0 && device < device_count(), UnavailableError, "CUDA device ", device,
           " does not exist (", device_count(), " visible)");
  if (pools->size() <= static_cast<size_t>(device)) pools->resize(device + 1, nullptr);
  if (!(*pools)[device]) (*pools)[device] = new DevicePool(device);
  return *(*pools)[device];
}

[[maybe_unused]] const bool hooks_registered = [] {
  register_device_hooks(DeviceKind::CUDA, {device_storage, copy_tensor, contiguous_on_device});
  return true;
}();

}  // namespace

std::shared_ptr<Storage> device_storage(size_t nbytes, Device device) {
  auto s = std::make_shared<Storage>();
  s->nbytes = nbytes;
  s->device = device;
  s->data = pool(device.index).allocate(nbytes);
  const int index = device.index;
  s->deleter = [index, nbytes](void* p) { pool(index).release(p, nbytes); };
  return s;
}

std::shared_ptr<void> allocate(size_t nbytes, int device) {
  void* p = pool(device).allocate(nbytes);
  return std::shared_ptr<void>(p, [device, nbytes](void* q) { pool(device).release(q, nbytes); });
}

void begin_graph_hold(int device) { pool(device).begin_hold(); }
std::shared_ptr<void> end_graph_hold(int device) { return pool(device).end_hold(); }

AllocatorStats memory_stats(int device) { return pool(device).stats(); }
void reset_peak_memory(int device) { pool(device).reset_peak(); }
void set_memory_budget(int64_t bytes, int device) { pool(device).set_budget(bytes); }
void empty_cache() {
  for (int d = 0; d < device_count(); ++d) pool(d).empty_cache();
}

}  // namespace ds::cuda
