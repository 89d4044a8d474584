// SummaryWriter::add_graph for an nn::Module: forward() runs once on a symbolic
// input, with every parameter and buffer slot holding a named graph constant, so
// the graph is built by the layers' own code (no tracing of Python or C++ control
// flow). Op nodes that read a parameter go into that module's name scope.
#include "ds/nn/module.h"
#include "ds/op.h"
#include "ds/tensorboard.h"

namespace ds::tensorboard {

namespace {

// Puts the module's own tensors back whatever happens during forward().
class SlotSwap {
 public:
  explicit SlotSwap(nn::Module& m) {
    for (auto& [name, slot] : m.parameter_slots()) saved_.push_back({name, slot, *slot});
    for (auto& [name, slot] : m.buffer_slots()) saved_.push_back({name, slot, *slot});
  }
  ~SlotSwap() {
    for (auto& s : saved_) *s.slot = s.value;
  }
  SlotSwap(const SlotSwap&) = delete;
  SlotSwap& operator=(const SlotSwap&) = delete;
  void to_constants(Graph& g) {
    for (auto& s : saved_)
      if (s.value.defined()) *s.slot = g.constant(s.value, s.name);
  }

 private:
  struct Saved {
    std::string name;
    Tensor* slot;
    Tensor value;
  };
  std::vector<Saved> saved_;
};

// "block.0.weight" -> "block.0"; "" for a top-level parameter.
std::string module_path(const std::string& parameter) {
  const auto dot = parameter.rfind('.');
  return dot == std::string::npos ? "" : parameter.substr(0, dot);
}

}  // namespace

Graph module_graph(nn::Module& model, const Shape& input_shape, DType input_dtype) {
  Graph g;
  const Tensor x = g.placeholder("input", input_shape, input_dtype);
  {
    SlotSwap swap(model);
    swap.to_constants(g);
    g.output(model.forward(x), "output");
  }
  // Scope each unnamed op by the module whose parameter it reads.
  auto& nodes = g.data()->nodes;
  for (Node& n : nodes) {
    if (!n.name.empty()) continue;
    for (const ValueRef& in : n.inputs) {
      const Node& producer = nodes[static_cast<size_t>(in.node)];
      if (producer.op->name != "constant" || producer.name.empty()) continue;
      const std::string scope = module_path(producer.name);
      if (!scope.empty()) n.name = detail::cat(scope, ".", n.op->name, "_", n.id);
      break;
    }
  }
  return g;
}

void SummaryWriter::add_graph(nn::Module& model, const Shape& input_shape, DType input_dtype) {
  add_graph(module_graph(model, input_shape, input_dtype));
}

}  // namespace ds::tensorboard
