// ds::nn: modules, layers, initializations and losses (mirrors torch.nn).
#pragma once

#include "ds/nn/init.h"
#include "ds/nn/layers.h"
#include "ds/nn/losses.h"
#include "ds/nn/module.h"
