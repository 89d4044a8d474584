// Graph IR: an append-only list of nodes (so always acyclic, in topological order).
// Values are symbolic Tensors that point at (node, output).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "ds/tensor.h"

namespace ds {

struct OpDef;

struct TensorType {
  DType dtype = DType::Float32;
  Shape shape;
  bool operator==(const TensorType&) const = default;
  std::string str() const;  // "float32[None, 784]"
};

using Attr = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>,
                          std::vector<double>, DType, Tensor>;
using AttrMap = std::map<std::string, Attr>;
std::string attr_str(const Attr& a);

struct Node {
  int id = -1;
  const OpDef* op = nullptr;
  std::string name;  // placeholder name, or a user label; may be empty
  std::vector<ValueRef> inputs;
  AttrMap attrs;
  std::vector<TensorType> outputs;
  std::string label() const;  // "%7 matmul 'c'"
};

struct GraphData {
  std::vector<Node> nodes;
  std::vector<std::pair<std::string, ValueRef>> outputs;  // explicit outputs, if any
  std::map<std::string, int> placeholders;                // name -> node id
};

class Graph {
 public:
  Graph();
  explicit Graph(std::shared_ptr<GraphData> d) : d_(std::move(d)) {}

  // Inputs. Use ds::dyn in `shape` for a symbolic extent (e.g. the batch).
  Tensor placeholder(const std::string& name, const Shape& shape,
                     DType dtype = DType::Float32);
  Tensor constant(const Tensor& value, const std::string& name = "");
  // Adds an op node (inferring its output types) and returns its outputs.
  std::vector<Tensor> add(const std::string& op, const std::vector<Tensor>& inputs,
                          const AttrMap& attrs = {}, const std::string& name = "");
  // Marks an output. Without explicit outputs, every unused value is an output.
  void output(const Tensor& value, const std::string& name = "");

  // Convenience methods for common ops (any op: add()).
  Tensor matmul(const Tensor& a, const Tensor& b, const std::string& name = "");
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = {},
                const std::string& name = "");
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias = {},
                const std::vector<int64_t>& stride = {1, 1},
                const std::vector<int64_t>& padding = {0, 0}, const std::string& name = "");
  Tensor relu(const Tensor& x, const std::string& name = "");
  Tensor softmax(const Tensor& x, int64_t axis = -1, const std::string& name = "");

  const std::vector<Node>& nodes() const { return d_->nodes; }
  const Node& node(int id) const;
  const TensorType& type(ValueRef v) const;
  Tensor value(ValueRef v) const;  // the symbolic tensor for v
  // The outputs: explicit ones, else unused values named after their node.
  std::vector<std::pair<std::string, ValueRef>> outputs() const;
  std::vector<int> placeholder_ids() const;

  void verify() const;         // throws Error naming the bad node
  std::string str() const;     // text form
  std::string to_dot() const;  // Graphviz
  uint64_t hash() const;       // structural: ops, attrs, types, wiring (not names)

  const std::shared_ptr<GraphData>& data() const { return d_; }
  bool same(const Graph& o) const { return d_ == o.d_; }

 private:
  std::shared_ptr<GraphData> d_;
};

}  // namespace ds
