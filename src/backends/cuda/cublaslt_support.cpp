#include "backends/cuda/cublaslt_support.h"

#include <map>
#include <mutex>

#include "ds/cuda.h"

namespace ds::cuda {

LtDevice& lt_device(int device) {
  static std::mutex mu;
  static auto* all = new std::map<int, LtDevice>;  // leaked: handles live to exit
  std::lock_guard<std::mutex> lock(mu);
  LtDevice& d = (*all)[device];
  if (!d.handle) {
    set_device(device);
    DS_CUBLAS_CHECK(cublasLtCreate(&d.handle));
    d.workspace = allocate(kLtWorkspaceBytes, device);
  }
  return d;
}

cudaDataType_t lt_data_type(DType t) {
  switch (t) {
    case DType::Float16: return CUDA_R_16F;
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float64: return CUDA_R_64F;
    default: return CUDA_R_32F;
  }
}

}  // namespace ds::cuda
