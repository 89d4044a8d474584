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
// A contiguous copy of a strided device tensor, made on its device (strided_copy.cpp).
Tensor contiguous_on_device(const Tensor& src);

// While a CUDA graph is captured on `device`, blocks released there are held
// instead of cached: every replay of the graph writes to them again, so no
// other tensor may get them. end_graph_hold returns the held blocks as one
// handle (kept by the graph); destroying it caches them for reuse.
void begin_graph_hold(int device);
std::shared_ptr<void> end_graph_hold(int device);

}  // namespace ds::cuda
