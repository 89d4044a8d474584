#include "codegen/kernel_ir.h"

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>

#include "codegen/kernel_cache.h"
#include "ds/error.h"
#include "ds/op.h"
#include "runtime/dispatch.h"

namespace ds::codegen {
namespace {

const std::set<std::string>& kernel_ops() {
  static const std::set<std::string> ops = {
      // unary
      "neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh",
      "sigmoid", "relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "erf", "floor", "ceil",
      "round", "sign", "reciprocal", "square", "logical_not", "isnan",
      // binary
      "add", "sub", "mul", "div", "pow", "maximum", "minimum", "mod", "eq", "ne", "lt", "le", "gt",
      "ge", "logical_and", "logical_or",
      // others
      "where", "cast"};
  return ops;
}

std::string shape_text(const Shape& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

Shape parse_shape(const std::string& text, const std::string& line) {
  DS_CHECK(text.size() >= 2 && text.front() == '[' && text.back() == ']', ValueError,
           "kernel IR: bad shape '", text, "' in line '", line, "'");
  Shape s;
  std::stringstream in(text.substr(1, text.size() - 2));
  std::string tok;
  while (std::getline(in, tok, ',')) s.push_back(std::stoll(tok));
  return s;
}

std::string attr_text(const std::string& key, const Attr& a) {
  if (auto* f = std::get_if<double>(&a)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%a", *f);  // hex float: exact round trip
    return key + "=f:" + buf;
  }
  if (auto* i = std::get_if<int64_t>(&a)) return key + "=i:" + std::to_string(*i);
  if (auto* b = std::get_if<bool>(&a)) return key + "=b:" + (*b ? "1" : "0");
  if (auto* t = std::get_if<DType>(&a)) return key + "=t:" + dtype_name(*t);
  if (auto* s = std::get_if<std::string>(&a)) {
    for (char c : *s)
      DS_CHECK(c > ' ' && c != '=' && c != '%', ValueError, "kernel IR: attribute '", key,
               "' value '", *s, "' has a character the text form cannot hold");
    return key + "=s:" + *s;
  }
  throw ValueError("kernel IR: attribute '" + key + "' has a kind a region cannot hold");
}

Attr parse_attr(const std::string& v, const std::string& line) {
  DS_CHECK(v.size() >= 2 && v[1] == ':', ValueError, "kernel IR: bad attribute value '", v,
           "' in line '", line, "'");
  const std::string body = v.substr(2);
  switch (v[0]) {
    case 'f':
      return std::strtod(body.c_str(), nullptr);
    case 'i':
      return static_cast<int64_t>(std::stoll(body));
    case 'b':
      return body == "1";
    case 't':
      return dtype_from_name(body);
    case 's':
      return body;
  }
  throw ValueError("kernel IR: unknown attribute kind in '" + v + "' (line '" + line + "')");
}

OpContext inst_context(const KernelInst& in, std::vector<TensorType> args, const AttrMap& attrs) {
  return OpContext{get_op(in.op), attrs, std::move(args), "fused region op '" + in.op + "'"};
}

// The reference reduction `op` of x over its last axis.
Tensor reduce_rows(const std::string& op_name, const Tensor& x, bool keepdims,
                   const TensorType& result) {
  const OpDef& op = get_op(op_name);
  const AttrMap attrs = complete_attrs(
      op, {{"axes", std::vector<int64_t>{-1}}, {"keepdims", keepdims}}, "kernel IR reduce");
  const OpContext ctx{op, attrs, {{x.dtype(), x.shape()}}, "fused region reduce " + op_name};
  return run_kernel(ctx, {op.reference, {}, "reference"}, {x}, {result})[0];
}

}  // namespace

bool is_kernel_op(const std::string& op) {
  return kernel_ops().count(op) > 0;
}
bool is_kernel_reduction(const std::string& op) {
  return op == "sum" || op == "mean" || op == "max";
}
bool is_kernel_dtype(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Bool || is_low_precision(t);
}
bool is_low_precision(DType t) {
  return t == DType::Float16 || t == DType::BFloat16;
}
bool uses_low_precision(const KernelIR& ir) {
  for (const TensorType& t : ir.inputs)
    if (is_low_precision(t.dtype)) return true;
  for (const KernelInst& in : ir.insts)
    if (is_low_precision(in.dtype)) return true;
  return false;
}

DType KernelIR::register_dtype(int r) const {
  DS_CHECK(r >= 0 && r < num_registers(), ValueError, "kernel IR: register %", r, " out of range (",
           num_registers(), " registers)");
  return r < static_cast<int>(inputs.size()) ? inputs[r].dtype : insts[r - inputs.size()].dtype;
}

Shape KernelIR::row_shape() const {
  Shape s = shape;
  if (!s.empty()) s.back() = 1;
  return s;
}

bool KernelIR::has_row_reductions() const {
  for (const KernelInst& in : insts)
    if (is_kernel_reduction(in.op)) return true;
  return false;
}

std::vector<bool> KernelIR::row_registers() const {
  const int nin = static_cast<int>(inputs.size());
  std::vector<bool> row(num_registers(), false);
  for (size_t i = 0; i < insts.size(); ++i) {
    const KernelInst& in = insts[i];
    if (is_kernel_reduction(in.op)) {
      row[nin + i] = true;
      continue;
    }
    bool reads_row = false, row_constant = true;
    for (int a : in.args) {
      if (a < 0 || a >= nin + static_cast<int>(i)) return row;  // verify() reports it
      if (row[a]) {
        reads_row = true;
      } else {
        const bool constant_input =
            a < nin && (inputs[a].shape.empty() || inputs[a].shape.back() == 1);
        row_constant = row_constant && constant_input;
      }
    }
    row[nin + i] = reads_row && row_constant;
  }
  return row;
}

Shape KernelIR::register_shape(int r) const {
  if (r < static_cast<int>(inputs.size())) return inputs.at(r).shape;
  return row_registers().at(r) ? row_shape() : shape;
}

std::vector<TensorType> KernelIR::result_types() const {
  std::vector<TensorType> out;
  const auto row = row_registers();
  for (int r : outputs) out.push_back({register_dtype(r), row.at(r) ? row_shape() : shape});
  if (reduce) {
    Shape s(shape.begin(), shape.end() - 1);
    if (reduce->keepdims) s.push_back(1);
    out.push_back({register_dtype(reduce->reg), s});
  }
  return out;
}

std::string KernelIR::str() const {
  std::ostringstream os;
  os << "region v1 shape=" << shape_text(shape) << "\n";
  for (const TensorType& t : inputs)
    os << "in " << dtype_name(t.dtype) << " " << shape_text(t.shape) << "\n";
  int reg = static_cast<int>(inputs.size());
  for (const KernelInst& in : insts) {
    os << "%" << reg++ << " = " << in.op << " " << dtype_name(in.dtype);
    for (int a : in.args) os << " %" << a;
    for (const auto& [k, v] : in.attrs) os << " " << attr_text(k, v);
    os << "\n";
  }
  if (reduce)
    os << "reduce " << reduce->op << " %" << reduce->reg
       << " keepdims=" << (reduce->keepdims ? 1 : 0) << "\n";
  os << "out";
  for (int r : outputs) os << " %" << r;
  os << "\n";
  return os.str();
}

uint64_t KernelIR::hash() const {
  return fnv1a(str());
}

void KernelIR::verify() const {
  DS_CHECK(is_static(shape), ValueError, "kernel IR: the iteration shape ", shape_str(shape),
           " is not static");
  for (size_t i = 0; i < inputs.size(); ++i) {
    DS_CHECK(is_kernel_dtype(inputs[i].dtype), ValueError, "kernel IR: input %", i, " has dtype ",
             dtype_name(inputs[i].dtype),
             "; regions hold float32, float64, float16, bfloat16 and bool");
    DS_CHECK(broadcast_shapes(inputs[i].shape, shape, "kernel IR input") == shape, ValueError,
             "kernel IR: input %", i, " of shape ", shape_str(inputs[i].shape),
             " does not broadcast to the region shape ", shape_str(shape));
  }
  const auto row = row_registers();
  for (size_t i = 0; i < insts.size(); ++i) {
    const KernelInst& in = insts[i];
    const int reg = static_cast<int>(inputs.size() + i);
    DS_CHECK(is_kernel_op(in.op) || is_kernel_reduction(in.op), ValueError, "kernel IR: %", reg,
             " uses op '", in.op, "', which regions cannot hold");
    std::vector<TensorType> args;
    for (int a : in.args) {
      DS_CHECK(a >= 0 && a < reg, ValueError, "kernel IR: %", reg, " reads %", a,
               ", which is not defined before it");
      args.push_back({register_dtype(a), a < static_cast<int>(inputs.size()) ? inputs[a].shape
                                         : row[a]                            ? row_shape()
                                                                             : shape});
    }
    if (is_kernel_reduction(in.op)) {  // a row reduction over the innermost axis
      DS_CHECK(args.size() == 1 && in.attrs.empty(), ValueError, "kernel IR: %", reg, " ", in.op,
               " takes one operand and no attributes");
      DS_CHECK(!shape.empty() && shape.back() > 0, ValueError,
               "kernel IR: a reduction needs a non-empty last axis; the region shape is ",
               shape_str(shape));
      DS_CHECK(!row[in.args[0]] && args[0].dtype != DType::Bool && in.dtype == args[0].dtype,
               ValueError, "kernel IR: %", reg, " ", in.op, " ", dtype_name(in.dtype),
               " must reduce a float value of its dtype along the row, not %", in.args[0]);
      continue;
    }
    const OpDef& op = get_op(in.op);
    const AttrMap attrs = complete_attrs(op, in.attrs, "kernel IR op " + in.op);
    DS_CHECK(op.num_inputs == static_cast<int>(args.size()), ValueError, "kernel IR: %", reg, " ",
             in.op, " takes ", op.num_inputs, " operands, got ", args.size());
    const auto out = op.infer(inst_context(in, args, attrs));
    const Shape& want = row[reg] ? row_shape() : shape;
    DS_CHECK(out.size() == 1 && out[0].dtype == in.dtype && out[0].shape == want, ValueError,
             "kernel IR: %", reg, " ", in.op, " infers ", out[0].str(), ", the region says ",
             dtype_name(in.dtype), shape_str(want));
  }
  if (reduce) {
    DS_CHECK(is_kernel_reduction(reduce->op), ValueError, "kernel IR: unknown reduction '",
             reduce->op, "' (sum, mean or max)");
    DS_CHECK(!shape.empty() && shape.back() > 0, ValueError,
             "kernel IR: a reduction needs a non-empty last axis; the region shape is ",
             shape_str(shape));
    DS_CHECK(reduce->reg >= static_cast<int>(inputs.size()) && reduce->reg < num_registers() &&
                 register_dtype(reduce->reg) != DType::Bool && !row[reduce->reg],
             ValueError, "kernel IR: reduction of %", reduce->reg,
             ", which is not a float instruction register");
  }
  DS_CHECK(!outputs.empty() || reduce, ValueError, "kernel IR: the region has no outputs");
  for (int r : outputs)
    DS_CHECK(r >= static_cast<int>(inputs.size()) && r < num_registers(), ValueError,
             "kernel IR: output %", r, " is not an instruction's register");
}

KernelIR parse_kernel_ir(const std::string& text) {
  KernelIR ir;
  std::istringstream lines(text);
  std::string line;
  bool header = false, done = false;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    std::istringstream tok(line);
    std::string head;
    tok >> head;
    DS_CHECK(!done, ValueError, "kernel IR: text after the 'out' line: '", line, "'");
    if (!header) {
      std::string version, shape;
      tok >> version >> shape;
      DS_CHECK(head == "region" && version == "v1" && shape.rfind("shape=", 0) == 0, ValueError,
               "kernel IR: expected 'region v1 shape=[...]', got '", line, "'");
      ir.shape = parse_shape(shape.substr(6), line);
      header = true;
    } else if (head == "in") {
      DS_CHECK(ir.insts.empty(), ValueError, "kernel IR: input after instructions: '", line, "'");
      std::string dt, shape;
      tok >> dt >> shape;
      ir.inputs.push_back({dtype_from_name(dt), parse_shape(shape, line)});
    } else if (head == "reduce") {
      std::string op, reg, keep;
      tok >> op >> reg >> keep;
      DS_CHECK(reg.size() > 1 && reg[0] == '%' && (keep == "keepdims=0" || keep == "keepdims=1"),
               ValueError, "kernel IR: expected 'reduce OP %R keepdims=0|1', got '", line, "'");
      ir.reduce = KernelReduce{op, std::stoi(reg.substr(1)), keep == "keepdims=1"};
    } else if (head == "out") {
      std::string r;
      while (tok >> r) ir.outputs.push_back(std::stoi(r.substr(1)));
      done = true;
    } else {
      DS_CHECK(head == "%" + std::to_string(ir.num_registers()), ValueError,
               "kernel IR: expected register %", ir.num_registers(), ", got '", line, "'");
      std::string eq, dt, w;
      KernelInst in;
      tok >> eq >> in.op >> dt;
      DS_CHECK(eq == "=", ValueError, "kernel IR: bad instruction '", line, "'");
      in.dtype = dtype_from_name(dt);
      while (tok >> w) {
        if (w[0] == '%') {
          in.args.push_back(std::stoi(w.substr(1)));
        } else {
          const auto p = w.find('=');
          DS_CHECK(p != std::string::npos, ValueError, "kernel IR: bad operand '", w, "' in '",
                   line, "'");
          in.attrs[w.substr(0, p)] = parse_attr(w.substr(p + 1), line);
        }
      }
      ir.insts.push_back(std::move(in));
    }
  }
  DS_CHECK(done, ValueError, "kernel IR: missing the 'out' line");
  ir.verify();
  return ir;
}

const KernelIR& cached_kernel_ir(const std::string& text) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<KernelIR>> parsed;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = parsed[text];
  if (!slot) {
    try {
      slot = std::make_unique<KernelIR>(parse_kernel_ir(text));
    } catch (...) {
      parsed.erase(text);
      throw;
    }
  }
  return *slot;
}

