// Kernel IR -> CUDA C++ for NVRTC (the device prelude of backends/cuda/nvrtc_module
// is prepended when compiled). Every region gets a scalar grid-stride kernel; an
// elementwise region whose rows split into whole 16-byte vectors also gets a
// vectorized one (one 16-byte load/store per full-shape operand and step, a
// row-broadcast operand loaded as a vector of its row, a scalar broadcast loaded
// once). A region closed by a reduction runs one warp per row (short rows) or one
// block per row. Shapes are static, so extents and strides are literals.
// float16/bfloat16 operands are loaded and stored in their 16-bit format and
// computed in float32, each instruction writing one rounding its result (so an
// all-bfloat16 region moves 8 elements per 16-byte vector step).
//
// Kernel parameters, in order: one pointer per input, one per output (the
// reduction's last), then the item count (`n` elements, vector steps or rows) as
// the region's index type.
#pragma once

#include <cstdint>
#include <string>

#include "codegen/kernel_ir.h"

namespace ds::codegen::cuda {

struct CudaRegion {
  std::string source;          // extern "C" kernels, no prelude
  std::string scalar_kernel;   // elementwise: one element per step; rows: the row kernel
  std::string vector_kernel;   // "" when the region cannot vectorize
  int vector_lanes = 0;        // elements per vector step (16 bytes of the widest operand)
  bool rows = false;           // closed by a reduction
  int rows_per_block = 1;      // rows kernel: 8 warps of a 256-thread block, or 1 block
  int64_t items = 0;           // scalar kernel: elements, or rows
  int64_t vector_items = 0;    // vector steps
  bool wide_index = false;     // the count is a 64-bit `long long`, else `unsigned int`
  // Inputs/outputs the vector kernel reads/writes with vector accesses; their
  // base pointers must be 16-byte aligned.
  std::vector<bool> vector_inputs;
  // Rows too long for the registers whose inputs several passes read: a kernel of
  // shared_threads per row that first copies those inputs into shared_bytes of
  // dynamic shared memory, so the row is read from memory once ("" when none; a
  // device allowing less shared memory per block runs the rows kernel).
  std::string shared_kernel;
  int64_t shared_bytes = 0;
  int shared_threads = 0;
};

constexpr int kThreadsPerBlock = 256;
constexpr int kSharedRowThreads = 1024;
constexpr int64_t kMaxRowSharedBytes = 200 * 1024;  // a GPT-2 vocabulary row of float32
constexpr int kVectorUnroll = 4;  // vector steps per thread and loop trip (loads in flight)

CudaRegion emit_cuda_region(const KernelIR& ir);

// Compiles `source` (after the device prelude) with NVRTC for `arch` ("sm_90a")
// and returns the compiler log; throws Error with the log when compilation
// fails, UnavailableError in builds without CUDA. Needs no GPU.
std::string nvrtc_compile_log(const std::string& source, const std::string& arch);

}  // namespace ds::codegen::cuda
