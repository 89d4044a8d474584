#include "ds/graph.h"

#include <functional>
#include <set>
#include <sstream>

#include "ds/op.h"
#include "ds/ops.h"

namespace ds {

std::string TensorType::str() const { return std::string(dtype_name(dtype)) + shape_str(shape); }

std::string attr_str(const Attr& a) {
  std::ostringstream os;
  std::visit(
      [&](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, int64_t> || std::is_same_v<V, double>) {
          os << v;
        } else if constexpr (std::is_same_v<V, bool>) {
          os << (v ? "true" : "false");
        } else if constexpr (std::is_same_v<V, std::string>) {
          os << '"' << v << '"';
        } else if constexpr (std::is_same_v<V, DType>) {
          os << dtype_name(v);
        } else if constexpr (std::is_same_v<V, Tensor>) {
          os << "tensor<" << dtype_name(v.dtype()) << shape_str(v.shape()) << ">";
        } else {
          os << "[";
          for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
          os << "]";
        }
      },
      a);
  return os.str();
}

std::string Node::label() const {
  std::string s = "%" + std::to_string(id) + " " + (op ? op->name : "?");
  if (!name.empty()) s += " '" + name + "'";
  return s;
}

Graph::Graph() : d_(std::make_shared<GraphData>()) {}

const Node& Graph::node(int id) const {
  DS_CHECK(id >= 0 && id < static_cast<int>(d_->nodes.size()), NotFoundError, "graph has no node %",
           id);
  return d_->nodes[id];
}

const TensorType& Graph::type(ValueRef v) const {
  const Node& n = node(v.node);
  DS_CHECK(v.output >= 0 && v.output < static_cast<int>(n.outputs.size()), NotFoundError,
           n.label(), " has no output ", v.output);
  return n.outputs[v.output];
}

Tensor Graph::value(ValueRef v) const {
  const TensorType& t = type(v);
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = t.shape;
  impl->strides = contiguous_strides(t.shape);
  impl->dtype = t.dtype;
  impl->graph = d_;
  impl->value = v;
  return Tensor(std::move(impl));
}

Tensor Graph::placeholder(const std::string& name, const Shape& shape, DType dtype) {
  DS_CHECK(!name.empty(), ValueError, "placeholder: a name is required");
  DS_CHECK(!d_->placeholders.count(name), ValueError, "placeholder '", name,
           "' is already defined in this graph");
  for (int64_t d : shape)
    DS_CHECK(d >= 0 || d == dyn, ShapeError, "placeholder '", name, "': extent ", d,
             " in shape ", shape_str(shape), " is invalid (use ds::dyn / None for symbolic)");
  Node n;
  n.id = static_cast<int>(d_->nodes.size());
  n.op = &get_op("placeholder");
  n.name = name;
  n.outputs = {TensorType{dtype, shape}};
  d_->placeholders[name] = n.id;
  d_->nodes.push_back(std::move(n));
  return value({static_cast<int>(d_->nodes.size()) - 1, 0});
}

Tensor Graph::constant(const Tensor& v, const std::string& name) {
  DS_CHECK(v.defined() && !v.is_symbolic(), ValueError, "constant: needs a concrete tensor");
  Node n;
  n.id = static_cast<int>(d_->nodes.size());
  n.op = &get_op("constant");
  n.name = name;
  n.attrs["value"] = v.contiguous();
  n.outputs = {TensorType{v.dtype(), v.shape()}};
  const int id = n.id;
  d_->nodes.push_back(std::move(n));
  return value({id, 0});
}

