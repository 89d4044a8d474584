// Which fast kernels are registered for an op: lets tests and tools list the ops
// a device kind runs only through the reference kernel (or a fallback).
#pragma once

#include <string>
#include <vector>

#include "ds/op.h"

namespace ds {

// The impl names ("nvrtc", "cudnn", ...) of the fast kernels of `op` on `device`,
// highest priority first; empty when only the reference kernel exists.
std::vector<std::string> kernel_impls(const std::string& op, DeviceKind device);

}  // namespace ds
