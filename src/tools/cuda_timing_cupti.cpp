// The CUPTI device timer. Each op pushes an external correlation id around its
// launches; CUPTI then reports every kernel, copy and memset with its device
// times and the id of the op that launched it. CUPTI is claimed at the first op
// of a recording and released when the recording is collected, so it costs
// nothing outside recordings. When it cannot be claimed (not installed, or held
// by another tool such as Nsight), the timer falls back to CUDA events and says
// why in warning().
#include <dlfcn.h>

#include <atomic>
#include <iterator>
#include <mutex>

#include "ds/cuda.h"
#include "ds/error.h"
#include "tools/cuda_timing.h"

#ifdef DS_HAVE_CUDA
#include <cupti.h>

#include <unordered_map>
#include <vector>

#include "backends/cuda/cuda_check.h"
#endif

namespace ds {

#ifdef DS_HAVE_CUDA
namespace {

constexpr int kOpCorrelation = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;
// External correlation records are written only next to API records, so the
// runtime and driver API kinds are on too (their records are skipped): NVRTC
// kernels launch through the driver API, cuBLASLt's through the runtime.
const int kActivityKinds[] = {CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
                              CUPTI_ACTIVITY_KIND_DRIVER,
                              CUPTI_ACTIVITY_KIND_RUNTIME,
                              CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
                              CUPTI_ACTIVITY_KIND_MEMCPY,
                              CUPTI_ACTIVITY_KIND_MEMSET};

std::string result_name(const CuptiApi& api, int result) {
  const char* s = nullptr;
  if (api.get_result_string && api.get_result_string(result, &s) == 0 && s) return s;
  return "CUPTI error " + std::to_string(result);
}

// Activity buffers, handed to CUPTI and returned filled. CUPTI's buffer
// callbacks take no user data, so the completed buffers are process-wide.
struct Buffers {
  std::mutex mu;
  std::vector<std::pair<uint8_t*, size_t>> completed;  // buffer, valid bytes
};
Buffers& buffers() {
  static Buffers* b = new Buffers;  // CUPTI may call back during exit
  return *b;
}
constexpr size_t kBufferBytes = 4 << 20;

void buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void buffer_completed(void*, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  Buffers& b = buffers();
  std::lock_guard<std::mutex> lock(b.mu);
  b.completed.emplace_back(buffer, valid);
}

void ignore_callback(void*, int, uint32_t, const void*) {}

std::string memcpy_name(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "Memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "Memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "Memcpy DtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "Memcpy HtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "Memcpy PtoP";
    default: return "Memcpy";
  }
}

// CUPTI when it can be claimed, else CUDA events.
class CudaTimer final : public DeviceTimer {
 public:
  CudaTimer(std::shared_ptr<const CuptiApi> api, std::string load_warning)
      : api_(std::move(api)), load_warning_(std::move(load_warning)), use_cupti_(api_ != nullptr) {}

  ~CudaTimer() override {
    if (claimed_) release_cupti(*api_, subscriber_);
  }

  std::string kind() const override { return use_cupti_ ? "cupti" : "cuda-events"; }
  std::string warning() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return warning_;
  }

  void start(const ProfileClock& clock) override {
    std::lock_guard<std::mutex> lock(mu_);
    clock_ = clock;
    if (events_) events_->start(clock);
  }

  int64_t begin_op(int device) override {
    if (!claimed_.load(std::memory_order_acquire)) claim();
    if (!use_cupti_) return events_->begin_op(device);
    if (device < 64) devices_used_.fetch_or(uint64_t{1} << device, std::memory_order_relaxed);
    const int64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
    api_->push_external_correlation_id(kOpCorrelation, static_cast<uint64_t>(id));
    return id;
  }

  void end_op(int64_t id) override {
    if (!use_cupti_) return events_->end_op(id);
    uint64_t last = 0;
    api_->pop_external_correlation_id(kOpCorrelation, &last);
  }

