// The CUDA kernel of `fused`: the region's CUDA C++ (codegen/cuda) compiled by
// NVRTC (memory and disk cache of nvrtc_module). `supports` compiles for device 0
// when an executable is built, so the first run does not wait for NVRTC.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "codegen/cuda/emit_cuda.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

// DS_DUMP_KERNELS=1: each region's generated CUDA source (what NVRTC compiles
// after the device prelude) as <scalar kernel>.cu in DS_DUMP_DIR (default ./ds_dump).
void dump_source(const codegen::cuda::CudaRegion& r) {
  const char* dump = std::getenv("DS_DUMP_KERNELS");
  if (!dump || std::string(dump) != "1") return;
  const char* dir_env = std::getenv("DS_DUMP_DIR");
  const std::filesystem::path dir = dir_env && *dir_env ? dir_env : "ds_dump";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / (r.scalar_kernel + ".cu")) << r.source;
}

// The generated source per region text (emitting is cheap but not free: runs hit this).
const codegen::cuda::CudaRegion& region_source(const std::string& text) {
  static std::mutex mu;
  static auto* emitted = new std::map<std::string, std::unique_ptr<codegen::cuda::CudaRegion>>;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*emitted)[text];
  if (!slot) {
    slot = std::make_unique<codegen::cuda::CudaRegion>(
        codegen::cuda::emit_cuda_region(codegen::cached_kernel_ir(text)));
    dump_source(*slot);
  }
  return *slot;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Dynamic shared memory a block may opt into on `device` (227 KiB on an H200).
int64_t shared_optin(int device) {
  static std::mutex mu;
  static std::map<int, int> bytes;
  std::lock_guard<std::mutex> lock(mu);
  auto it = bytes.find(device);
  if (it == bytes.end()) {
    int v = 0;
    DS_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    it = bytes.emplace(device, v).first;
  }
  return it->second;
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
  // Long rows: the shared-memory kernel where the device holds its row cache
  // (1 KiB left for the block reductions' static arrays).
  if (r.rows && !r.shared_kernel.empty() && r.shared_bytes + 1024 <= shared_optin(dev)) {
    const cudaKernel_t ks = get_kernel(dev, r.source, r.shared_kernel);
    // Over the 48 KiB default: set on every call (a reloaded library's kernel may
    // reuse an older handle), a host-side attribute with no stream work.
    DS_CUDA_CHECK(cudaKernelSetAttributeForDevice(
        ks, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(r.shared_bytes), dev));
    DS_CHECK(items <= 0x7fffffff, ShapeError, kc.ctx.where(), items, " rows exceed the CUDA grid");
    launch(dev, ks, dim3(static_cast<unsigned>(items)), dim3(r.shared_threads), args.data(),
           static_cast<size_t>(r.shared_bytes), "fused region (rows in shared memory)");
    return;
  }
  const cudaKernel_t k = get_kernel(dev, r.source, vector ? r.vector_kernel : r.scalar_kernel);
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
