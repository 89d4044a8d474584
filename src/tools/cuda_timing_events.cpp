// The CUDA-event device timer: an event recorded on the op's stream before and
// after its launches. Recording an event is asynchronous, so the hot path never
// waits; collect() synchronizes once per device, records one anchor event, and
// places every event on the profiler's clock by its distance to that anchor.
#include "tools/cuda_timing.h"

#include <cstdlib>
#include <cstring>

#include "ds/cuda.h"
#include "ds/error.h"

#ifdef DS_HAVE_CUDA
#include <map>
#include <mutex>
#include <vector>

#include "backends/cuda/cuda_check.h"
#endif

namespace ds {

#ifdef DS_HAVE_CUDA
namespace {

// Creates events on `device` without leaving the caller's thread bound to it.
cudaEvent_t new_event(int device) {
  int current = 0;
  DS_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) DS_CUDA_CHECK(cudaSetDevice(device));
  cudaEvent_t e = nullptr;
  const cudaError_t status = cudaEventCreate(&e);
  if (current != device) cudaSetDevice(current);
  DS_CUDA_CHECK(status);
  return e;
}

// Free events per device, shared by every timer (each Profiler makes its own):
// creating an event costs microseconds, recording a pooled one much less.
struct EventPool {
  static constexpr size_t kKept = 1 << 14;  // per device between recordings
  std::mutex mu;
  std::map<int, std::vector<cudaEvent_t>> free;

  cudaEvent_t take(int device) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto& f = free[device];
      if (!f.empty()) {
        cudaEvent_t e = f.back();
        f.pop_back();
        return e;
      }
    }
    return new_event(device);
  }
  // Returns events; a huge recording leaves no huge pool behind.
  void give(int device, const std::vector<cudaEvent_t>& events) {
    std::lock_guard<std::mutex> lock(mu);
    auto& f = free[device];
    for (cudaEvent_t e : events) {
      if (f.size() < kKept) f.push_back(e);
      else cudaEventDestroy(e);
    }
  }
};
EventPool& event_pool() {
  static EventPool* p = new EventPool;  // leaked: events outlive every timer
  return *p;
}

class CudaEventTimer final : public DeviceTimer {
 public:
  std::string kind() const override { return "cuda-events"; }

  void start(const ProfileClock& clock) override {
    std::lock_guard<std::mutex> lock(mu_);
    clock_ = clock;
  }

  int64_t begin_op(int device) override {
    cudaStream_t stream = cuda::stream_of(device);
    std::lock_guard<std::mutex> lock(mu_);
    cudaEvent_t e = take(device);
    DS_CUDA_CHECK(cudaEventRecord(e, stream));
    spans_.push_back({device, stream_number(device, stream), stream, e, nullptr});
    return static_cast<int64_t>(spans_.size()) - 1;
  }

  // Runs in a destructor: a failure loses this op's time and is reported by
  // collect(), never thrown here.
  void end_op(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    Span& s = spans_[static_cast<size_t>(id)];
    try {
      cudaEvent_t e = take(s.device);
      const cudaError_t status = cudaEventRecord(e, s.handle);
      if (status == cudaSuccess) s.end = e;
      else {
        event_pool().give(s.device, {e});
        failure_ = std::string("cudaEventRecord: ") + cudaGetErrorName(status);
      }
    } catch (const std::exception& ex) {
      failure_ = ex.what();
    }
  }

  std::vector<DeviceActivity> collect() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<DeviceActivity> out;
    // One anchor per device, recorded after all of its work: host time of the
    // anchor minus an event's distance to it is the event's host time.
    std::map<int, std::pair<cudaEvent_t, int64_t>> anchor;
    std::string error = std::move(failure_);
    failure_.clear();
    try {
      for (const Span& s : spans_) {
        if (anchor.count(s.device)) continue;
        for (const auto& [key, number] : streams_)
          if (key.first == s.device) DS_CUDA_CHECK(cudaStreamSynchronize(key.second));
        cudaEvent_t a = take(s.device);
        DS_CUDA_CHECK(cudaEventRecord(a, cuda::stream_of(s.device)));
        DS_CUDA_CHECK(cudaEventSynchronize(a));
        anchor[s.device] = {a, clock_()};
      }
      for (const Span& s : spans_) {
        if (!s.end) continue;
        const auto& [a, host] = anchor[s.device];
        float before_anchor = 0, length = 0;
        DS_CUDA_CHECK(cudaEventElapsedTime(&before_anchor, s.start, a));
        DS_CUDA_CHECK(cudaEventElapsedTime(&length, s.start, s.end));
        DeviceActivity act;
        act.device = s.device;
        act.stream = s.stream;
        act.start_ns = host - static_cast<int64_t>(static_cast<double>(before_anchor) * 1e6);
        act.end_ns = act.start_ns + static_cast<int64_t>(static_cast<double>(length) * 1e6);
        act.op = static_cast<int64_t>(&s - spans_.data());
        out.push_back(act);
      }
    } catch (const std::exception& ex) {
      error = ex.what();
      out.clear();
    }
    std::map<int, std::vector<cudaEvent_t>> used;
    for (const Span& s : spans_) {
      used[s.device].push_back(s.start);
      if (s.end) used[s.device].push_back(s.end);
    }
    for (const auto& [device, a] : anchor) used[device].push_back(a.first);
    for (const auto& [device, events] : used) event_pool().give(device, events);
    spans_.clear();
    if (!error.empty()) throw Error("CUDA event timing: " + error);
    return out;
  }

 private:
  struct Span {
    int device;
    int64_t stream;
    cudaStream_t handle;
    cudaEvent_t start;
    cudaEvent_t end;  // null until end_op
  };

  cudaEvent_t take(int device) { return event_pool().take(device); }

  // Streams are numbered per device in order of first use.
  int64_t stream_number(int device, cudaStream_t stream) {
    const auto key = std::make_pair(device, stream);
    auto it = streams_.find(key);
    if (it != streams_.end()) return it->second;
    int64_t n = 0;
    for (const auto& [k, v] : streams_) n += k.first == device;
    return streams_[key] = n;
  }

  std::mutex mu_;
  ProfileClock clock_;
  std::vector<Span> spans_;  // indexed by begin_op's id
  std::map<std::pair<int, cudaStream_t>, int64_t> streams_;
  std::string failure_;  // an end_op that failed since the last collect()
};

}  // namespace

std::shared_ptr<DeviceTimer> make_cuda_event_timer() {
  DS_CHECK(cuda::device_count() > 0, UnavailableError,
           "CUDA event timer: no CUDA device (", cuda::unavailable_reason(), ")");
  return std::make_shared<CudaEventTimer>();
}

std::shared_ptr<DeviceTimer> default_device_timer() {
  if (cuda::device_count() == 0) return nullptr;
  const char* env = std::getenv("DS_PROFILE_CUPTI");
  if (env && std::strcmp(env, "0") == 0)
    return make_cuda_timer(nullptr, "DS_PROFILE_CUPTI=0: GPU times from CUDA events");
  std::string why;
  auto api = load_cupti(why);
  const std::string warning = api ? "" : why + "; GPU times from CUDA events";
  return make_cuda_timer(std::move(api), warning);
}

#else  // a build without CUDA: no device ever runs an op

std::shared_ptr<DeviceTimer> make_cuda_event_timer() {
  throw UnavailableError("CUDA event timer: this build has no CUDA backend");
}

std::shared_ptr<DeviceTimer> default_device_timer() { return nullptr; }

#endif

}  // namespace ds