  std::vector<DeviceActivity> collect() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!claimed_) return {};
    claimed_.store(false, std::memory_order_release);
    if (!use_cupti_) return events_->collect();
    // Records are complete only once the work is done.
    const uint64_t used = devices_used_.exchange(0);
    int current = 0;
    DS_CUDA_CHECK(cudaGetDevice(&current));
    for (int d = 0; d < 64; ++d) {
      if (!(used >> d & 1)) continue;
      DS_CUDA_CHECK(cudaSetDevice(d));
      DS_CUDA_CHECK(cudaDeviceSynchronize());
    }
    DS_CUDA_CHECK(cudaSetDevice(current));
    const int flushed = api_->flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    release_cupti(*api_, subscriber_);
    std::vector<std::pair<uint8_t*, size_t>> done;
    {
      Buffers& b = buffers();
      std::lock_guard<std::mutex> lock(b.mu);
      done.swap(b.completed);
    }
    std::vector<DeviceActivity> out = parse(done);
    for (auto& [buffer, size] : done) std::free(buffer);
    DS_CHECK(flushed == 0, Error, "cuptiActivityFlushAll failed: ", result_name(*api_, flushed));
    return out;
  }

 private:
  // Claims CUPTI for this recording, or falls back to CUDA events for good.
  void claim() {
    std::lock_guard<std::mutex> lock(mu_);
    if (claimed_) return;
    if (use_cupti_) {
      const std::string refused = claim_cupti(*api_, &subscriber_);
      if (refused.empty()) {
        uint64_t ts = 0;
        api_->get_timestamp(&ts);
        offset_ = clock_() - static_cast<int64_t>(ts);
      } else {
        use_cupti_ = false;
        warning_ = refused;
      }
    } else {
      warning_ = load_warning_;  // said once an op has been timed, not for CPU-only profiles
    }
    if (!use_cupti_ && !events_) {
      events_ = make_cuda_event_timer();
      events_->start(clock_);
    }
    claimed_.store(true, std::memory_order_release);
  }

  std::vector<DeviceActivity> parse(const std::vector<std::pair<uint8_t*, size_t>>& done) const {
    std::vector<DeviceActivity> out;
    std::vector<uint32_t> correlation;  // of each entry of `out`
    std::unordered_map<uint32_t, int64_t> op_of;  // CUPTI correlation id -> op id
    auto add = [&](std::string name, uint32_t device, uint32_t stream, uint64_t start,
                   uint64_t end, uint32_t corr) {
      DeviceActivity a;
      a.name = std::move(name);
      a.device = static_cast<int>(device);
      a.stream = stream;
      a.start_ns = static_cast<int64_t>(start) + offset_;
      a.end_ns = static_cast<int64_t>(end) + offset_;
      out.push_back(std::move(a));
      correlation.push_back(corr);
    };
    for (const auto& [buffer, size] : done) {
      void* record = nullptr;
      while (api_->get_next_record(buffer, size, &record) == 0) {
        const auto* r = static_cast<const CUpti_Activity*>(record);
        if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
          const auto* k = static_cast<const CUpti_ActivityKernel10*>(record);
          add(k->name ? k->name : "kernel", k->deviceId, k->streamId, k->start, k->end,
              k->correlationId);
        } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
          const auto* m = static_cast<const CUpti_ActivityMemcpy6*>(record);
          add(memcpy_name(m->copyKind), m->deviceId, m->streamId, m->start, m->end,
              m->correlationId);
        } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
          const auto* m = static_cast<const CUpti_ActivityMemset4*>(record);
          add("Memset", m->deviceId, m->streamId, m->start, m->end, m->correlationId);
        } else if (r->kind == CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION) {
          const auto* c = static_cast<const CUpti_ActivityExternalCorrelation*>(record);
          if (c->externalKind == kOpCorrelation)
            op_of[c->correlationId] = static_cast<int64_t>(c->externalId);
        }
      }
    }
    for (size_t i = 0; i < out.size(); ++i) {
      const auto it = op_of.find(correlation[i]);
      out[i].op = it == op_of.end() ? -1 : it->second;
    }
    return out;
  }

  std::shared_ptr<const CuptiApi> api_;
  const std::string load_warning_;  // why there is no `api_`
  mutable std::mutex mu_;
  std::string warning_;
  bool use_cupti_;  // changes only in claim(), before claimed_ is set
  std::atomic<bool> claimed_{false};
  void* subscriber_ = nullptr;
  ProfileClock clock_;
  int64_t offset_ = 0;  // profiler clock minus CUPTI's
  std::atomic<int64_t> next_id_{0};
  std::atomic<uint64_t> devices_used_{0};  // bit d: an op ran on device d this recording
  std::shared_ptr<DeviceTimer> events_;
};

template <typename Fn>
void bind(void* lib, const char* name, Fn& fn, std::string& missing) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (!fn) missing += (missing.empty() ? "" : ", ") + std::string(name);
}

}  // namespace

