// Rebuilds a graph node by node (graphs are append-only, so passes produce a new
// graph). A pass copies the nodes it keeps and maps the ones it replaces.
#pragma once

#include <map>
#include <vector>

#include "ds/graph.h"

namespace ds::passes {

class Rewriter {
 public:
  explicit Rewriter(const Graph& src);

  const Graph& src() const { return src_; }
  Graph& dst() { return dst_; }
  // The new value standing for an old one.
  const Tensor& map(ValueRef old) const;
  void set(ValueRef old, const Tensor& now) { map_[{old.node, old.output}] = now; }
  std::vector<Tensor> mapped_inputs(const Node& n) const;
  // Re-adds `n` (same op, attrs, name) on mapped inputs and maps its outputs.
  void copy(const Node& n);
  // Copies every node, letting `replace` handle the ones it returns true for.
  template <typename F> Graph run(F&& replace) {
    for (const Node& n : src_.nodes())
      if (!replace(n)) copy(n);
    return finish();
  }
  // Re-creates the outputs (names kept) and returns the new graph.
  Graph finish();

 private:
  Graph src_;
  Graph dst_;
  std::map<std::pair<int, int>, Tensor> map_;
};

// The nodes reading each value of `g`, by (node, output): ids in graph order, -1
// for each graph output it is. Values nobody reads have no entry.
using ValueReaders = std::map<std::pair<int, int>, std::vector<int>>;
ValueReaders value_readers(const Graph& g);

// Is `t` a constant node of its graph? Then returns its value in `value`.
bool constant_value(const Graph& g, ValueRef v, Tensor* value);

}  // namespace ds::passes
