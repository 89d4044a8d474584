#include "passes/rewriter.h"

#include "ds/op.h"

namespace ds::passes {

Rewriter::Rewriter(const Graph& src) : src_(src) {}

const Tensor& Rewriter::map(ValueRef old) const {
  auto it = map_.find({old.node, old.output});
  DS_CHECK(it != map_.end(), ValueError, "rewriter: value %", old.node, ":", old.output,
           " was used before it was mapped");
  return it->second;
}

std::vector<Tensor> Rewriter::mapped_inputs(const Node& n) const {
  std::vector<Tensor> in;
  for (const ValueRef& v : n.inputs) in.push_back(map(v));
  return in;
}

void Rewriter::copy(const Node& n) {
  std::vector<Tensor> outs;
  if (n.op->name == "placeholder") {
    outs = {dst_.placeholder(n.name, n.outputs[0].shape, n.outputs[0].dtype)};
  } else if (n.op->name == "constant") {
    outs = {dst_.constant(std::get<Tensor>(n.attrs.at("value")), n.name)};
  } else {
    outs = dst_.add(n.op->name, mapped_inputs(n), n.attrs, n.name);
  }
  for (size_t i = 0; i < outs.size(); ++i) set({n.id, static_cast<int>(i)}, outs[i]);
}

Graph Rewriter::finish() {
  for (const auto& [name, v] : src_.outputs()) dst_.output(map(v), name);
  return dst_;
}

ValueReaders value_readers(const Graph& g) {
  ValueReaders r;
  for (const Node& n : g.nodes())
    for (const ValueRef& v : n.inputs) r[{v.node, v.output}].push_back(n.id);
  for (const auto& [_, v] : g.outputs()) r[{v.node, v.output}].push_back(-1);
  return r;
}

bool constant_value(const Graph& g, ValueRef v, Tensor* value) {
  const Node& n = g.node(v.node);
  if (n.op->name != "constant") return false;
  if (value) *value = std::get<Tensor>(n.attrs.at("value"));
  return true;
}

}  // namespace ds::passes
