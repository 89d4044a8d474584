// The CUDA runtime as ds sees it: devices, streams, events, the caching device
// allocator and the NVRTC kernel cache. Everything here exists in every build; in
// a build without CUDA device_count() is 0 and the rest throws UnavailableError.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ds/tensor.h"

namespace ds::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int64_t total_memory = 0;  // bytes
  int major = 0, minor = 0;  // compute capability
  int sm_count = 0;
  std::string str() const;   // "NVIDIA H200 (cc 9.0, 132 SMs, 139.8 GiB)"
};

// True when this build has the CUDA backend.
bool built_with_cuda();
// Devices visible to this process; 0 without CUDA, without a driver or without a GPU.
int device_count();
// Why device_count() is 0 ("built without CUDA", "cudaGetDeviceCount: ..."), or "".
std::string unavailable_reason();
DeviceInfo device_info(int index);
std::vector<DeviceInfo> devices();

// A CUDA stream on one device (RAII; non-blocking with respect to the legacy stream).
class Stream {
 public:
  explicit Stream(int device = 0);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void synchronize() const;
  int device() const { return device_; }
  void* handle() const { return handle_; }  // cudaStream_t
  // The stream ds kernels and copies on `device` run on.
  static Stream& default_for(int device);

 private:
  int device_;
  void* handle_ = nullptr;
};

// A CUDA event with timing (RAII).
class Event {
 public:
  explicit Event(int device = 0);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(const Stream& stream);
  void synchronize() const;
  float elapsed_ms(const Event& start) const;  // from `start` to this event
  void* handle() const { return handle_; }     // cudaEvent_t

 private:
  int device_;
  void* handle_ = nullptr;
};

void synchronize(int device = 0);

// The stream-ordered caching allocator of one device.
struct AllocatorStats {
  int64_t allocated = 0;    // bytes in live blocks
  int64_t reserved = 0;     // bytes held from cudaMalloc (live + cached)
  int64_t peak = 0;         // high-water mark of `allocated`
  int64_t allocations = 0;  // allocate calls
  int64_t cache_hits = 0;   // allocations served from cached blocks
  int64_t budget = 0;       // the most `reserved` may reach (bytes)
};
AllocatorStats memory_stats(int device = 0);
void reset_peak_memory(int device = 0);
// Returns cached (unused) blocks of every device to the driver.
void empty_cache();
// Caps what the allocator reserves on `device`; 0 restores the default (the
// device's memory, or DS_CUDA_MEMORY_BUDGET bytes when set).
void set_memory_budget(int64_t bytes, int device = 0);

// Raw device memory from the caching allocator, released on the default stream.
std::shared_ptr<void> allocate(size_t nbytes, int device = 0);

// NVRTC kernels: compiled once per (source, architecture), then served from
// memory, then from DS_CACHE_DIR (else ~/.cache/deepseek).
struct KernelCacheStats {
  int64_t memory_hits = 0;
  int64_t disk_hits = 0;
  int64_t compiles = 0;
};
KernelCacheStats kernel_cache_stats();
// Forgets the in-memory modules (the disk cache stays), e.g. to test disk hits.
void clear_kernel_memory_cache();

// y = act(x @ weight^T + bias) in one cuBLASLt call, the activation fused as the
// matmul's epilogue. x [rows, in], weight [out, in], bias [out] (may be undefined),
// all on the same CUDA device with one float dtype. Gelu is cuBLASLt's tanh form.
enum class Activation { None, Relu, Gelu };
Tensor fused_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Activation act);

// float32 matmuls on Tensor Cores with TF32 inputs (10-bit mantissa); off by default.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace ds::cuda
