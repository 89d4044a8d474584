// The pieces emit_cuda.cpp (elementwise kernels) and emit_cuda_rows.cpp (rows
// kernels) share: C++ types of register and memory values, one instruction as
// a statement, and the index arithmetic over a region's loop layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/kernel_ir.h"
#include "codegen/loop_layout.h"

namespace ds::codegen::cuda::detail {

struct Plan {
  const KernelIR& ir;
  LoopLayout layout;
  std::string index;  // the index type
};

// float16/bfloat16 registers are floats holding values of their type (every
// instruction writing one rounds); in memory they are the prelude's 16-bit types.
std::string reg_type(DType t);
std::string mem_type(DType t);
int mem_size(DType t);
std::string lit(double v, DType t);  // a literal of float type t holding v rounded once
std::string convert(const std::string& v, DType from, DType to);
std::string load(DType t, const std::string& mem);          // memory value -> register
std::string store_value(DType t, const std::string& v);     // register -> memory value
std::string inst_code(const KernelIR& ir, const KernelInst& in, int r);  // writes r<r>

// Coordinates c_d of flat index `idx` over `dims` (row-major), only those in `used`.
std::string coords(const std::string& idx, const Shape& dims, const std::string& it,
                   const std::vector<bool>& used);
// Element offset of input `i` from the coordinates over dims [0, upto).
std::string offset(const LoopLayout& l, size_t i, int upto);
// The dims over [0, upto) that some input indexing by coordinates steps along
// (full-shape inputs index by the flat index instead when `flat_full`).
std::vector<bool> used_dims(const LoopLayout& l, int upto, bool flat_full);
// Kernel parameters: input pointers, output pointers, then `count` of type `it`.
std::string params(const KernelIR& ir, const std::string& it, const std::string& count);

// Shared-memory row cache of a block-per-row kernel: each per-element input that
// several passes read gets len elements (its memory type) at a 16-byte aligned
// offset; -1 for the others. Returns the bytes.
int64_t row_shared_layout(const KernelIR& ir, const LoopLayout& l, std::vector<int64_t>& offset);
// The kernel of a region closed by reductions: one warp (rows_per_block 8) or one
// block of `threads` per row; with `shared_offset` (row_shared_layout) the inputs
// several passes read come from shared memory.
std::string rows_kernel(const Plan& p, const std::string& name, int rows_per_block, int threads,
                        const std::vector<int64_t>& shared_offset = {});

}  // namespace ds::codegen::cuda::detail
