// Devices, streams, events and error reporting for the CUDA backend.
#include <cstdio>
#include <mutex>
#include <sstream>

#include "backends/cuda/cuda_check.h"
#include "ds/cuda.h"

namespace ds::cuda {

namespace {
std::string where(const char* call, const char* file, int line) {
  std::string f(file);
  const auto cut = f.rfind("src/");
  return detail::cat(call, " (", cut == std::string::npos ? f : f.substr(cut), ":", line, ")");
}

// cudaGetDeviceCount once per process: without a driver it fails, and that is "no GPU".
struct Discovery {
  int count = 0;
  std::string reason;
};
const Discovery& discovery() {
  static const Discovery d = [] {
    Discovery r;
    const cudaError_t e = cudaGetDeviceCount(&r.count);
    if (e != cudaSuccess) {
      r.count = 0;
      r.reason = detail::cat("cudaGetDeviceCount failed: ", cudaGetErrorName(e), " (",
                             cudaGetErrorString(e), ")");
      cudaGetLastError();  // not sticky: clear it so later checks do not see it
    } else if (r.count == 0) {
      r.reason = "cudaGetDeviceCount found no CUDA device";
    }
    return r;
  }();
  return d;
}
}  // namespace

void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line) {
  cudaGetLastError();
  const std::string msg = detail::cat(where(call, file, line), " failed: ", cudaGetErrorName(code),
                                      " (", cudaGetErrorString(code), ")");
  if (code == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
  if (code == cudaErrorNoDevice || code == cudaErrorInsufficientDriver) throw UnavailableError(msg);
  throw Error(msg);
}

void throw_cublas_error(cublasStatus_t code, const char* call, const char* file, int line) {
  const std::string msg = detail::cat(where(call, file, line), " failed: ",
                                      cublasLtGetStatusName(code), " (",
                                      cublasLtGetStatusString(code), ")");
  if (code == CUBLAS_STATUS_ALLOC_FAILED) throw OutOfMemoryError(msg);
  throw Error(msg);
}

void throw_nvrtc_error(nvrtcResult code, const char* call, const char* file, int line) {
  throw Error(detail::cat(where(call, file, line), " failed: ", nvrtcGetErrorString(code)));
}

bool built_with_cuda() { return true; }
int device_count() { return discovery().count; }
std::string unavailable_reason() { return discovery().reason; }

void set_device(int device) {
  const int n = device_count();
  DS_CHECK(device >= 0 && device < n, UnavailableError, "CUDA device ", device,
           " does not exist (", n, " visible", n ? "" : (": " + unavailable_reason()).c_str(), ")");
  DS_CUDA_CHECK(cudaSetDevice(device));
}

std::string DeviceInfo::str() const {
  std::ostringstream os;
  os.precision(1);
  os << std::fixed << name << " (cc " << major << "." << minor << ", " << sm_count << " SMs, "
     << static_cast<double>(total_memory) / (1 << 30) << " GiB)";
  return os.str();
}

DeviceInfo device_info(int index) {
  set_device(index);
  cudaDeviceProp p{};
  DS_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
  DeviceInfo d;
  d.index = index;
  d.name = p.name;
  d.total_memory = static_cast<int64_t>(p.totalGlobalMem);
  d.major = p.major;
  d.minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  return d;
}

std::vector<DeviceInfo> devices() {
  std::vector<DeviceInfo> v;
  for (int i = 0; i < device_count(); ++i) v.push_back(device_info(i));
  return v;
}

Stream::Stream(int device) : device_(device) {
  set_device(device);
  cudaStream_t s = nullptr;
  DS_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  handle_ = s;
}

Stream::~Stream() {
  // Destructors do not throw: a failure here is reported, not raised.
  const cudaError_t e = cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
  if (e != cudaSuccess) std::fprintf(stderr, "ds: cudaStreamDestroy: %s\n", cudaGetErrorName(e));
}

void Stream::synchronize() const {
  DS_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)));
}

Stream& Stream::default_for(int device) {
  static std::mutex mu;
  static std::vector<Stream*>* streams = new std::vector<Stream*>;  // leaked: live to exit
  std::lock_guard<std::mutex> lock(mu);
  if (device >= 0 && static_cast<size_t>(device) < streams->size() && (*streams)[device])
    return *(*streams)[device];
  set_device(device);  // validates the index
  if (streams->size() <= static_cast<size_t>(device)) streams->resize(device + 1, nullptr);
  (*streams)[device] = new Stream(device);
  return *(*streams)[device];
}

cudaStream_t stream_of(int device) {
  return static_cast<cudaStream_t>(Stream::default_for(device).handle());
}

Event::Event(int device) : device_(device) {
  set_device(device);
  cudaEvent_t e = nullptr;
  DS_CUDA_CHECK(cudaEventCreate(&e));
  handle_ = e;
}

Event::~Event() {
  const cudaError_t e = cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
  if (e != cudaSuccess) std::fprintf(stderr, "ds: cudaEventDestroy: %s\n", cudaGetErrorName(e));
}

void Event::record(const Stream& stream) {
  DS_CHECK(stream.device() == device_, ValueError, "Event.record: the event is on cuda:", device_,
           ", the stream on cuda:", stream.device());
  DS_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(handle_),
                                static_cast<cudaStream_t>(stream.handle())));
}

void Event::synchronize() const {
  DS_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)));
}

float Event::elapsed_ms(const Event& start) const {
  float ms = 0;
  DS_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.handle_),
                                     static_cast<cudaEvent_t>(handle_)));
  return ms;
}

void synchronize(int device) {
  set_device(device);
  DS_CUDA_CHECK(cudaStreamSynchronize(stream_of(device)));
}

}  // namespace ds::cuda
