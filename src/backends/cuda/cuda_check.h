// Status checks for the CUDA runtime, cuBLASLt and NVRTC: a failed call throws a
// ds exception naming the call, the code and where it was made.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nvrtc.h>

#include <string>

#include "ds/error.h"

namespace ds::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t code, const char* call, const char* file,
                                     int line);
[[noreturn]] void throw_nvrtc_error(nvrtcResult code, const char* call, const char* file, int line);

// Binds the calling thread to `device` (cudaSetDevice, checked).
void set_device(int device);
// The cudaStream_t of Stream::default_for(device).
cudaStream_t stream_of(int device);

}  // namespace ds::cuda

#define DS_CUDA_CHECK(call)                                                          \
  do {                                                                               \
    const cudaError_t ds_cuda_status_ = (call);                                      \
    if (ds_cuda_status_ != cudaSuccess)                                              \
      ::ds::cuda::throw_cuda_error(ds_cuda_status_, #call, __FILE__, __LINE__);      \
  } while (0)

#define DS_CUBLAS_CHECK(call)                                                        \
  do {                                                                               \
    const cublasStatus_t ds_cublas_status_ = (call);                                 \
    if (ds_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                  \
      ::ds::cuda::throw_cublas_error(ds_cublas_status_, #call, __FILE__, __LINE__);  \
  } while (0)

#define DS_NVRTC_CHECK(call)                                                         \
  do {                                                                               \
    const nvrtcResult ds_nvrtc_status_ = (call);                                     \
    if (ds_nvrtc_status_ != NVRTC_SUCCESS)                                           \
      ::ds::cuda::throw_nvrtc_error(ds_nvrtc_status_, #call, __FILE__, __LINE__);    \
  } while (0)
