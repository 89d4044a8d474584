// How a backend runs one row of a region with row reductions: a sequence of
// passes over the row. Pass p accumulates the reductions whose operand needs
// row registers known after pass p-1 at most (recomputing the elementwise values
// it reads, which is cheaper than a scratch row), stores the elementwise outputs
// that need nothing later, and then computes the row registers that its
// reductions complete (values costly to recompute are kept in a row buffer
// instead). Without row reductions the plan is one pass that stores
// every output (and accumulates the trailing `reduce`, if any).
#pragma once

#include <vector>

#include "codegen/kernel_ir.h"

namespace ds::codegen {

struct RowPass {
  std::vector<int> reductions;  // instruction registers; -1 stands for the trailing `reduce`
  std::vector<int> outputs;     // indices into ir.outputs (elementwise registers) stored here
  std::vector<int> row_insts;   // elementwise row registers computed after the pass, in order
  // Elementwise registers (and inputs) the pass reads or computes per element, in
  // register order; kept registers computed by an earlier pass are read back.
  std::vector<int> elements;
};

struct RowPlan {
  std::vector<bool> row;       // per register: holds one value per row
  std::vector<int> depth;      // row registers: the pass completing them; others: the last
                               // pass whose row registers they read (0: none)
  std::vector<RowPass> passes;      // passes[p - 1] is pass p
  std::vector<int> row_outputs;     // indices into ir.outputs stored once per row, at the end
  // Elementwise registers a later pass needs again whose computation involves a
  // transcendental op (exp in softmax): the pass computing them first stores them
  // in a row buffer of their dtype (kept[j] -> buffer j) that later passes read,
  // instead of recomputing them.
  std::vector<int> kept;
};

RowPlan plan_rows(const KernelIR& ir);

}  // namespace ds::codegen