std::vector<Tensor> interpret(const KernelIR& ir, const std::vector<Tensor>& inputs) {
  DS_CHECK(inputs.size() == ir.inputs.size(), ValueError, "kernel IR: expected ", ir.inputs.size(),
           " inputs, got ", inputs.size());
  std::vector<Tensor> regs(inputs.begin(), inputs.end());
  const auto row = ir.row_registers();
  for (const KernelInst& in : ir.insts) {
    const Shape& shape = row[regs.size()] ? ir.row_shape() : ir.shape;
    if (is_kernel_reduction(in.op)) {
      regs.push_back(reduce_rows(in.op, regs[in.args[0]], true, {in.dtype, shape}));
      continue;
    }
    const OpDef& op = get_op(in.op);
    const AttrMap attrs = complete_attrs(op, in.attrs, "kernel IR op " + in.op);
    std::vector<Tensor> args;
    std::vector<TensorType> types;
    for (int a : in.args) {
      args.push_back(regs[a]);
      types.push_back({regs[a].dtype(), regs[a].shape()});
    }
    const OpContext ctx = inst_context(in, types, attrs);
    const KernelEntry reference{op.reference, {}, "reference"};
    regs.push_back(run_kernel(ctx, reference, args, {TensorType{in.dtype, shape}})[0]);
  }
  std::vector<Tensor> out;
  for (int r : ir.outputs) out.push_back(regs[r]);
  if (ir.reduce)
    out.push_back(reduce_rows(ir.reduce->op, regs[ir.reduce->reg], ir.reduce->keepdims,
                              ir.result_types().back()));
  return out;
}

}  // namespace ds::codegen
