// Internal entry points of the CUDA allocator and copies (registered as the
// CUDA device hooks of Tensor).
#pragma once

#include <memory>

#include "ds/tensor.h"

namespace ds::cuda {

std::shared_ptr<Storage> device_storage(size_t nbytes, Device device);
// Contiguous src -> contiguous dst (same shape and dtype), any direction
// involving a CUDA device; host <-> device goes through pinned staging buffers.
void copy_tensor(const Tensor& src, Tensor& dst);

}  // namespace ds::cuda
