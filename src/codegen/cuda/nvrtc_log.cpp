// NVRTC compilation without a device, for checking generated source where no
// GPU is present (NVRTC is a compiler library: it needs no driver).
#include "codegen/cuda/emit_cuda.h"
#include "ds/error.h"

#ifdef DS_HAVE_CUDA
#include <nvrtc.h>

#include <memory>

#include "backends/cuda/nvrtc_module.h"
#endif

namespace ds::codegen::cuda {

std::string nvrtc_compile_log(const std::string& source, const std::string& arch) {
#ifdef DS_HAVE_CUDA
  const std::string full = ds::cuda::device_prelude() + source;
  nvrtcProgram prog = nullptr;
  nvrtcResult r = nvrtcCreateProgram(&prog, full.c_str(), "ds_check.cu", 0, nullptr, nullptr);
  DS_CHECK(r == NVRTC_SUCCESS, Error, "nvrtcCreateProgram: ", nvrtcGetErrorString(r));
  std::unique_ptr<nvrtcProgram, void (*)(nvrtcProgram*)> guard(&prog, [](nvrtcProgram* p) {
    nvrtcDestroyProgram(p);
  });
  // The options of backends/cuda/nvrtc_module.cpp's compile, so the check is the real build.
  const std::string arch_opt = "--gpu-architecture=" + arch;
  const char* opts[] = {arch_opt.c_str(), "--std=c++17", "-default-device"};
  r = nvrtcCompileProgram(prog, 3, opts);
  size_t n = 0;
  nvrtcGetProgramLogSize(prog, &n);
  std::string log(n, '\0');
  nvrtcGetProgramLog(prog, log.data());
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  DS_CHECK(r == NVRTC_SUCCESS, Error, "nvrtcCompileProgram for ", arch, " failed: ",
           nvrtcGetErrorString(r), "\n", log);
  return log;
#else
  (void)source;
  (void)arch;
  throw UnavailableError("NVRTC: this build was made without CUDA");
#endif
}

}  // namespace ds::codegen::cuda
