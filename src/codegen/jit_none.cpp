// Builds without LLVM: no region is compiled, so loop fusion leaves graphs as
// they are and nothing calls jit_prepare/jit_run.
#ifndef DS_HAVE_LLVM

#include "codegen/jit.h"
#include "ds/error.h"

namespace ds::codegen {

bool jit_available() {
  return false;
}
JitCounters jit_counters() {
  return {};
}
void jit_prepare(const KernelIR&) {
  throw UnavailableError("fused kernels: this build was made without LLVM (DS_WITH_LLVM)");
}
void jit_run(const KernelIR&, const std::vector<const void*>&, const std::vector<void*>&) {
  throw UnavailableError("fused kernels: this build was made without LLVM (DS_WITH_LLVM)");
}
void jit_run_cached(const KernelIR&, const std::vector<const void*>&, const std::vector<void*>&) {
  throw UnavailableError("fused kernels: this build was made without LLVM (DS_WITH_LLVM)");
}
void jit_unload_all() {}

}  // namespace ds::codegen

#endif  // DS_HAVE_LLVM