std::vector<Tensor> Graph::add(const std::string& op_name, const std::vector<Tensor>& inputs_in,
                               const AttrMap& attrs, const std::string& name) {
  const OpDef& op = get_op(op_name);
  Node n;
  n.id = static_cast<int>(d_->nodes.size());
  n.op = &op;
  n.name = name;
  const std::string where = n.label();
  const size_t count = checked_arity(op, inputs_in, op_name + " (" + where + "): ");
  std::vector<TensorType> in_types;
  for (size_t i = 0; i < count; ++i) {
    const Tensor& t = inputs_in[i];
    ValueRef v;
    if (t.is_symbolic()) {
      DS_CHECK(t.impl().graph == d_, ValueError, op_name, " (", where, "): input ", i,
               " belongs to another graph");
      v = t.value();
    } else {
      v = constant(t).value();
      n.id = static_cast<int>(d_->nodes.size());
    }
    n.inputs.push_back(v);
    in_types.push_back(type(v));
  }
  n.attrs = complete_attrs(op, attrs, op_name + " (" + where + "): ");
  OpContext ctx{op, n.attrs, in_types,
                "%" + std::to_string(n.id) + (name.empty() ? "" : " '" + name + "'")};
  n.outputs = op.infer(ctx);
  d_->nodes.push_back(std::move(n));
  std::vector<Tensor> outs;
  const Node& added = d_->nodes.back();
  for (size_t i = 0; i < added.outputs.size(); ++i)
    outs.push_back(value({added.id, static_cast<int>(i)}));
  return outs;
}

void Graph::output(const Tensor& v, const std::string& name) {
  DS_CHECK(v.is_symbolic() && v.impl().graph == d_, ValueError,
           "output: the tensor is not a value of this graph");
  std::string n = name;
  if (n.empty()) {
    const Node& node = d_->nodes[v.value().node];
    n = node.name.empty() ? "output" + std::to_string(d_->outputs.size()) : node.name;
  }
  for (const auto& [existing, _] : d_->outputs)
    DS_CHECK(existing != n, ValueError, "output: name '", n, "' is already an output");
  d_->outputs.emplace_back(n, v.value());
}

std::vector<std::pair<std::string, ValueRef>> Graph::outputs() const {
  if (!d_->outputs.empty()) return d_->outputs;
  std::set<std::pair<int, int>> used;
  for (const Node& n : d_->nodes)
    for (const ValueRef& v : n.inputs) used.insert({v.node, v.output});
  std::vector<std::pair<std::string, ValueRef>> outs;
  std::set<std::string> names;
  for (const Node& n : d_->nodes) {
    if (n.op->has(kSource)) continue;
    for (int i = 0; i < static_cast<int>(n.outputs.size()); ++i) {
      if (used.count({n.id, i})) continue;
      std::string name = n.name.empty() ? "%" + std::to_string(n.id) : n.name;
      if (n.outputs.size() > 1) name += ":" + std::to_string(i);
      while (names.count(name)) name += "_";
      names.insert(name);
      outs.emplace_back(name, ValueRef{n.id, i});
    }
  }
  return outs;
}

std::vector<int> Graph::placeholder_ids() const {
  std::vector<int> ids;
  for (const Node& n : d_->nodes)
    if (n.op->name == "placeholder") ids.push_back(n.id);
  return ids;
}

void Graph::verify() const {
  for (const Node& n : d_->nodes) {
    DS_CHECK(n.op, ValueError, "verify: node %", n.id, " has no op");
    std::vector<TensorType> in;
    for (const ValueRef& v : n.inputs) {
      DS_CHECK(v.node >= 0 && v.node < n.id, ValueError, "verify: ", n.label(),
               " uses %", v.node, ", which does not precede it");
      in.push_back(type(v));
    }
    if (n.op->has(kSource)) continue;
    OpContext ctx{*n.op, n.attrs, in, "%" + std::to_string(n.id)};
    auto inferred = n.op->infer(ctx);
    DS_CHECK(inferred.size() == n.outputs.size(), ValueError, "verify: ", n.label(), " has ",
             n.outputs.size(), " outputs, its op infers ", inferred.size());
    for (size_t i = 0; i < inferred.size(); ++i)
      DS_CHECK(inferred[i] == n.outputs[i], TypeError, "verify: ", n.label(), " output ", i,
               " is recorded as ", n.outputs[i].str(), " but infers as ", inferred[i].str());
  }
  for (const auto& [name, v] : outputs()) type(v);
}

