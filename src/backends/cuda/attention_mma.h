// Shared by the tensor-core flash-attention kernels (attention_mma*.cpp).
#pragma once

#include <cstddef>
#include <string>

#include "ds/op.h"

namespace ds::cuda {

// Warps per block of the forward's row loop (ds_flash_rows, also the backward's
// lse pass): two 4-warp blocks share an SM (about 230 registers a thread).
constexpr int kFlashRowWarps = 4;
// m-tiles (16 query rows each) per warp of that loop: every K/V fragment a warp
// loads serves all of them.
int flash_row_tiles(int64_t d);
// The device code both tensor-core kernels start with: D, WARPS (per block),
// MI (flash_row_tiles), tile constants, mma, packing, staging, fragment loads
// and stores, and the forward's row loop, for bf16 (else fp16) values.
std::string flash_mma_common(DType t, int64_t d, int warps);
// bf16/fp16 q, k, v (and for the backward op out and grad_out) of one dtype, v's
// head size equal to q's, a multiple of 16 up to 128, a positive scale (or 0:
// the default); a device with tensor cores.
bool flash_mma_supported(const OpContext& c);
// Device memory for per-row log-sum-exp and delta of the backward kernels:
// grown only and kept for the process (a captured CUDA graph may still use an
// older buffer).
void* attention_scratch(int device, size_t bytes);

}  // namespace ds::cuda