std::shared_ptr<const CuptiApi> load_cupti(std::string& why) {
  const char* names[] = {"libcupti.so", "libcupti.so.13", "libcupti.so.12",
                         "/usr/local/cuda/lib64/libcupti.so", "/usr/local/cuda/lib/libcupti.so",
                         "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so"};
  void* lib = nullptr;
  for (const char* n : names)
    if ((lib = dlopen(n, RTLD_NOW | RTLD_LOCAL))) break;
  if (!lib) {
    const char* err = dlerror();
    why = std::string("CUPTI not found (dlopen libcupti.so: ") + (err ? err : "?") + ")";
    return nullptr;
  }
  auto api = std::make_shared<CuptiApi>();
  std::string missing;
  bind(lib, "cuptiSubscribe", api->subscribe, missing);
  bind(lib, "cuptiUnsubscribe", api->unsubscribe, missing);
  bind(lib, "cuptiActivityEnable", api->activity_enable, missing);
  bind(lib, "cuptiActivityDisable", api->activity_disable, missing);
  bind(lib, "cuptiActivityRegisterCallbacks", api->register_callbacks, missing);
  bind(lib, "cuptiActivityFlushAll", api->flush_all, missing);
  bind(lib, "cuptiActivityGetNextRecord", api->get_next_record, missing);
  bind(lib, "cuptiActivityPushExternalCorrelationId", api->push_external_correlation_id, missing);
  bind(lib, "cuptiActivityPopExternalCorrelationId", api->pop_external_correlation_id, missing);
  bind(lib, "cuptiGetTimestamp", api->get_timestamp, missing);
  bind(lib, "cuptiGetResultString", api->get_result_string, missing);
  bind(lib, "cuptiGetVersion", api->get_version, missing);
  // The library stays loaded when refused: CUPTI does not support unloading.
  if (!missing.empty()) {
    why = "CUPTI lacks " + missing;
    return nullptr;
  }
  // Activity records are read with this build's struct layouts.
  uint32_t version = 0;
  if (api->get_version(&version) != 0 || version != CUPTI_API_VERSION) {
    why = "CUPTI API version " + std::to_string(version) + " differs from the build's " +
          std::to_string(CUPTI_API_VERSION);
    return nullptr;
  }
  return api;
}

std::string claim_cupti(const CuptiApi& api, void** subscriber) {
  auto refused = [&](const char* call, int r) {
    std::string why = std::string("CUPTI unavailable: ") + call + " failed with " +
                      result_name(api, r);
    if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)
      why += " (another profiling tool holds CUPTI)";
    return why + "; GPU times from CUDA events";
  };
  int r = api.subscribe(subscriber, ignore_callback, nullptr);
  if (r != 0) return refused("cuptiSubscribe", r);
  r = api.register_callbacks(buffer_requested, buffer_completed);
  if (r != 0) {
    api.unsubscribe(*subscriber);
    return refused("cuptiActivityRegisterCallbacks", r);
  }
  for (size_t i = 0; i < std::size(kActivityKinds); ++i) {
    r = api.activity_enable(kActivityKinds[i]);
    if (r != 0) {
      for (size_t j = 0; j < i; ++j) api.activity_disable(kActivityKinds[j]);
      api.unsubscribe(*subscriber);
      return refused("cuptiActivityEnable", r);
    }
  }
  return "";
}

void release_cupti(const CuptiApi& api, void* subscriber) {
  for (int kind : kActivityKinds) api.activity_disable(kind);
  api.unsubscribe(subscriber);
}

std::shared_ptr<DeviceTimer> make_cuda_timer(std::shared_ptr<const CuptiApi> api,
                                             std::string load_warning) {
  DS_CHECK(cuda::device_count() > 0, UnavailableError,
           "CUDA timer: no CUDA device (", cuda::unavailable_reason(), ")");
  return std::make_shared<CudaTimer>(std::move(api), std::move(load_warning));
}

#else  // a build without CUDA

std::shared_ptr<const CuptiApi> load_cupti(std::string& why) {
  why = "this build has no CUDA backend";
  return nullptr;
}
std::string claim_cupti(const CuptiApi&, void**) { return "this build has no CUDA backend"; }
void release_cupti(const CuptiApi&, void*) {}
std::shared_ptr<DeviceTimer> make_cuda_timer(std::shared_ptr<const CuptiApi>, std::string) {
  throw UnavailableError("CUDA timer: this build has no CUDA backend");
}

#endif

}  // namespace ds