std::string Graph::str() const {
  std::ostringstream os;
  auto ref = [](const ValueRef& v) {
    return "%" + std::to_string(v.node) + (v.output ? ":" + std::to_string(v.output) : "");
  };
  for (const Node& n : d_->nodes) {
    os << "%" << n.id << " = " << n.op->name;
    if (!n.name.empty()) os << " '" << n.name << "'";
    os << "(";
    for (size_t i = 0; i < n.inputs.size(); ++i) os << (i ? ", " : "") << ref(n.inputs[i]);
    os << ")";
    bool first = true;
    for (const auto& [k, v] : n.attrs) {
      os << (first ? " {" : ", ") << k << "=" << attr_str(v);
      first = false;
    }
    if (!first) os << "}";
    os << " : ";
    for (size_t i = 0; i < n.outputs.size(); ++i) os << (i ? ", " : "") << n.outputs[i].str();
    os << "\n";
  }
  for (const auto& [name, v] : outputs()) os << "output '" << name << "' = " << ref(v) << "\n";
  return os.str();
}

std::string Graph::to_dot() const {
  auto esc = [](std::string s) {
    std::string o;
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      o += c;
    }
    return o;
  };
  std::ostringstream os;
  os << "digraph deepseek {\n  node [shape=box, fontname=\"monospace\"];\n";
  for (const Node& n : d_->nodes) {
    os << "  n" << n.id << " [label=\"" << esc(n.label()) << "\\n";
    for (size_t i = 0; i < n.outputs.size(); ++i) os << (i ? ", " : "") << n.outputs[i].str();
    os << "\"" << (n.op->has(kSource) ? ", style=rounded" : "") << "];\n";
    for (const ValueRef& v : n.inputs) os << "  n" << v.node << " -> n" << n.id << ";\n";
  }
  for (const auto& [name, v] : outputs())
    os << "  out_" << v.node << "_" << v.output << " [label=\"" << esc(name)
       << "\", shape=ellipse];\n  n" << v.node << " -> out_" << v.node << "_" << v.output
       << ";\n";
  os << "}\n";
  return os.str();
}

namespace {
inline void mix(uint64_t& h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
}
uint64_t hash_bytes(const void* p, size_t n) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}
uint64_t hash_str(const std::string& s) { return hash_bytes(s.data(), s.size()); }
}  // namespace

uint64_t Graph::hash() const {
  uint64_t h = 0;
  for (const Node& n : d_->nodes) {
    mix(h, hash_str(n.op->name));
    if (n.op->name == "placeholder") mix(h, hash_str(n.name));  // feeds are named
    for (const ValueRef& v : n.inputs) {
      mix(h, static_cast<uint64_t>(v.node));
      mix(h, static_cast<uint64_t>(v.output));
    }
    for (const auto& [k, a] : n.attrs) {
      mix(h, hash_str(k));
      if (const Tensor* t = std::get_if<Tensor>(&a)) {
        mix(h, static_cast<uint64_t>(t->dtype()));
        for (int64_t d : t->shape()) mix(h, static_cast<uint64_t>(d));
        mix(h, hash_bytes(t->raw_data(), t->nbytes()));
      } else {
        mix(h, hash_str(attr_str(a)));
      }
    }
    for (const TensorType& t : n.outputs) mix(h, hash_str(t.str()));
  }
  for (const auto& [name, v] : outputs()) {
    mix(h, static_cast<uint64_t>(v.node));
    mix(h, static_cast<uint64_t>(v.output));
  }
  return h;
}

// Convenience methods.
Tensor Graph::matmul(const Tensor& a, const Tensor& b, const std::string& name) {
  return add("matmul", {a, b}, {}, name)[0];
}
Tensor Graph::linear(const Tensor& x, const Tensor& w, const Tensor& bias,
                     const std::string& name) {
  return add("linear", {x, w, bias}, {}, name)[0];
}
Tensor Graph::conv2d(const Tensor& x, const Tensor& w, const Tensor& bias,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                     const std::string& name) {
  return add("conv2d", {x, w, bias}, {{"stride", stride}, {"padding", padding}}, name)[0];
}
Tensor Graph::relu(const Tensor& x, const std::string& name) { return add("relu", {x}, {}, name)[0]; }
Tensor Graph::softmax(const Tensor& x, int64_t axis, const std::string& name) {
  return add("softmax", {x}, {{"axis", axis}}, name)[0];
}

}  // namespace ds
