// A ds Graph as a TensorFlow GraphDef, for TensorBoard's Graphs dashboard. Built
// from the graph itself (no tracing), so any graph converts.
#include <set>
#include <vector>

#include "ds/op.h"
#include "tools/tensorboard_proto.h"

namespace ds::tensorboard::proto {

namespace {

// NodeDef and AttrValue fields.
enum NodeField { kName = 1, kOp = 2, kInput = 3, kAttr = 5 };
enum AttrField { kList = 1, kS = 2, kI = 3, kF = 4, kB = 5, kType = 6, kShape = 7 };
constexpr int kGraphNode = 1, kGraphVersions = 4;
constexpr int kProducerVersion = 22;  // what torch.utils.tensorboard writes

tools::ProtoWriter shape_proto(const Shape& shape) {
  tools::ProtoWriter s;
  for (int64_t d : shape) {
    tools::ProtoWriter dim;
    dim.varint(1, d == dyn ? -1 : d);  // TensorFlow's unknown extent is -1 too
    s.message(2, dim);
  }
  return s;
}

tools::ProtoWriter attr_value(const Attr& a) {
  tools::ProtoWriter v;
  std::visit(
      [&](const auto& x) {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, int64_t>) {
          v.varint(kI, x);
        } else if constexpr (std::is_same_v<X, double>) {
          v.f32(kF, static_cast<float>(x));
        } else if constexpr (std::is_same_v<X, bool>) {
          v.varint(kB, x ? 1 : 0);
        } else if constexpr (std::is_same_v<X, std::string>) {
          v.bytes(kS, x);
        } else if constexpr (std::is_same_v<X, DType>) {
          v.varint(kType, tf_dtype(x));
        } else if constexpr (std::is_same_v<X, std::vector<int64_t>>) {
          tools::ProtoWriter list;
          list.packed_varint(kI, x);
          v.message(kList, list);
        } else if constexpr (std::is_same_v<X, std::vector<double>>) {
          const std::vector<float> f(x.begin(), x.end());
          tools::ProtoWriter list;
          list.packed_f32(kF, f);
          v.message(kList, list);
        } else {
          // A constant's value: described, not embedded (weights would bloat the file).
          v.bytes(kS, attr_str(a));
        }
      },
      a);
  return v;
}

void add_attr(tools::ProtoWriter& node, const std::string& key, const tools::ProtoWriter& value) {
  tools::ProtoWriter entry;
  entry.bytes(1, key).message(2, value);
  node.message(kAttr, entry);
}

// Unique GraphDef names: the ds name with '.' scopes as '/', else "<op>_<id>".
std::vector<std::string> node_names(const Graph& graph) {
  std::vector<std::string> names;
  std::set<std::string> used;
  for (const Node& n : graph.nodes()) {
    std::string name = n.name;
    for (char& c : name)
      if (c == '.') c = '/';
    if (name.empty()) name = detail::cat(n.op->name, "_", n.id);
    while (used.count(name)) name = detail::cat(name, "_", n.id);
    used.insert(name);
    names.push_back(std::move(name));
  }
  return names;
}

}  // namespace

int tf_dtype(DType t) {
  switch (t) {
    case DType::Float32: return 1;
    case DType::Float64: return 2;
    case DType::Int32: return 3;
    case DType::UInt8: return 4;
    case DType::Int8: return 6;
    case DType::Int64: return 9;
    case DType::Bool: return 10;
    case DType::BFloat16: return 14;
    case DType::Float16: return 19;
  }
  return 0;
}

tools::ProtoWriter graph_def(const Graph& graph) {
  const std::vector<std::string> names = node_names(graph);
  tools::ProtoWriter def;
  for (const Node& n : graph.nodes()) {
    tools::ProtoWriter node;
    node.bytes(kName, names[static_cast<size_t>(n.id)]).bytes(kOp, n.op->name);
    for (const ValueRef& in : n.inputs) {
      const std::string& producer = names[static_cast<size_t>(in.node)];
      node.bytes(kInput, in.output == 0 ? producer : detail::cat(producer, ":", in.output));
    }
    for (const auto& [key, value] : n.attrs) add_attr(node, key, attr_value(value));
    // TensorBoard labels edges with `_output_shapes` and shows `dtype`.
    tools::ProtoWriter shapes;
    for (const TensorType& out : n.outputs) shapes.message(kShape, shape_proto(out.shape));
    tools::ProtoWriter shapes_attr;
    shapes_attr.message(kList, shapes);
    add_attr(node, "_output_shapes", shapes_attr);
    if (!n.attrs.count("dtype") && !n.outputs.empty()) {
      tools::ProtoWriter dtype_attr;
      dtype_attr.varint(kType, tf_dtype(n.outputs[0].dtype));
      add_attr(node, "dtype", dtype_attr);
    }
    def.message(kGraphNode, node);
  }
  tools::ProtoWriter versions;
  versions.varint(1, kProducerVersion);
  def.message(kGraphVersions, versions);
  return def;
}

}  // namespace ds::tensorboard::proto
