// Machine and build information, thread control.
#pragma once

#include <string>
#include <vector>

namespace ds {

struct CpuInfo {
  std::string model;
  int cores = 1;
  std::vector<std::string> features;  // "avx2", "fma", "avx512f", ...
  bool has(const std::string& feature) const;
};
const CpuInfo& cpu_info();

struct BuildInfo {
  std::string version;
  std::vector<std::pair<std::string, bool>> components;  // ("oneDNN", true), ...
};
const BuildInfo& build_info();

// Threads used by CPU kernels: DS_NUM_THREADS, else all cores.
int num_threads();
void set_num_threads(int n);

// `ds info` text.
std::string info_text();

}  // namespace ds
