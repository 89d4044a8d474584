// The device-neutral op namespace: ds::hdl::matmul, ds::hdl::conv2d, ...
#pragma once

#include "ds/ops.h"

namespace ds::hdl {
using namespace ::ds;  // every op of ds/ops.h, under the device-neutral name
}
