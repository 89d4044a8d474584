// NVRTC compilation with a memory cache (source + arch -> loaded library) and a
// disk cache (the cubin, in the same checksummed entry format as the CPU JIT's).
#include "backends/cuda/nvrtc_module.h"

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "codegen/kernel_cache.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

const char* const kPhiloxSource =
#include "ds_philox_source.inc"
    ;

const char* const kPreludeBody = R"prelude(
// float16 / bfloat16 are stored as 16-bit patterns; PTX cvt rounds to nearest even
// like the CPU's Half and BFloat16.
__device__ __forceinline__ float ds_h2f(unsigned short h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short ds_f2h(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ float ds_b2f(unsigned short b) {
  return __uint_as_float(static_cast<unsigned int>(b) << 16);
}
__device__ __forceinline__ unsigned short ds_f2b(float f) {
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<unsigned short>(u >> 16);
}
struct ds_half { unsigned short bits; };
struct ds_bf16 { unsigned short bits; };
template <typename T> struct ds_io {
  typedef float acc;
  static __device__ __forceinline__ float load(T v) { return static_cast<float>(v); }
  static __device__ __forceinline__ T store(float v) { return static_cast<T>(v); }
};
template <> struct ds_io<double> {
  typedef double acc;
  static __device__ __forceinline__ double load(double v) { return v; }
  static __device__ __forceinline__ double store(double v) { return v; }
};
template <> struct ds_io<ds_half> {
  typedef float acc;
  static __device__ __forceinline__ float load(ds_half v) { return ds_h2f(v.bits); }
  static __device__ __forceinline__ ds_half store(float v) { ds_half r; r.bits = ds_f2h(v); return r; }
};
template <> struct ds_io<ds_bf16> {
  typedef float acc;
  static __device__ __forceinline__ float load(ds_bf16 v) { return ds_b2f(v.bits); }
  static __device__ __forceinline__ ds_bf16 store(float v) { ds_bf16 r; r.bits = ds_f2b(v); return r; }
};
#define DS_INF (__int_as_float(0x7f800000))
// Block-wide reduction for blocks of a multiple of 32 threads (at most 1024);
// every thread gets the result. `identity` fills the lanes without a warp.
template <typename A, typename Op>
__device__ __forceinline__ A ds_block_reduce(A v, Op op, A identity) {
  __shared__ A partial[32];
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = lane < warps ? partial[lane] : identity;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
)prelude";

std::string strip_includes(std::string text) {
  // NVRTC has no <cstdint>: the prelude declares the fixed-width types instead.
  for (const std::string line : {"#include <cstdint>", "#pragma once"}) {
    const auto at = text.find(line);
    if (at != std::string::npos) text.erase(at, line.size());
  }
  return text;
}

struct Loaded {
  cudaLibrary_t library = nullptr;
  std::map<std::string, cudaKernel_t> kernels;
};

struct Cache {
  std::mutex mu;
  std::map<std::pair<int, std::string>, Loaded> modules;  // (device, source)
  KernelCacheStats stats;
  uint64_t generation = 0;
};
Cache& cache() {
  static auto* c = new Cache;  // leaked: libraries stay loaded to exit
  return *c;
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  DS_NVRTC_CHECK(nvrtcVersion(&major, &minor));
  return detail::cat("NVRTC ", major, ".", minor);
}

std::string compile_cubin(const std::string& source, const std::string& arch) {
  nvrtcProgram prog = nullptr;
  DS_NVRTC_CHECK(nvrtcCreateProgram(&prog, source.c_str(), "ds_kernels.cu", 0, nullptr, nullptr));
  // The program is destroyed on every path, also when compilation throws.
  std::unique_ptr<nvrtcProgram, void (*)(nvrtcProgram*)> guard(&prog, [](nvrtcProgram* p) {
    nvrtcDestroyProgram(p);
  });
  const std::string arch_opt = "--gpu-architecture=" + arch;
  const char* opts[] = {arch_opt.c_str(), "--std=c++17", "-default-device"};
  const nvrtcResult r = nvrtcCompileProgram(prog, 3, opts);
  if (r != NVRTC_SUCCESS) {
    size_t n = 0;
    DS_NVRTC_CHECK(nvrtcGetProgramLogSize(prog, &n));
    std::string log(n, '\0');
    DS_NVRTC_CHECK(nvrtcGetProgramLog(prog, log.data()));
    throw Error(detail::cat("nvrtcCompileProgram for ", arch, " failed: ", nvrtcGetErrorString(r),
                            "\n", log));
  }
  size_t n = 0;
  DS_NVRTC_CHECK(nvrtcGetCUBINSize(prog, &n));
  std::string cubin(n, '\0');
  DS_NVRTC_CHECK(nvrtcGetCUBIN(prog, cubin.data()));
  return cubin;
}

}  // namespace

const std::string& device_prelude() {
  static const std::string p =
      "typedef unsigned int uint32_t;\ntypedef unsigned long long uint64_t;\n"
      "typedef int int32_t;\ntypedef long long int64_t;\n" +
      strip_includes(kPhiloxSource) + kPreludeBody;
  return p;
}

std::string device_arch(int device) {
  const DeviceInfo d = device_info(device);
  // sm_90a unlocks Hopper-only instructions; other architectures use the plain name.
  return detail::cat("sm_", d.major, d.minor, d.major == 9 && d.minor == 0 ? "a" : "");
}

cudaKernel_t get_kernel(int device, const std::string& source, const std::string& name) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.modules.find({device, source});
  if (it == c.modules.end()) {
    const std::string full = device_prelude() + source;
    const std::string arch = device_arch(device);
    const codegen::CacheKey key{nvrtc_version(), "nvptx64-nvidia-cuda", arch, "cubin", full};
    const auto dir = codegen::kernel_cache_dir();
    std::string cubin;
    if (codegen::cache_load(dir, key, &cubin) == codegen::CacheLookup::Hit) {
      ++c.stats.disk_hits;
    } else {
      cubin = compile_cubin(full, arch);
      ++c.stats.compiles;
      codegen::cache_store(dir, key, cubin);
    }
    set_device(device);
    Loaded l;
    DS_CUDA_CHECK(cudaLibraryLoadData(&l.library, cubin.data(), nullptr, nullptr, 0, nullptr,
                                      nullptr, 0));
    it = c.modules.emplace(std::make_pair(device, source), std::move(l)).first;
  } else {
    ++c.stats.memory_hits;
  }
  auto k = it->second.kernels.find(name);
  if (k == it->second.kernels.end()) {
    cudaKernel_t kernel = nullptr;
    DS_CUDA_CHECK(cudaLibraryGetKernel(&kernel, it->second.library, name.c_str()));
    k = it->second.kernels.emplace(name, kernel).first;
  }
  return k->second;
}

void launch(int device, cudaKernel_t kernel, dim3 grid, dim3 block, void** args,
            size_t shared_bytes, const char* what) {
  set_device(device);
  const cudaError_t e = cudaLaunchKernel(reinterpret_cast<const void*>(kernel), grid, block, args,
                                         shared_bytes, stream_of(device));
  if (e != cudaSuccess) throw_cuda_error(e, what, __FILE__, __LINE__);
  DS_CUDA_CHECK(cudaGetLastError());
}

KernelCacheStats kernel_cache_stats() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().stats;
}

uint64_t kernel_generation() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().generation;
}

void clear_kernel_memory_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  ++c.generation;
  for (auto& [key, l] : c.modules) {
    set_device(key.first);
    DS_CUDA_CHECK(cudaLibraryUnload(l.library));
  }
  c.modules.clear();
}

}  // namespace ds::cuda
