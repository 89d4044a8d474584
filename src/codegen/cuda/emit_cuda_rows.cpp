// The rows kernels of fused regions closed by reductions (see emit_cuda.h).
#include <sstream>

#include "codegen/cuda/emit_cuda_parts.h"
#include "codegen/row_plan.h"

namespace ds::codegen::cuda::detail {
namespace {

// The registers computing `r` per element reads (inputs and elementwise
// instructions), stopping at row registers and at registers `stop` marks
// (they are in the cone, their operands are not).
void element_cone(const KernelIR& ir, const RowPlan& plan, int r, std::vector<bool>& in_cone,
                  const std::vector<bool>& stop) {
  if (in_cone[r] || plan.row[r]) return;
  in_cone[r] = true;
  if (stop[r]) return;
  if (r >= static_cast<int>(ir.inputs.size()))
    for (int a : ir.insts[r - ir.inputs.size()].args) element_cone(ir, plan, a, in_cone, stop);
}

// The per-element values each pass computes (inputs included). With `keep`, a
// register of plan.kept that an earlier pass computed is read back instead of
// recomputed (the cone stops there).
struct PassCones {
  std::vector<std::vector<bool>> cone;       // per pass, per register
  std::vector<std::vector<bool>> read_back;  // per pass: kept registers read back
  std::vector<int> first;                    // per register: the pass computing a kept one, or -1
};

PassCones pass_cones(const KernelIR& ir, const RowPlan& plan, bool keep) {
  const int nin = static_cast<int>(ir.inputs.size());
  PassCones c;
  c.first.assign(ir.num_registers(), -1);
  std::vector<bool> computed(ir.num_registers(), false);  // kept, by an earlier pass
  for (size_t pi = 0; pi < plan.passes.size(); ++pi) {
    const RowPass& pass = plan.passes[pi];
    std::vector<bool> cone(ir.num_registers(), false);
    for (int red : pass.reductions)
      element_cone(ir, plan, red < 0 ? ir.reduce->reg : ir.insts[red - nin].args[0], cone,
                   computed);
    for (int o : pass.outputs) element_cone(ir, plan, ir.outputs[o], cone, computed);
    std::vector<bool> read_back(ir.num_registers(), false);
    for (int r = 0; r < ir.num_registers(); ++r) read_back[r] = cone[r] && computed[r];
    if (keep)
      for (int r : plan.kept)
        if (cone[r] && c.first[r] < 0) c.first[r] = static_cast<int>(pi);
    c.cone.push_back(std::move(cone));
    c.read_back.push_back(std::move(read_back));
    for (int r = 0; r < ir.num_registers(); ++r) computed[r] = c.first[r] >= 0;
  }
  return c;
}

}  // namespace

int64_t row_shared_layout(const KernelIR& ir, const LoopLayout& l, std::vector<int64_t>& offset) {
  const RowPlan plan = plan_rows(ir);
  const auto cones = pass_cones(ir, plan, false).cone;
  const int64_t len = l.dims.back();
  int64_t bytes = 0;
  offset.assign(ir.inputs.size(), -1);
  for (size_t i = 0; i < ir.inputs.size(); ++i) {
    if (l.strides[i].back() == 0) continue;  // constant along the row
    int passes = 0;
    for (const auto& cone : cones) passes += cone[i];
    if (passes < 2) continue;
    offset[i] = bytes;
    bytes += (len * mem_size(ir.inputs[i].dtype) + 15) / 16 * 16;
  }
  return bytes;
}

// One warp (rows_per_block 8) or one block of `threads` per row. The row runs in
// the passes of plan_rows: each pass strides over the row computing the
// per-element values its reductions and outputs need, combines the lanes'
// partial reductions (shuffles, or a block reduction), then computes the row
// registers they give. Sums accumulate in double, max in the register's type
// (NaN-propagating). With several passes the row's inputs are read once: at
// most 32 elements per thread stay in registers; longer rows, given a shared
// layout (`shared_offset`, see row_shared_layout), copy the inputs that several
// passes read into shared memory first. Either way a thread only reads back the
// elements it stored (the same j), so no barrier is needed.
std::string rows_kernel(const Plan& p, const std::string& name, int rows_per_block, int threads,
                        const std::vector<int64_t>& shared_offset) {
  const KernelIR& ir = p.ir;
  const LoopLayout& l = p.layout;
  const RowPlan plan = plan_rows(ir);
  const int k = static_cast<int>(l.dims.size());
  const int nin = static_cast<int>(ir.inputs.size());
  const int64_t len = l.dims.back();
  const bool warp = rows_per_block > 1;
  const std::string it = p.index;
  std::ostringstream os;
  os << "extern \"C\" __global__ void __launch_bounds__(" << threads << ") " << name << "("
     << params(ir, it, "rows") << ") {\n";
  if (warp)
    os << "  const " << it << " row = blockIdx.x * " << rows_per_block
       << " + (threadIdx.x >> 5);\n  if (row >= rows) return;\n"
       << "  const " << it << " first = threadIdx.x & 31, step = 32;\n";
  else
    os << "  const " << it << " row = blockIdx.x;\n  if (row >= rows) return;\n"
       << "  const " << it << " first = threadIdx.x, step = " << threads << ";\n";
  Shape outer(l.dims.begin(), l.dims.end() - 1);
  if (!outer.empty()) os << coords("row", outer, it, used_dims(l, k - 1, false));
  auto input_at = [&](int i, bool per_element) {
    std::string at = offset(l, i, k - 1);
    if (per_element) at = (at == "0" ? "" : at + " + ") + "j";
    return load(ir.inputs[i].dtype, "p" + std::to_string(i) + "[" + at + "]");
  };
  auto row_constant = [&](int i) { return l.strides[i][k - 1] == 0; };
  auto shared = [&](int i) { return !shared_offset.empty() && shared_offset[i] >= 0; };
  // Inputs constant along the row are read once per row (and by row instructions).
  const auto all = pass_cones(ir, plan, false).cone;
  std::vector<bool> used(ir.num_registers(), false);
  for (size_t pi = 0; pi < plan.passes.size(); ++pi) {
    for (int r = 0; r < ir.num_registers(); ++r) used[r] = used[r] || all[pi][r];
    for (int r : plan.passes[pi].row_insts)
      for (int a : ir.insts[r - nin].args) used[a] = used[a] || a < nin;
  }
  for (int i = 0; i < nin; ++i)
    if (used[i] && row_constant(i))
      os << "  const " << reg_type(ir.inputs[i].dtype) << " r" << i << " = " << input_at(i, false)
         << ";\n";
  const int lanes = warp ? 32 : threads;
  const int64_t per_thread = (len + lanes - 1) / lanes;
  bool per_element_inputs = false;
  for (int i = 0; i < nin; ++i) per_element_inputs |= used[i] && !row_constant(i);
  const bool cached =
      per_element_inputs && plan.passes.size() > 1 && per_thread <= 32 && shared_offset.empty();
  const std::string E = std::to_string(per_thread);
  // Registers keep their elements too: the values of plan.kept (an exp a later
  // pass reads again) are computed once.
  const PassCones cones = pass_cones(ir, plan, cached);
  std::vector<bool> read_later(ir.num_registers(), false);
  for (const auto& back : cones.read_back)
    for (int r = 0; r < ir.num_registers(); ++r) read_later[r] = read_later[r] || back[r];
  if (cached) {
    for (int i = 0; i < nin; ++i)
      if (used[i] && !row_constant(i))
        os << "  " << reg_type(ir.inputs[i].dtype) << " cache" << i << "[" << E << "];\n";
    for (int r = nin; r < ir.num_registers(); ++r)
      if (read_later[r])
        os << "  " << reg_type(ir.register_dtype(r)) << " keep" << r << "[" << E << "];\n";
    os << "#pragma unroll\n  for (int e = 0; e < " << E << "; ++e) {\n    const " << it
       << " j = first + e * step;\n";
    for (int i = 0; i < nin; ++i)
      if (used[i] && !row_constant(i))
        os << "    cache" << i << "[e] = j < " << len << " ? " << input_at(i, true) << " : "
           << (ir.inputs[i].dtype == DType::Bool ? "false" : lit(0, ir.inputs[i].dtype)) << ";\n";
    os << "  }\n";
  } else if (!shared_offset.empty()) {
    os << "  extern __shared__ __align__(16) unsigned char ds_row_smem[];\n";
    for (int i = 0; i < nin; ++i)
      if (shared(i))
        os << "  " << mem_type(ir.inputs[i].dtype) << "* const s" << i << " = reinterpret_cast<"
           << mem_type(ir.inputs[i].dtype) << "*>(ds_row_smem + " << shared_offset[i] << ");\n";
    // Unrolled so that each thread has several loads in flight (one block per SM).
    os << "#pragma unroll 8\n  for (" << it << " j = first; j < " << len << "; j += step) {\n";
    for (int i = 0; i < nin; ++i)
      if (shared(i)) {
        std::string at = offset(l, i, k - 1);
        at = (at == "0" ? "" : at + " + ") + "j";
        os << "    s" << i << "[j] = p" << i << "[" << at << "];\n";
      }
    os << "  }\n";
  }
  const std::string combine_sum = "ds_add_op()", combine_max = "ds_max_op()";
  for (size_t pi = 0; pi < plan.passes.size(); ++pi) {
    const RowPass& pass = plan.passes[pi];
    const std::vector<bool>& cone = cones.cone[pi];
    struct Acc {
      int reg;            // the row register (-1: the trailing reduce)
      int operand;
      std::string op, type;
      DType dtype;
    };
    std::vector<Acc> accs;
    for (int red : pass.reductions) {
      Acc a;
      a.reg = red;
      a.operand = red < 0 ? ir.reduce->reg : ir.insts[red - nin].args[0];
      a.op = red < 0 ? ir.reduce->op : ir.insts[red - nin].op;
      a.dtype = ir.register_dtype(a.operand);
      a.type = a.op == "max" ? reg_type(a.dtype) : "double";
      accs.push_back(a);
    }
    const std::string pass_tag = std::to_string(pi);
    for (size_t a = 0; a < accs.size(); ++a)
      os << "  " << accs[a].type << " acc" << pass_tag << "_" << a << " = "
         << (accs[a].op == "max" ? "(-(" + accs[a].type + ")(DS_INF))" : "0.0") << ";\n";
    if (!accs.empty() || !pass.outputs.empty()) {
      if (cached)
        os << "#pragma unroll\n  for (int e = 0; e < " << E << "; ++e) {\n    const " << it
           << " j = first + e * step;\n    if (j >= " << len << ") break;\n";
      else
        os << "  for (" << it << " j = first; j < " << len << "; j += step) {\n";
      for (int r = 0; r < ir.num_registers(); ++r) {
        if (!cone[r]) continue;
        if (r < nin) {
          if (!row_constant(r))
            os << "    const " << reg_type(ir.inputs[r].dtype) << " r" << r << " = "
               << (cached      ? "cache" + std::to_string(r) + "[e]"
                   : shared(r) ? load(ir.inputs[r].dtype, "s" + std::to_string(r) + "[j]")
                               : input_at(r, true))
               << ";\n";
        } else if (cones.read_back[pi][r]) {
          os << "    const " << reg_type(ir.register_dtype(r)) << " r" << r << " = keep" << r
             << "[e];\n";
        } else {
          os << "  " << inst_code(ir, ir.insts[r - nin], r);
          if (read_later[r] && cones.first[r] == static_cast<int>(pi))
            os << "    keep" << r << "[e] = r" << r << ";\n";
        }
      }
      for (size_t a = 0; a < accs.size(); ++a) {
        const std::string acc = "acc" + pass_tag + "_" + std::to_string(a);
        const std::string v = convert("r" + std::to_string(accs[a].operand), accs[a].dtype,
                                      accs[a].op == "max" ? accs[a].dtype : DType::Float64);
        os << "    " << acc << " = " << (accs[a].op == "max" ? combine_max : combine_sum) << "("
           << acc << ", " << v << ");\n";
      }
      for (int o : pass.outputs)
        os << "    q" << o << "[row * " << len << " + j] = "
           << store_value(ir.register_dtype(ir.outputs[o]), "r" + std::to_string(ir.outputs[o]))
           << ";\n";
      os << "  }\n";
    }
    for (size_t a = 0; a < accs.size(); ++a) {
      const std::string acc = "acc" + pass_tag + "_" + std::to_string(a);
      const std::string op = accs[a].op == "max" ? combine_max : combine_sum;
      const std::string identity =
          accs[a].op == "max" ? "(-(" + accs[a].type + ")(DS_INF))" : "0.0";
      os << "  " << acc << " = "
         << (warp ? "ds_warp_reduce(" + acc + ", " + op + ")"
                  : "ds_block_reduce(" + acc + ", " + op + ", " + identity + ")")
         << ";\n";
      std::string value = acc;
      if (accs[a].op == "mean") value = acc + " / " + std::to_string(len) + ".0";
      value = convert(value, accs[a].op == "max" ? accs[a].dtype : DType::Float64, accs[a].dtype);
      if (accs[a].reg < 0)
        os << "  if (first == 0) qr[row] = " << store_value(accs[a].dtype, value) << ";\n";
      else
        os << "  const " << reg_type(accs[a].dtype) << " r" << accs[a].reg << " = " << value
           << ";\n";
    }
    for (int r : pass.row_insts) os << inst_code(ir, ir.insts[r - nin], r);
  }
  for (int o : plan.row_outputs)
    os << "  if (first == 0) q" << o << "[row] = "
       << store_value(ir.register_dtype(ir.outputs[o]), "r" + std::to_string(ir.outputs[o]))
       << ";\n";
  os << "}\n";
  return os.str();
}

}  // namespace ds::codegen::cuda::detail
