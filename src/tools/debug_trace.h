// The debugger's traced step: forward (layer by layer for a Sequential, so each
// layer's output is an activation), loss and gradients in one uncompiled graph,
// with each node attributed to a layer and a phase.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ds/optim.h"

namespace ds::debug::detail {

struct TracedStep {
  Graph graph;
  Tensor loss, output;
  std::vector<std::pair<std::string, Tensor>> activations;  // (name, value), output last
  std::vector<std::pair<std::string, Tensor>> grads;        // (parameter name, gradient)
  std::vector<std::string> layer;  // per node id: module path, empty when unknown
  std::vector<std::string> phase;  // per node id: "input", "forward", "loss", "backward"
};

// Placeholders: "param:<name>", "buffer:<name>", "input", "target".
TracedStep trace_step(nn::Module& model, const optim::LossFn& loss, const TensorType& input,
                      const TensorType& target);

}  // namespace ds::debug::detail
