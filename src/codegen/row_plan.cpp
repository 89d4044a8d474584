#include "codegen/row_plan.h"

#include <algorithm>

namespace ds::codegen {

RowPlan plan_rows(const KernelIR& ir) {
  RowPlan plan;
  const int nin = static_cast<int>(ir.inputs.size());
  plan.row = ir.row_registers();
  plan.depth.assign(ir.num_registers(), 0);
  int passes = 1;
  for (size_t i = 0; i < ir.insts.size(); ++i) {
    const KernelInst& in = ir.insts[i];
    int d = 0;
    for (int a : in.args) d = std::max(d, plan.depth[a]);
    if (is_kernel_reduction(in.op)) ++d;  // completed by the pass after its operand's
    plan.depth[nin + i] = d;
    passes = std::max(passes, d);
  }
  const int reduce_pass = ir.reduce ? plan.depth[ir.reduce->reg] + 1 : 0;
  for (size_t o = 0; o < ir.outputs.size(); ++o)
    if (!plan.row[ir.outputs[o]]) passes = std::max(passes, plan.depth[ir.outputs[o]] + 1);
  passes = std::max(passes, reduce_pass);
  plan.passes.resize(passes);
  for (size_t i = 0; i < ir.insts.size(); ++i) {
    const int r = nin + static_cast<int>(i);
    if (!plan.row[r]) continue;
    RowPass& p = plan.passes[plan.depth[r] - 1];
    (is_kernel_reduction(ir.insts[i].op) ? p.reductions : p.row_insts).push_back(r);
  }
  if (ir.reduce) plan.passes[reduce_pass - 1].reductions.push_back(-1);
  for (size_t o = 0; o < ir.outputs.size(); ++o) {
    const int r = ir.outputs[o];
    if (plan.row[r])
      plan.row_outputs.push_back(static_cast<int>(o));
    else
      plan.passes[plan.depth[r]].outputs.push_back(static_cast<int>(o));
  }
  return plan;
}

}  // namespace ds::codegen
