// See cross_entropy_low_precision.h.
#include "passes/cross_entropy_low_precision.h"

#include <map>
#include <set>

#include "ds/op.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

bool is_low(DType t) { return t == DType::BFloat16 || t == DType::Float16; }

// The low-precision value a float32 value of the new graph widens, through
// reshapes (re-added on the narrow value, once per value); undefined if none.
class NarrowSource {
 public:
  explicit NarrowSource(Graph& dst) : dst_(dst) {}

  Tensor of(const Tensor& t) {
    const int id = t.value().node;
    if (const auto it = found_.find(id); it != found_.end()) return it->second;
    const Node& n = dst_.node(id);
    Tensor low;
    if (n.op->name == "cast" && t.value().output == 0 && is_low(dst_.type(n.inputs[0]).dtype) &&
        n.outputs[0].dtype == DType::Float32) {
      low = dst_.value(n.inputs[0]);
    } else if (n.op->name == "reshape") {
      const Tensor inner = of(dst_.value(n.inputs[0]));
      if (inner.defined()) low = dst_.add("reshape", {inner}, n.attrs)[0];
    }
    found_[id] = low;
    return low;
  }

 private:
  Graph& dst_;
  std::map<int, Tensor> found_;
};

// Every reader of the gradient is a cast to `low`.
bool only_cast_to(const Graph& g, const std::vector<int>& rs, DType low) {
  if (rs.empty()) return false;
  for (int id : rs) {
    if (id < 0) return false;
    const Node& n = g.node(id);
    if (n.op->name != "cast" || n.outputs[0].dtype != low) return false;
  }
  return true;
}

}  // namespace

Graph cross_entropy_low_precision(const Graph& g) {
  Rewriter rw(g);
  NarrowSource narrow(rw.dst());
  const ValueReaders read_by = value_readers(g);
  std::set<int> narrowed_backward;  // source ids of backward nodes now writing the low type
  return rw.run([&](const Node& n) {
    const std::string& op = n.op->name;
    if (op == "cast" && narrowed_backward.count(n.inputs[0].node)) {
      rw.set({n.id, 0}, rw.map(n.inputs[0]));
      return true;
    }
    if (op != "softmax_cross_entropy" && op != "softmax_cross_entropy_backward") return false;
    if (g.type(n.inputs[0]).dtype != DType::Float32) return false;
    std::vector<Tensor> in = rw.mapped_inputs(n);
    const bool backward = op == "softmax_cross_entropy_backward";
    const auto rs = read_by.find({n.id, 0});
    if (backward && rs == read_by.end()) return false;
    const Tensor low = narrow.of(in[0]);
    if (!low.defined() || (backward && !only_cast_to(g, rs->second, low.dtype()))) return false;
    in[0] = low;
    const std::vector<Tensor> outs = rw.dst().add(op, in, n.attrs, n.name);
    for (size_t i = 0; i < outs.size(); ++i) rw.set({n.id, static_cast<int>(i)}, outs[i]);
    if (backward) narrowed_backward.insert(n.id);
    return true;
  });
}

}  // namespace ds::passes
