// deepseek: the umbrella header.
#pragma once

#include "ds/autodiff.h"
#include "ds/compile.h"
#include "ds/device.h"
#include "ds/dtype.h"
#include "ds/error.h"
#include "ds/graph.h"
#include "ds/hdl.h"
#include "ds/nn.h"
#include "ds/op.h"
#include "ds/ops.h"
#include "ds/optim.h"
#include "ds/runtime.h"
#include "ds/shape.h"
#include "ds/tensor.h"
