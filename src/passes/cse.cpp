// Common-subexpression elimination: two nodes with the same op, inputs and
// attributes compute the same value (random ops excepted); constants with equal
// contents are merged too.
#include <map>

#include "ds/op.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

std::string key_of(const Node& n, const std::vector<Tensor>& inputs) {
  std::string k = n.op->name + "(";
  for (const Tensor& t : inputs)
    k += std::to_string(t.value().node) + ":" + std::to_string(t.value().output) + ",";
  k += ")";
  for (const auto& [name, a] : n.attrs) k += name + "=" + attr_str(a) + ";";
  return k;
}

std::string constant_key(const Tensor& t) {
  std::string k = std::string(dtype_name(t.dtype())) + shape_str(t.shape()) + ":";
  k.append(static_cast<const char*>(t.raw_data()), t.nbytes());
  return k;
}

}  // namespace

Graph common_subexpression_elimination(const Graph& g) {
  Rewriter rw(g);
  std::map<std::string, int> seen;  // key -> node id in the new graph
  constexpr size_t kMaxConstantBytes = 4096;  // only small constants are compared
  return rw.run([&](const Node& n) {
    if (n.op->name == "placeholder" || n.op->has(kRandom)) return false;
    std::string key;
    if (n.op->name == "constant") {
      const Tensor& v = std::get<Tensor>(n.attrs.at("value"));
      if (v.nbytes() > kMaxConstantBytes) return false;
      key = "const:" + constant_key(v);
    } else {
      key = key_of(n, rw.mapped_inputs(n));
    }
    auto it = seen.find(key);
    if (it == seen.end()) {
      rw.copy(n);
      seen[key] = rw.map({n.id, 0}).value().node;
      return true;
    }
    for (int i = 0; i < static_cast<int>(n.outputs.size()); ++i)
      rw.set({n.id, i}, rw.dst().value({it->second, i}));
    return true;
  });
}

}  // namespace ds::passes
