// Device timers for the profiler: CUPTI's Activity API (kernel names and
// per-kernel times, linked to ops by external correlation ids) with CUDA events
// as the fallback (one span per op on its stream).
//
// CUPTI is loaded with dlopen, so the build does not depend on it; the function
// table below lets tests put a fake in its place.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "ds/profile.h"

namespace ds {

// The CUPTI entry points the timer uses, with CUptiResult and the enums as
// int/uint32_t (the same ABI). 0 is CUPTI_SUCCESS.
struct CuptiApi {
  int (*subscribe)(void** subscriber, void (*callback)(void*, int, uint32_t, const void*),
                   void* userdata) = nullptr;
  int (*unsubscribe)(void* subscriber) = nullptr;
  int (*activity_enable)(int kind) = nullptr;
  int (*activity_disable)(int kind) = nullptr;
  int (*register_callbacks)(void (*request)(uint8_t**, size_t*, size_t*),
                            void (*complete)(void*, uint32_t, uint8_t*, size_t, size_t)) = nullptr;
  int (*flush_all)(uint32_t flag) = nullptr;
  int (*get_next_record)(uint8_t* buffer, size_t valid_size, void** record) = nullptr;
  int (*push_external_correlation_id)(int kind, uint64_t id) = nullptr;
  int (*pop_external_correlation_id)(int kind, uint64_t* last_id) = nullptr;
  int (*get_timestamp)(uint64_t* ts) = nullptr;
  int (*get_result_string)(int result, const char** str) = nullptr;
  int (*get_version)(uint32_t* version) = nullptr;
};

// libcupti from the toolkit, or null with the reason in `why`.
std::shared_ptr<const CuptiApi> load_cupti(std::string& why);

// Claims CUPTI for the profiler: subscribes (the check for another tool holding
// it) and enables the activity kinds. Returns "" on success, else the warning
// (CUPTI left as it was found).
std::string claim_cupti(const CuptiApi& api, void** subscriber);
// Undoes claim_cupti.
void release_cupti(const CuptiApi& api, void* subscriber);

// Times with CUDA events: a pair from a pool around each op on its device's
// stream; resolved at collect() against one anchor event. Needs a GPU.
std::shared_ptr<DeviceTimer> make_cuda_event_timer();
// CUPTI when `api` can be claimed at the first op of a recording, else CUDA
// events, with the reason as warning().
std::shared_ptr<DeviceTimer> make_cuda_timer(std::shared_ptr<const CuptiApi> api,
                                             std::string load_warning);

// The profiler's default: make_cuda_timer(load_cupti(...)) when a GPU is
// visible (DS_PROFILE_CUPTI=0: CUDA events only), else null.
std::shared_ptr<DeviceTimer> default_device_timer();

}  // namespace ds
