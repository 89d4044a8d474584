#include "codegen/row_plan.h"

#include <algorithm>
#include <set>
#include <string>

namespace ds::codegen {
namespace {

bool transcendental(const std::string& op) {
  static const std::set<std::string> ops = {"exp",     "log",     "log1p", "expm1", "sin",
                                            "cos",     "tanh",    "erf",   "pow",   "sigmoid",
                                            "softplus", "silu",   "gelu",  "elu"};
  return ops.count(op) > 0;
}

// Marks the elementwise registers (and inputs) that computing `r` per element
// reads, stopping at row registers and at `leaves`.
void cone(const KernelIR& ir, const RowPlan& plan, int r, const std::set<int>& leaves,
          std::vector<bool>& in_cone) {
  if (in_cone[r] || plan.row[r]) return;
  in_cone[r] = true;
  if (r < static_cast<int>(ir.inputs.size()) || leaves.count(r)) return;
  for (int a : ir.insts[r - ir.inputs.size()].args) cone(ir, plan, a, leaves, in_cone);
}

}  // namespace

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

  // Per pass, the registers whose values it needs per element.
  auto roots = [&](const RowPass& p) {
    std::vector<int> out;
    for (int red : p.reductions)
      out.push_back(red < 0 ? ir.reduce->reg : ir.insts[red - nin].args[0]);
    for (int o : p.outputs) out.push_back(ir.outputs[o]);
    return out;
  };
  // Registers needed by two passes or more, costly to recompute, are kept.
  std::vector<int> uses(ir.num_registers(), 0);
  for (const RowPass& p : plan.passes) {
    std::vector<bool> in_cone(ir.num_registers(), false);
    for (int r : roots(p)) cone(ir, plan, r, {}, in_cone);
    for (int r = 0; r < ir.num_registers(); ++r) uses[r] += in_cone[r];
  }
  std::vector<bool> costly(ir.num_registers(), false);
  for (int r = nin; r < ir.num_registers(); ++r) {
    const KernelInst& in = ir.insts[r - nin];
    if (plan.row[r]) continue;
    costly[r] = transcendental(in.op);
    for (int a : in.args) costly[r] = costly[r] || (!plan.row[a] && costly[a]);
  }
  for (int r = nin; r < ir.num_registers(); ++r)
    if (uses[r] >= 2 && costly[r]) plan.kept.push_back(r);
  // The passes' element lists, reading kept values back after their first pass;
  // a kept value that no later pass reads back (a kept value computed from it is
  // read instead) is not stored.
  std::set<int> stored, read_back;
  for (RowPass& p : plan.passes) {
    std::vector<bool> in_cone(ir.num_registers(), false);
    for (int r : roots(p)) cone(ir, plan, r, stored, in_cone);
    for (int r = 0; r < ir.num_registers(); ++r) {
      if (!in_cone[r]) continue;
      p.elements.push_back(r);
      if (stored.count(r)) read_back.insert(r);
    }
    for (int r : plan.kept)
      if (in_cone[r]) stored.insert(r);
  }
  std::erase_if(plan.kept, [&](int r) { return !read_back.count(r); });
  return plan;
}

}  // namespace ds::codegen
