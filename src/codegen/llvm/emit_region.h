// Kernel IR -> LLVM IR for the CPU. The generated entry point
//   void <name>(void** ptrs, int64_t n)
// runs the region's inner loop over n elements: ptrs holds one pointer per input
// (already at the row's first element; broadcast inputs are read once) followed
// by one per output. With reductions (trailing or row), n is one whole row: the
// pointers of row-register outputs and of the trailing reduction (the last one)
// receive one value for the row. The caller walks rows and splits them across
// threads.
#pragma once

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <memory>
#include <string>

#include "codegen/loop_layout.h"

namespace ds::codegen::llvm_cpu {

std::unique_ptr<llvm::Module> emit_region(llvm::LLVMContext& ctx, const KernelIR& ir,
                                          const LoopLayout& layout, const std::string& name);

}  // namespace ds::codegen::llvm_cpu
