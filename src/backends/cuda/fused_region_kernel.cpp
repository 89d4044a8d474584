// The CUDA kernel of `fused`: the region's CUDA C++ (codegen/cuda) compiled by
// NVRTC (memory and disk cache of nvrtc_module). `supports` compiles for device 0
// when an executable is built, so the first run does not wait for NVRTC.
#include <map>
#include <memory>
#include <mutex>

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "codegen/cuda/emit_cuda.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

// The generated source per region text (emitting is cheap but not free: runs hit this).
const codegen::cuda::CudaRegion& region_source(const std::string& text) {
  static std::mutex mu;
  static auto* emitted = new std::map<std::string, std::unique_ptr<codegen::cuda::CudaRegion>>;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*emitted)[text];
  if (!slot)
    slot = std::make_unique<codegen::cuda::CudaRegion>(
        codegen::cuda::emit_cuda_region(codegen::cached_kernel_ir(text)));
  return *slot;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

void run_region(const KernelCall& kc) {
  const std::string& text = kc.ctx.s("region");
  const codegen::KernelIR& ir = codegen::cached_kernel_ir(text);
  if (numel(ir.shape) == 0) return;
  const codegen::cuda::CudaRegion& r = region_source(text);
  const int dev = call_device(kc);
  std::vector<const void*> ptrs;
  for (const Tensor& t : kc.inputs) ptrs.push_back(t.raw_data());
  for (const Tensor& t : kc.outputs) ptrs.push_back(t.raw_data());
  // The vector kernel needs 16-byte aligned bases for every vector access.
  bool vector = !r.vector_kernel.empty();
  for (size_t i = 0; vector && i < kc.inputs.size(); ++i)
    vector = !r.vector_inputs[i] || aligned16(ptrs[i]);
  for (size_t o = kc.inputs.size(); vector && o < ptrs.size(); ++o) vector = aligned16(ptrs[o]);
  const int64_t items = vector ? r.vector_items : r.items;
  long long wide = items;
  unsigned int narrow = static_cast<unsigned int>(items);
  std::vector<void*> args;
  for (const void*& p : ptrs) args.push_back(&p);
  args.push_back(r.wide_index ? static_cast<void*>(&wide) : static_cast<void*>(&narrow));
  const std::string& name = vector ? r.vector_kernel : r.scalar_kernel;
  const cudaKernel_t k = get_kernel(dev, r.source, name);
  unsigned grid = 0;
  if (r.rows) {
    const int64_t blocks = (items + r.rows_per_block - 1) / r.rows_per_block;
    DS_CHECK(blocks <= 0x7fffffff, ShapeError, kc.ctx.where(), items,
             " rows exceed the CUDA grid");
    grid = static_cast<unsigned>(blocks);
  } else {
    grid = grid_for(vector ? (items + codegen::cuda::kVectorUnroll - 1) / codegen::cuda::kVectorUnroll
                           : items,
                    dev);
  }
  launch(dev, k, dim3(grid), dim3(codegen::cuda::kThreadsPerBlock), args.data(), 0,
         "fused region");
}

const OpRegistrar reg([] {
  register_kernel("fused", DeviceKind::CUDA,
                  {.fn = run_region,
                   .supports =
                       [](const OpContext& c) {
                         const std::string& text = c.s("region");
                         if (numel(codegen::cached_kernel_ir(text).shape) > 0 &&
                             device_count() > 0) {
                           const auto& r = region_source(text);
                           get_kernel(0, r.source, r.scalar_kernel);
                         }
                         return true;
                       },
                   .impl = "nvrtc-fused",
                   .priority = 10});
});

}  // namespace
}  // namespace ds::cuda
