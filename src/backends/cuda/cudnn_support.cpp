#include "backends/cuda/cudnn_support.h"

#include <climits>
#include <map>

#include "backends/cuda/cuda_check.h"
#include "ds/error.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace ds::cuda {
namespace {

int int_dim(int64_t v, const char* what) {
  DS_CHECK(v >= 0 && v <= INT_MAX, ShapeError, "cuDNN: ", what, " ", v,
           " does not fit cuDNN's 32-bit dimensions");
  return static_cast<int>(v);
}

}  // namespace

void throw_cudnn_error(cudnnStatus_t code, const char* call, const char* file, int line) {
  const std::string msg = detail::cat(call, " (", file, ":", line, ") failed: ",
                                      cudnnGetErrorString(code), " (", static_cast<int>(code), ")");
  if (code == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED) throw OutOfMemoryError(msg);
  if (cudnn_category(code) == CUDNN_STATUS_NOT_SUPPORTED) throw UnavailableError(msg);
  throw Error(msg);
}

cudnnStatus_t cudnn_category(cudnnStatus_t code) {
  return static_cast<cudnnStatus_t>(static_cast<int>(code) / 1000 * 1000);
}

cudnnHandle_t cudnn_handle(int device) {
  // cuDNN handles must not be used by two threads at once: one per thread. They
  // live to thread exit (destroying them at process exit races the driver's teardown).
  thread_local std::map<int, cudnnHandle_t> handles;
  auto it = handles.find(device);
  if (it == handles.end()) {
    set_device(device);
    cudnnHandle_t h = nullptr;
    DS_CUDNN_CHECK(cudnnCreate(&h));
    it = handles.emplace(device, h).first;
  }
  DS_CUDNN_CHECK(cudnnSetStream(it->second, stream_of(device)));
  return it->second;
}

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::Float32: return CUDNN_DATA_FLOAT;
    case DType::Float64: return CUDNN_DATA_DOUBLE;
    case DType::Float16: return CUDNN_DATA_HALF;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    default:
      throw TypeError(detail::cat("cuDNN: no cuDNN type for dtype ", dtype_name(t)));
  }
}

cudnnDataType_t cudnn_compute_type(DType t) {
  return t == DType::Float64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
}

TensorDesc::TensorDesc(DType t, int64_t n, int64_t c, int64_t height, int64_t width,
                       cudnnTensorFormat_t format) {
  DS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&h));
  const cudnnStatus_t s =
      cudnnSetTensor4dDescriptor(h, format, cudnn_type(t), int_dim(n, "N"),
                                 int_dim(c, "C"), int_dim(height, "H"), int_dim(width, "W"));
  if (s != CUDNN_STATUS_SUCCESS) {
    cudnnDestroyTensorDescriptor(h);
    throw_cudnn_error(s, "cudnnSetTensor4dDescriptor", __FILE__, __LINE__);
  }
}
TensorDesc::~TensorDesc() { cudnnDestroyTensorDescriptor(h); }

FilterDesc::FilterDesc(DType t, int64_t o, int64_t c, int64_t kh, int64_t kw,
                       cudnnTensorFormat_t format) {
  DS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&h));
  const cudnnStatus_t s =
      cudnnSetFilter4dDescriptor(h, cudnn_type(t), format, int_dim(o, "O"),
                                 int_dim(c, "C"), int_dim(kh, "kH"), int_dim(kw, "kW"));
  if (s != CUDNN_STATUS_SUCCESS) {
    cudnnDestroyFilterDescriptor(h);
    throw_cudnn_error(s, "cudnnSetFilter4dDescriptor", __FILE__, __LINE__);
  }
}
FilterDesc::~FilterDesc() { cudnnDestroyFilterDescriptor(h); }

}  // namespace ds::cuda
