// Dead-code elimination: drops nodes that reach no output. Placeholders stay
// (they are the executable's inputs even when unused).
#include "ds/op.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {

Graph dead_code_elimination(const Graph& g) {
  const auto& nodes = g.nodes();
  std::vector<bool> live(nodes.size(), false);
  for (const auto& [_, v] : g.outputs()) live[v.node] = true;
  for (int i = static_cast<int>(nodes.size()) - 1; i >= 0; --i)
    if (live[i])
      for (const ValueRef& v : nodes[i].inputs) live[v.node] = true;
  Rewriter rw(g);
  return rw.run([&](const Node& n) { return !live[n.id] && n.op->name != "placeholder"; });
}

}  // namespace ds::passes
