// Copies between host and device memory. Host memory of a tensor is pageable, so
// transfers go through two pinned staging buffers per device in turn: the CPU
// fills (or drains) one while the DMA engine moves the other.
#include <cstring>
#include <mutex>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_allocator.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

constexpr size_t kChunk = size_t{8} << 20;

struct Staging {
  std::mutex mu;
  void* buffer[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};  // the last copy that used buffer[i]
};

Staging& staging(int device) {
  static std::mutex mu;
  static auto* all = new std::vector<Staging*>;  // leaked: pinned memory lives to exit
  std::lock_guard<std::mutex> lock(mu);
  if (all->size() <= static_cast<size_t>(device)) all->resize(device + 1, nullptr);
  if (!(*all)[device]) {
    set_device(device);
    auto* s = new Staging;
    for (int i = 0; i < 2; ++i) {
      DS_CUDA_CHECK(cudaHostAlloc(&s->buffer[i], kChunk, cudaHostAllocPortable));
      DS_CUDA_CHECK(cudaEventCreateWithFlags(&s->done[i], cudaEventDisableTiming));
    }
    (*all)[device] = s;
  }
  return *(*all)[device];
}

// Returns once the copies are queued; the staging events order later reuse.
void host_to_device(void* dst, const void* src, size_t n, int device) {
  Staging& s = staging(device);
  std::lock_guard<std::mutex> lock(s.mu);
  set_device(device);
  const cudaStream_t stream = stream_of(device);
  for (size_t off = 0, i = 0; off < n; off += kChunk, i ^= 1) {
    const size_t len = std::min(kChunk, n - off);
    DS_CUDA_CHECK(cudaEventSynchronize(s.done[i]));
    std::memcpy(s.buffer[i], static_cast<const char*>(src) + off, len);
    DS_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, s.buffer[i], len,
                                  cudaMemcpyHostToDevice, stream));
    DS_CUDA_CHECK(cudaEventRecord(s.done[i], stream));
  }
}

// Returns when `dst` holds the data.
void device_to_host(void* dst, const void* src, size_t n, int device) {
  Staging& s = staging(device);
  std::lock_guard<std::mutex> lock(s.mu);
  set_device(device);
  const cudaStream_t stream = stream_of(device);
  size_t pending_off = 0, pending_len = 0;
  int pending = -1;
  auto drain = [&] {
    DS_CUDA_CHECK(cudaEventSynchronize(s.done[pending]));
    std::memcpy(static_cast<char*>(dst) + pending_off, s.buffer[pending], pending_len);
  };
  for (size_t off = 0, i = 0; off < n; off += kChunk, i ^= 1) {
    const size_t len = std::min(kChunk, n - off);
    DS_CUDA_CHECK(cudaEventSynchronize(s.done[i]));  // a host-to-device copy may still read it
    DS_CUDA_CHECK(cudaMemcpyAsync(s.buffer[i], static_cast<const char*>(src) + off, len,
                                  cudaMemcpyDeviceToHost, stream));
    DS_CUDA_CHECK(cudaEventRecord(s.done[i], stream));
    if (pending >= 0) drain();
    pending = static_cast<int>(i);
    pending_off = off;
    pending_len = len;
  }
  if (pending >= 0) drain();
}

}  // namespace

void copy_tensor(const Tensor& src, Tensor& dst) {
  DS_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype(), ValueError,
           "CUDA copy: source ", shape_str(src.shape()), " ", dtype_name(src.dtype()),
           " does not match destination ", shape_str(dst.shape()), " ", dtype_name(dst.dtype()));
  DS_CHECK(src.is_contiguous() && dst.is_contiguous(), ValueError,
           "CUDA copy: device tensors must be contiguous (source on ", src.device().str(),
           ", destination on ", dst.device().str(), "); call contiguous() on the device first");
  const size_t n = src.nbytes();
  if (n == 0) return;
  const Device from = src.device(), to = dst.device();
  if (from.kind == DeviceKind::CPU) {
    host_to_device(dst.raw_data(), src.raw_data(), n, to.index);
  } else if (to.kind == DeviceKind::CPU) {
    device_to_host(dst.raw_data(), src.raw_data(), n, from.index);
  } else if (from.index == to.index) {
    set_device(to.index);
    DS_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), n, cudaMemcpyDeviceToDevice,
                                  stream_of(to.index)));
  } else {
    // Order after the source's pending writers, then copy on the destination's stream.
    synchronize(from.index);
    set_device(to.index);
    DS_CUDA_CHECK(cudaMemcpyPeerAsync(dst.raw_data(), to.index, src.raw_data(), from.index, n,
                                      stream_of(to.index)));
  }
}

}  // namespace ds::cuda
