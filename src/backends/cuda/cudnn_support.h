// cuDNN for the convolution kernels: status checks, one handle per thread and
// device (bound to the device's ds stream), RAII descriptors and dtype mapping.
// cuDNN 9 marks the legacy convolution API deprecated (the graph API replaces
// it); it still is the shortest path to cuDNN's tuned kernels, so the files that
// call it silence -Wdeprecated-declarations.
#pragma once

#include <cudnn.h>

#include "ds/dtype.h"

namespace ds::cuda {

[[noreturn]] void throw_cudnn_error(cudnnStatus_t code, const char* call, const char* file,
                                    int line);

// cuDNN 9's statuses come in categories of 1000 (CUDNN_STATUS_NOT_SUPPORTED_SHAPE
// is a CUDNN_STATUS_NOT_SUPPORTED): the category of `code`.
cudnnStatus_t cudnn_category(cudnnStatus_t code);

// The calling thread's cuDNN handle for `device`, on Stream::default_for(device).
cudnnHandle_t cudnn_handle(int device);

// cuDNN's name for a float dtype (float32/float64/float16/bfloat16).
cudnnDataType_t cudnn_type(DType t);
// The accumulation type: double for float64, float for the rest.
cudnnDataType_t cudnn_compute_type(DType t);

struct TensorDesc {
  cudnnTensorDescriptor_t h = nullptr;
  // Packed NCHW, or NHWC with CUDNN_TENSOR_NHWC (the extents in NCHW order either way).
  TensorDesc(DType t, int64_t n, int64_t c, int64_t height, int64_t width,
             cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW);
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  ~TensorDesc();
};

struct FilterDesc {
  cudnnFilterDescriptor_t h = nullptr;
  // OIHW, or OHWI (cuDNN's KRSC) with CUDNN_TENSOR_NHWC.
  FilterDesc(DType t, int64_t o, int64_t c, int64_t kh, int64_t kw,
             cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW);
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  ~FilterDesc();
};

}  // namespace ds::cuda

#define DS_CUDNN_CHECK(call)                                                        \
  do {                                                                              \
    const cudnnStatus_t ds_cudnn_status_ = (call);                                  \
    if (ds_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                   \
      ::ds::cuda::throw_cudnn_error(ds_cudnn_status_, #call, __FILE__, __LINE__);   \
  } while (0)
