#include "runtime/cuda_graph.h"

#include <cstdlib>

#include "ds/error.h"
#include "ds/profile.h"

#ifdef DS_HAVE_CUDA
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_allocator.h"
#include "backends/cuda/nvrtc_module.h"
#endif

namespace ds {

#ifdef DS_HAVE_CUDA

namespace {

// The graph's output buffers are written again by the next replay: callers get
// copies, made in one batched copy (a training step returns hundreds of tensors).
std::vector<Tensor> copies(const std::vector<Tensor>& device_tensors) {
  std::vector<Tensor> out, from, to;
  for (const Tensor& t : device_tensors) {
    out.push_back(t.is_contiguous() ? Tensor::empty(t.shape(), t.dtype(), t.device()) : t.clone());
    if (!t.is_contiguous()) continue;
    from.push_back(t);
    to.push_back(out.back());  // shares out.back()'s storage
  }
  cuda::copy_batch(from, to);
  return out;
}

}  // namespace

struct CudaGraphRunner::Captured {
  cudaGraphExec_t exec = nullptr;
  std::vector<Tensor> inputs;   // the feeds' buffers the graph reads
  std::vector<Tensor> outputs;  // the buffers it leaves the results in
  std::shared_ptr<void> held;   // blocks the captured launches use (back in the cache after it)
  uint64_t kernels = 0;         // the NVRTC kernel generation it launches
  ~Captured() {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

namespace {

// Captures what `body` queues on the device's stream; returns the instantiated
// graph, or nullptr with `why` when the capture failed (nothing ran then).
cudaGraphExec_t capture(int device, const std::function<void()>& body, std::string* why) {
  cuda::set_device(device);
  const cudaStream_t stream = cuda::stream_of(device);
  // Relaxed: allocations (cudaMalloc by the caching allocator) may happen inside.
  DS_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  std::string failure;
  try {
    body();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  cudaGetLastError();  // an invalidated capture leaves its error behind
  if (failure.empty() && ended != cudaSuccess)
    failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(ended);
  cudaGraphExec_t exec = nullptr;
  if (failure.empty()) {
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    if (made != cudaSuccess) {
      cudaGetLastError();
      failure = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(made);
      exec = nullptr;
    }
  }
  if (graph) cudaGraphDestroy(graph);
  *why = failure;
  return exec;
}

}  // namespace

CudaGraphRunner::CudaGraphRunner(int device) : device_(device) {
  stats_.status = "on: captured on the second run";
}
CudaGraphRunner::~CudaGraphRunner() = default;

std::vector<Tensor> CudaGraphRunner::run(std::vector<Tensor>& slots,
                                         const std::vector<int>& input_slots, const Steps& steps) {
  std::lock_guard<std::mutex> lock(mu_);
  const Device dev = Device::cuda(device_);
  if (captured_ && captured_->kernels != cuda::kernel_generation()) {
    // Its kernels were unloaded: run step by step once (reloading them), capture again next.
    captured_.reset();
    runs_ = 0;
    stats_.status = "on: kernels reloaded, capturing again";
  }
  if (captured_ && !profiler_active()) {
    std::vector<Tensor> feeds;
    for (int s : input_slots) feeds.push_back(slots[s].contiguous());
    cuda::copy_batch(feeds, captured_->inputs);
    DS_CUDA_CHECK(cudaGraphLaunch(captured_->exec, cuda::stream_of(device_)));
    ++stats_.replays;
    return copies(captured_->outputs);
  }
  // The profiler times ops one by one: while it records, runs go step by step.
  if (failed_ || profiler_active() || ++runs_ < 2) return steps(slots);
  // Second run: the feeds go into buffers of the graph's own, then the capture.
  auto c = std::make_unique<Captured>();
  std::vector<Tensor> plain = slots;  // to run step by step if the capture fails
  for (int s : input_slots) {
    Tensor buffer = Tensor::empty(slots[s].shape(), slots[s].dtype(), dev);
    cuda::copy_tensor(slots[s].contiguous(), buffer);
    c->inputs.push_back(buffer);
    slots[s] = buffer;
  }
  c->kernels = cuda::kernel_generation();
  cuda::begin_graph_hold(device_);
  std::string why;
  c->exec = capture(device_, [&] { c->outputs = steps(slots); }, &why);
  c->held = cuda::end_graph_hold(device_);
  if (!c->exec) {
    failed_ = true;
    ++stats_.failed_captures;
    stats_.status = "off: the capture failed (" + why + "); runs launch step by step";
    slots.clear();
    c.reset();  // its buffers go back to the cache before the step-by-step run
    return steps(plain);
  }
  DS_CUDA_CHECK(cudaGraphLaunch(c->exec, cuda::stream_of(device_)));
  captured_ = std::move(c);
  ++stats_.captures;
  ++stats_.replays;
  stats_.status = "on: captured";
  return copies(captured_->outputs);
}

#else  // no CUDA: no device, so compile() never makes a runner

struct CudaGraphRunner::Captured {};
CudaGraphRunner::CudaGraphRunner(int device) : device_(device) {}
CudaGraphRunner::~CudaGraphRunner() = default;
std::vector<Tensor> CudaGraphRunner::run(std::vector<Tensor>& slots, const std::vector<int>&,
                                         const Steps& steps) {
  return steps(slots);
}

#endif

CudaGraphStats CudaGraphRunner::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool cuda_graphs_enabled() {
  const char* env = std::getenv("DS_CUDA_GRAPHS");
  return !env || std::string(env) != "0";
}

}  // namespace ds
