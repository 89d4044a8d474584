// Internal entry points of the CUDA allocator and copies (registered as the
// CUDA device hooks of Tensor).
#pragma once

#include <memory>
#include <vector>

#include "ds/tensor.h"

namespace ds::cuda {

std::shared_ptr<Storage> device_storage(size_t nbytes, Device device);
// Contiguous src -> contiguous dst (same shape and dtype), any direction
// involving a CUDA device; host <-> device goes through pinned staging buffers.
void copy_tensor(const Tensor& src, Tensor& dst);
// copy_tensor(src[i], dst[i]) for every i, the device-to-device ones of one
// device in one kernel launch per 128 (copy_batch.cpp).
void copy_batch(const std::vector<Tensor>& src, std::vector<Tensor>& dst);
// A contiguous copy of a strided device tensor, made on its device (strided_copy.cpp).
Tensor contiguous_on_device(const Tensor& src);

// A CUDA graph captured on `device` between these calls writes, on every replay,
// to the blocks handed out during the capture (reused within it as usual).
// end_graph_hold takes those that are back in the cache out of it and returns
// them as one handle (kept by the graph) that caches them again when destroyed;
// no cached block is returned to the driver during the capture.
void begin_graph_hold(int device);
std::shared_ptr<void> end_graph_hold(int device);

}  // namespace ds::cuda
