// CUDA kernels of softmax_cross_entropy and softmax_cross_entropy_backward: one
// read of the logits forward, one read and one write backward (device code in
// softmax_cross_entropy_source.h). A target out of range is recorded on the device
// (the lowest row) and reported after the kernel with the reference kernel's
// message; while the stream is being captured into a CUDA graph nothing can be
// read back, and such rows give loss 0 and a zero gradient.
#include <climits>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "backends/cuda/softmax_cross_entropy_source.h"
#include "ds/cuda.h"
#include "ir/ops/softmax_cross_entropy.h"

namespace ds::cuda {
namespace {

// Rows up to this many classes take a warp each; longer ones a block.
constexpr int64_t kWarpRowLimit = 2048;
constexpr int kBlockThreads = 256;

int threads_per_row(int64_t classes) { return classes <= kWarpRowLimit ? 32 : kBlockThreads; }

std::string source_for(const Tensor& logits, const Tensor& target, int tpr) {
  return softmax_cross_entropy_source(device_type(logits.dtype()),
                                      target.dtype() == DType::Int32 ? "int" : "long long", tpr);
}

// The device word holding the lowest bad row (ULLONG_MAX: none).
class BadRow {
 public:
  explicit BadRow(int dev) : word_(allocate(sizeof(unsigned long long), dev)), device_(dev) {
    set_device(dev);
    DS_CUDA_CHECK(cudaMemsetAsync(word_.get(), 0xff, sizeof(unsigned long long), stream_of(dev)));
  }
  void* ptr() { return word_.get(); }

  // Throws the reference kernel's message for the first bad row, if any (not while
  // the stream is being captured: nothing can be read back then).
  void check(const KernelCall& kc, const Tensor& target, int64_t classes) {
    const cudaStream_t s = stream_of(device_);
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    DS_CUDA_CHECK(cudaStreamIsCapturing(s, &capturing));
    if (capturing != cudaStreamCaptureStatusNone) return;
    unsigned long long row = 0;
    DS_CUDA_CHECK(cudaMemcpyAsync(&row, word_.get(), sizeof row, cudaMemcpyDeviceToHost, s));
    DS_CUDA_CHECK(cudaStreamSynchronize(s));
    if (row == ULLONG_MAX) return;
    const size_t width = dtype_size(target.dtype());
    int64_t v64 = 0;
    int32_t v32 = 0;
    DS_CUDA_CHECK(cudaMemcpy(width == 4 ? static_cast<void*>(&v32) : &v64,
                             static_cast<const char*>(target.raw_data()) + row * width, width,
                             cudaMemcpyDeviceToHost));
    ops::throw_bad_target(kc.ctx, static_cast<int64_t>(row), width == 4 ? v32 : v64, classes);
  }

 private:
  std::shared_ptr<void> word_;
  int device_;
};

struct Launch {
  int device;
  unsigned blocks;
  int tpr;
};

Launch geometry(const KernelCall& kc, int64_t rows, int64_t classes) {
  const int tpr = threads_per_row(classes);
  const int64_t rows_per_block = tpr == 32 ? kBlockThreads / 32 : 1;
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  DS_CHECK(blocks <= 0x7fffffff, ShapeError, kc.ctx.where(), rows, " rows exceed the CUDA grid");
  return {call_device(kc), static_cast<unsigned>(blocks), tpr};
}

void forward(const KernelCall& kc) {
  const Tensor &x = kc.inputs[0], &target = kc.inputs[1];
  long long rows = x.shape()[0], classes = x.shape()[1];
  if (rows == 0) return;
  const Launch g = geometry(kc, rows, classes);
  BadRow bad(g.device);
  const void* xp = x.raw_data();
  const void* tp = target.raw_data();
  void* lp = kc.outputs[0].raw_data();
  void* sp = kc.outputs[1].raw_data();
  long long ignore = kc.ctx.i("ignore_index");
  double smoothing = kc.ctx.f("label_smoothing");
  void* bp = bad.ptr();
  void* args[] = {&xp, &tp, &lp, &sp, &rows, &classes, &ignore, &smoothing, &bp};
  launch(g.device, get_kernel(g.device, source_for(x, target, g.tpr), "ds_xent_forward"),
         dim3(g.blocks), g.tpr == 32 ? kBlockThreads : g.tpr, args, 0, "softmax_cross_entropy");
  bad.check(kc, target, classes);
}

void backward(const KernelCall& kc) {
  const Tensor &x = kc.inputs[0], &target = kc.inputs[1];
  Tensor& dx = kc.outputs[0];
  long long rows = x.shape()[0], classes = x.shape()[1];
  if (dx.numel() == 0) return;
  const Launch g = geometry(kc, rows, classes);
  BadRow bad(g.device);
  const void* xp = x.raw_data();
  const void* tp = target.raw_data();
  const void* lp = kc.inputs[2].raw_data();
  const void* dp = kc.inputs[3].raw_data();
  void* op = dx.raw_data();
  long long ignore = kc.ctx.i("ignore_index");
  double smoothing = kc.ctx.f("label_smoothing");
  int vec_ok = reinterpret_cast<uintptr_t>(xp) % 16 == reinterpret_cast<uintptr_t>(op) % 16;
  void* bp = bad.ptr();
  void* args[] = {&xp, &tp, &lp, &dp, &op, &rows, &classes, &ignore, &smoothing, &vec_ok, &bp};
  launch(g.device, get_kernel(g.device, source_for(x, target, g.tpr), "ds_xent_backward"),
         dim3(g.blocks), g.tpr == 32 ? kBlockThreads : g.tpr, args, 0,
         "softmax_cross_entropy_backward");
  bad.check(kc, target, classes);
}

bool supported(const OpContext& c) {
  const DType t = c.inputs[1].dtype;
  return nvrtc_float(c.inputs[0].dtype) && (t == DType::Int32 || t == DType::Int64);
}

const OpRegistrar reg([] {
  register_kernel("softmax_cross_entropy", DeviceKind::CUDA, {forward, supported, "nvrtc", 10});
  register_kernel("softmax_cross_entropy_backward", DeviceKind::CUDA,
                  {backward, supported, "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
