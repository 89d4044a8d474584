// bfloat16 on the CPU: native kernels (oneDNN bf16 primitives, on CPUs with the
// avx512_bf16 instructions) or the float32 emulation (low_precision_kernels.cpp),
// which computes the same thing — bf16 operands, float32 accumulation, one
// rounding — on any CPU.
#pragma once

namespace ds::cpu {

// Whether native bf16 kernels may run where the CPU has them. On by default;
// DS_BF16=emulate in the environment turns it off at start-up (to measure or
// compare the emulation), and tests switch it to check both paths.
bool native_bf16_allowed();
void allow_native_bf16(bool on);

}  // namespace ds::cpu
