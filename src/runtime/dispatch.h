// Running one op on concrete tensors: shared by eager mode and the executor.
#pragma once

#include <vector>

#include "ds/op.h"

namespace ds {

// Allocates outputs of `types` and runs `kernel` (inputs made contiguous first).
std::vector<Tensor> run_kernel(const OpContext& ctx, const KernelEntry& kernel,
                               const std::vector<Tensor>& inputs,
                               const std::vector<TensorType>& types);

// Runs `kernel` writing into preallocated `outputs`.
void run_kernel_into(const OpContext& ctx, const KernelEntry& kernel,
                     const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs);

}  // namespace ds
