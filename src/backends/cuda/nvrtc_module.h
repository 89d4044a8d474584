// Run-time compiled CUDA kernels: CUDA C++ source compiled by NVRTC to a cubin
// for the device's architecture, loaded with the runtime's library API.
#pragma once

#include <cuda_runtime.h>

#include <string>

namespace ds::cuda {

// Device code every ds kernel source starts with: fixed-width integers, the
// Philox generator (the CPU's src/core/philox.h, verbatim), float16/bfloat16
// conversions and block reductions.
const std::string& device_prelude();

// The `extern "C"` kernel `name` of `source` (the prelude is prepended) on
// `device`, compiled or taken from the memory or disk cache.
cudaKernel_t get_kernel(int device, const std::string& source, const std::string& name);

// Launches on the device's default stream and checks the launch.
void launch(int device, cudaKernel_t kernel, dim3 grid, dim3 block, void** args,
            size_t shared_bytes, const char* what);

// "sm_90a" for the H200: the architecture NVRTC compiles for.
std::string device_arch(int device);

// Counts clear_kernel_memory_cache() calls: kernels captured into a CUDA graph
// before the count changed were unloaded.
uint64_t kernel_generation();

}  // namespace ds::cuda
