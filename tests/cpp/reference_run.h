// The tests' reference interpreter: runs every node of a graph with its OpDef's
// float64 reference kernel (no fast kernels, no passes).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ds/ds.h"
#include "ds/op.h"
#include "runtime/dispatch.h"

namespace ds::reference {

inline std::map<std::string, Tensor> reference_run(const Graph& g,
                                                   const std::map<std::string, Tensor>& feeds) {
  std::map<std::pair<int, int>, Tensor> values;
  for (const Node& n : g.nodes()) {
    if (n.op->name == "placeholder") {
      values[{n.id, 0}] = feeds.at(n.name);
      continue;
    }
    std::vector<Tensor> in;
    std::vector<TensorType> types;
    for (const ValueRef& v : n.inputs) {
      in.push_back(values.at({v.node, v.output}));
      types.push_back(g.type(v));
    }
    OpContext ctx{*n.op, n.attrs, types, n.label()};
    const KernelEntry reference{n.op->reference, {}, "reference"};
    auto out = run_kernel(ctx, reference, in, n.outputs);
    for (size_t o = 0; o < out.size(); ++o) values[{n.id, static_cast<int>(o)}] = out[o];
  }
  std::map<std::string, Tensor> result;
  for (const auto& [name, v] : g.outputs()) result[name] = values.at({v.node, v.output});
  return result;
}

}  // namespace ds::reference
