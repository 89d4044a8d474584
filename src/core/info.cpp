// Machine and build information for `ds info`.
#include <fstream>
#include <sstream>
#include <thread>

#include "ds/compile.h"
#include "ds/cuda.h"
#include "ds/runtime.h"

// Each optional part defines DS_HAVE_<X>=1 when CMake found its dependency.
#ifndef DS_HAVE_ONEDNN
#define DS_HAVE_ONEDNN 0
#endif
#ifndef DS_HAVE_OPENBLAS
#define DS_HAVE_OPENBLAS 0
#endif
#ifndef DS_HAVE_LLVM
#define DS_HAVE_LLVM 0
#endif
#ifndef DS_HAVE_CUDA
#define DS_HAVE_CUDA 0
#endif
#ifndef DS_HAVE_MPI
#define DS_HAVE_MPI 0
#endif

#ifndef DS_VERSION
#define DS_VERSION "0.0.0"
#endif

namespace ds {

bool CpuInfo::has(const std::string& f) const {
  for (const auto& x : features)
    if (x == f) return true;
  return false;
}

const CpuInfo& cpu_info() {
  static const CpuInfo info = [] {
    CpuInfo c;
    c.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::ifstream f("/proc/cpuinfo");
    std::string line, flags;
    while (std::getline(f, line)) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
      std::string val = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
      if (key == "model name" && c.model.empty()) c.model = val;
      if (key == "flags" && flags.empty()) flags = val;
    }
    if (c.model.empty()) c.model = "unknown CPU";
    std::istringstream is(flags);
    std::string flag;
    const char* interesting[] = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                                 "avx512vl", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                                 "amx_bf16", "amx_tile", "avx_vnni"};
    while (is >> flag)
      for (const char* want : interesting)
        if (flag == want) c.features.push_back(flag);
    return c;
  }();
  return info;
}

const BuildInfo& build_info() {
  static const BuildInfo info = [] {
    BuildInfo b;
    b.version = DS_VERSION;
    b.components = {{"oneDNN", DS_HAVE_ONEDNN == 1},
                    {"OpenBLAS", DS_HAVE_OPENBLAS == 1},
                    {"LLVM JIT", DS_HAVE_LLVM == 1},
                    {"CUDA", DS_HAVE_CUDA == 1},
                    {"MPI", DS_HAVE_MPI == 1}};
    return b;
  }();
  return info;
}

std::string info_text() {
  std::ostringstream os;
  const auto& c = cpu_info();
  const auto& b = build_info();
  os << "deepseek " << b.version << "\n";
  os << "cpu:       " << c.model << "\n";
  os << "cores:     " << c.cores << "\n";
  os << "features:  ";
  for (size_t i = 0; i < c.features.size(); ++i) os << (i ? " " : "") << c.features[i];
  os << "\nthreads:   " << num_threads() << " (DS_NUM_THREADS)\n";
  os << "targets:   ";
  const auto t = available_targets();
  for (size_t i = 0; i < t.size(); ++i) os << (i ? ", " : "") << t[i];
  os << "\ncomponents:";
  for (const auto& [name, on] : b.components) os << " " << name << (on ? "=on" : "=off");
  os << "\n";
  const auto gpus = cuda::devices();
  if (gpus.empty()) os << "gpus:      none (" << cuda::unavailable_reason() << ")\n";
  for (const auto& g : gpus) os << "gpu " << g.index << ":     " << g.str() << "\n";
  return os.str();
}

}  // namespace ds
