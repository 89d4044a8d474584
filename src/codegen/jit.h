// Compiled fused regions for the CPU: JIT-compiled on first use, kept in memory
// per region hash and on disk under DS_CACHE_DIR (default ~/.cache/deepseek).
// DS_DUMP_KERNELS=1 writes each generated kernel's LLVM IR and assembly into
// DS_DUMP_DIR (default ./ds_dump).
#pragma once

#include <cstdint>

#include "codegen/kernel_ir.h"

namespace ds::codegen {

// Whether this build can compile regions (built with LLVM).
bool jit_available();

struct JitCounters {
  int64_t codegen = 0;        // regions compiled by LLVM (IR -> object code)
  int64_t memory_hits = 0;    // served by a kernel already loaded in this process
  int64_t disk_hits = 0;      // loaded from the disk cache, no LLVM work
  int64_t disk_rejected = 0;  // cache entries found corrupt or foreign, then rebuilt
};
JitCounters jit_counters();

// Makes sure `ir` is compiled and loaded (the `fused` kernel calls this when the
// executable is built, so runs never wait for LLVM).
void jit_prepare(const KernelIR& ir);

// Runs a prepared region on contiguous buffers: inputs[i] of ir.inputs[i]'s type,
// outputs[o] of ir.result_types()[o].
void jit_run(const KernelIR& ir, const std::vector<const void*>& inputs,
             const std::vector<void*>& outputs);

// jit_run for a region from cached_kernel_ir() (alive for the whole process):
// finds its kernel by address, without rebuilding the region's text per call
// (the `fused` kernel's path).
void jit_run_cached(const KernelIR& ir, const std::vector<const void*>& inputs,
                    const std::vector<void*>& outputs);

// Unloads every kernel of this process (no kernel may be running), so the next
// prepare goes to the disk cache as a new process would.
void jit_unload_all();

}  // namespace ds::codegen
