// The CUDA runtime API of a build without the CUDA toolkit: no devices, and every
// device operation says why.
#include "ds/cuda.h"
#include "ds/error.h"

namespace ds::cuda {
namespace {
[[noreturn]] void unavailable(const char* what) {
  throw UnavailableError(std::string("ds::cuda::") + what +
                         ": built without CUDA (configure with the CUDA toolkit installed and "
                         "DS_WITH_CUDA=ON)");
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
std::string unavailable_reason() { return "built without CUDA"; }
std::string DeviceInfo::str() const { return name; }
DeviceInfo device_info(int) { unavailable("device_info"); }
std::vector<DeviceInfo> devices() { return {}; }

Stream::Stream(int device) : device_(device) { unavailable("Stream"); }
Stream::~Stream() = default;
void Stream::synchronize() const { unavailable("Stream.synchronize"); }
Stream& Stream::default_for(int) { unavailable("Stream.default_for"); }
Event::Event(int device) : device_(device) { unavailable("Event"); }
Event::~Event() = default;
void Event::record(const Stream&) { unavailable("Event.record"); }
void Event::synchronize() const { unavailable("Event.synchronize"); }
float Event::elapsed_ms(const Event&) const { unavailable("Event.elapsed_ms"); }
void synchronize(int) { unavailable("synchronize"); }

AllocatorStats memory_stats(int) { unavailable("memory_stats"); }
void reset_peak_memory(int) { unavailable("reset_peak_memory"); }
void empty_cache() {}  // nothing is cached without a device
void set_memory_budget(int64_t, int) { unavailable("set_memory_budget"); }
std::shared_ptr<void> allocate(size_t, int) { unavailable("allocate"); }

KernelCacheStats kernel_cache_stats() { return {}; }
void clear_kernel_memory_cache() {}
Tensor fused_linear(const Tensor&, const Tensor&, const Tensor&, Activation) {
  unavailable("fused_linear");
}
void set_allow_tf32(bool) { unavailable("set_allow_tf32"); }
bool allow_tf32() { return false; }

}  // namespace ds::cuda
