// CUDA graphs for compiled executables: the first run launches step by step;
// the second captures the launch sequence (stream capture on the device's ds
// stream) into a graph, with the feeds copied into buffers the graph owns; later
// runs copy the feeds there and replay the graph with one launch. Every device
// buffer the captured launches touch stays the graph's (blocks handed out during
// the capture are reused within it as in any run, then kept out of the cache),
// so replays find the same addresses and no other tensor gets them.
// A capture that fails (a host synchronization or a copy to the host inside a
// kernel, any CUDA error) is abandoned: that run and all later ones launch step
// by step. While the profiler records, runs go step by step (it times each op).
// DS_CUDA_GRAPHS=0 turns graphs off.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ds/tensor.h"

namespace ds {

struct CudaGraphStats {
  int64_t captures = 0;         // graphs captured and instantiated
  int64_t replays = 0;          // runs served by one graph launch
  int64_t failed_captures = 0;  // captures abandoned (then runs go step by step)
  std::string status;           // "on: captured", "off: the capture failed (...)", ...
};

// The graph state of a CUDA executable (see compile()).
class CudaGraphRunner {
 public:
  explicit CudaGraphRunner(int device);
  ~CudaGraphRunner();
  CudaGraphRunner(const CudaGraphRunner&) = delete;
  CudaGraphRunner& operator=(const CudaGraphRunner&) = delete;

  // Runs the executable: `steps` launches every step over `slots` (inputs at
  // `input_slots`) and returns the outputs on the device, without synchronizing.
  // The outputs stay on the device (after a replay: copies of the graph's own buffers).
  using Steps = std::function<std::vector<Tensor>(std::vector<Tensor>& slots)>;
  std::vector<Tensor> run(std::vector<Tensor>& slots, const std::vector<int>& input_slots,
                          const Steps& steps);
  CudaGraphStats stats() const;

 private:
  struct Captured;
  int device_;
  mutable std::mutex mu_;
  int64_t runs_ = 0;
  bool failed_ = false;
  std::unique_ptr<Captured> captured_;
  CudaGraphStats stats_;
};

// Whether DS_CUDA_GRAPHS allows graphs (unset or anything but "0").
bool cuda_graphs_enabled();

}  // namespace ds
