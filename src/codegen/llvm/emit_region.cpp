#include "codegen/llvm/emit_region.h"

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/MDBuilder.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "codegen/row_plan.h"
#include "ds/error.h"

namespace ds::codegen::llvm_cpu {
namespace {

bool is_float(DType t) {
  return t == DType::Float32 || t == DType::Float64;
}

// Ops whose float32 form computes in float64 and rounds once, as their reference
// does: their inner steps (a product with a float64 attribute, 1 + exp(-x), ...)
// would otherwise round several times.
bool computes_in_double(const std::string& op) {
  return op == "rsqrt" || op == "sigmoid" || op == "leaky_relu" || op == "elu" || op == "gelu" ||
         op == "silu" || op == "softplus";
}

class Emitter {
 public:
  Emitter(llvm::IRBuilder<>& b, llvm::Module& m) : b_(b), m_(m) {}

  llvm::Type* type(DType t) {
    switch (t) {
      case DType::Float32:
        return b_.getFloatTy();
      case DType::Float64:
        return b_.getDoubleTy();
      case DType::Bool:
        return b_.getInt1Ty();
      default:
        throw Error("kernel IR: no LLVM type for " + std::string(dtype_name(t)));
    }
  }
  llvm::Type* memory_type(DType t) { return t == DType::Bool ? b_.getInt8Ty() : type(t); }

  llvm::Value* load(llvm::Value* ptr, DType t) {
    llvm::Value* v = b_.CreateLoad(memory_type(t), ptr);
    return t == DType::Bool ? b_.CreateICmpNE(v, b_.getInt8(0)) : v;
  }
  void store(llvm::Value* v, llvm::Value* ptr, DType t) {
    b_.CreateStore(t == DType::Bool ? b_.CreateZExt(v, b_.getInt8Ty()) : v, ptr);
  }

  llvm::Value* convert(llvm::Value* v, DType from, DType to) {
    if (from == to) return v;
    if (from == DType::Bool) return b_.CreateUIToFP(v, type(to));
    if (to == DType::Bool) return b_.CreateFCmpUNE(v, llvm::ConstantFP::get(v->getType(), 0.0));
    return to == DType::Float64 ? b_.CreateFPExt(v, type(to)) : b_.CreateFPTrunc(v, type(to));
  }

  llvm::Value* inst(const KernelInst& in, std::vector<llvm::Value*> args,
                    const std::vector<DType>& arg_types) {
    const std::string& op = in.op;
    if (op == "cast") return convert(args[0], arg_types[0], in.dtype);
    if (op == "where") {
      llvm::Value* c = convert(args[0], arg_types[0], DType::Bool);
      return b_.CreateSelect(c, convert(args[1], arg_types[1], in.dtype),
                             convert(args[2], arg_types[2], in.dtype));
    }
    if (op == "logical_not") return b_.CreateNot(convert(args[0], arg_types[0], DType::Bool));
    if (op == "logical_and" || op == "logical_or") {
      llvm::Value* a = convert(args[0], arg_types[0], DType::Bool);
      llvm::Value* c = convert(args[1], arg_types[1], DType::Bool);
      return op == "logical_and" ? b_.CreateAnd(a, c) : b_.CreateOr(a, c);
    }
    if (args.size() == 1) {
      // Compute type: the (float) result type, float64 for the ops that round once.
      DType ct = is_float(in.dtype)       ? in.dtype
                 : is_float(arg_types[0]) ? arg_types[0]
                                          : DType::Float32;
      if (computes_in_double(op) && !(op == "gelu" && ct == DType::Float32 && !tanh_form(in)))
        ct = DType::Float64;
      llvm::Value* x = convert(args[0], arg_types[0], ct);
      if (op == "isnan") return b_.CreateFCmpUNO(x, x);
      return convert(unary(in, x), ct, in.dtype);
    }
    const DType promoted = promote_types(arg_types[0], arg_types[1]);
    const bool compare =
        op == "eq" || op == "ne" || op == "lt" || op == "le" || op == "gt" || op == "ge";
    const DType ct = compare ? (is_float(promoted) ? promoted : DType::Float32)
                             : (is_float(in.dtype) ? in.dtype : DType::Float32);
    llvm::Value* a = convert(args[0], arg_types[0], ct);
    llvm::Value* c = convert(args[1], arg_types[1], ct);
    if (compare) return compare_op(op, a, c);
    return convert(binary(op, a, c), ct, in.dtype);
  }

 private:
  llvm::Constant* k(llvm::Value* like, double v) {
    return llvm::ConstantFP::get(like->getType(), v);
  }

  // libm, by the float64 name ("exp"); float32 values call the "f" variant. Marked
  // as reading no memory (they only set errno) so the loop vectorizer maps them
  // to libmvec's vector variants.
  llvm::Value* libm(const std::string& name, std::vector<llvm::Value*> args) {
    llvm::Type* t = args[0]->getType();
    const std::string full = name + (t->isFloatTy() ? "f" : "");
    std::vector<llvm::Type*> params(args.size(), t);
    llvm::FunctionCallee f =
        m_.getOrInsertFunction(full, llvm::FunctionType::get(t, params, false));
    auto* fn = llvm::cast<llvm::Function>(f.getCallee());
    fn->setDoesNotAccessMemory();
    fn->setDoesNotThrow();
    fn->addFnAttr(llvm::Attribute::WillReturn);
    auto* call = b_.CreateCall(f, args);
    call->setDoesNotAccessMemory();
    return call;
  }
  llvm::Value* intrinsic(llvm::Intrinsic::ID id, llvm::Value* x) {
    return b_.CreateUnaryIntrinsic(id, x);
  }
  llvm::Value* gt0(llvm::Value* x) { return b_.CreateFCmpOGT(x, k(x, 0.0)); }
  llvm::Value* logistic(llvm::Value* x) {  // 1 / (1 + exp(-x))
    return b_.CreateFDiv(k(x, 1.0), b_.CreateFAdd(k(x, 1.0), libm("exp", {b_.CreateFNeg(x)})));
  }

  static bool tanh_form(const KernelInst& in) {
    auto it = in.attrs.find("approximate");
    return it != in.attrs.end() && std::get<std::string>(it->second) == "tanh";
  }

  // gelu(x) = x/2 erfc(-x/sqrt 2) in float32 lanes: t = -x/sqrt 2 carried as hi + lo
  // (the product's rounding error exact through an FMA), since erfc's condition
  // number ~2t^2 would amplify the rounding of t; lo enters to first order,
  // erfc(hi + lo) ~ erfc(hi) - lo 2/sqrt(pi) e^(-hi^2).
  llvm::Value* gelu_erf_f32(llvm::Value* x) {
    const double c = -std::sqrt(0.5);
    const float c_hi = static_cast<float>(c);
    const float c_lo = static_cast<float>(c - c_hi);
    auto fma = [&](llvm::Value* a, llvm::Value* m, llvm::Value* add) {
      return b_.CreateIntrinsic(llvm::Intrinsic::fma, {a->getType()}, {a, m, add});
    };
    llvm::Value* hi = b_.CreateFMul(x, k(x, c_hi));
    llvm::Value* lo = fma(x, k(x, c_lo), fma(x, k(x, c_hi), b_.CreateFNeg(hi)));
    // Infinite x: hi is infinite and the error term NaN; drop it.
    lo = b_.CreateSelect(b_.CreateFCmpOEQ(intrinsic(llvm::Intrinsic::fabs, hi), k(x, INFINITY)),
                         k(x, 0.0), lo);
    llvm::Value* erfc_hi = libm("erfc", {hi});
    llvm::Value* d = libm("exp", {b_.CreateFNeg(b_.CreateFMul(hi, hi))});
    llvm::Value* slope = b_.CreateFMul(lo, k(x, -2.0 / std::sqrt(M_PI)));
    return b_.CreateFMul(b_.CreateFMul(k(x, 0.5), x), fma(slope, d, erfc_hi));
  }

  llvm::Value* unary(const KernelInst& in, llvm::Value* x) {
    const std::string& op = in.op;
    auto attr = [&](const char* name, double fallback) {
      auto it = in.attrs.find(name);
      return it == in.attrs.end() ? fallback : std::get<double>(it->second);
    };
    if (op == "neg") return b_.CreateFNeg(x);
    if (op == "abs") return intrinsic(llvm::Intrinsic::fabs, x);
    if (op == "sqrt") return intrinsic(llvm::Intrinsic::sqrt, x);
    if (op == "floor") return intrinsic(llvm::Intrinsic::floor, x);
    if (op == "ceil") return intrinsic(llvm::Intrinsic::ceil, x);
    if (op == "round") return intrinsic(llvm::Intrinsic::nearbyint, x);
    if (op == "rsqrt") return b_.CreateFDiv(k(x, 1.0), intrinsic(llvm::Intrinsic::sqrt, x));
    if (op == "reciprocal") return b_.CreateFDiv(k(x, 1.0), x);
    if (op == "square") return b_.CreateFMul(x, x);
    if (op == "exp" || op == "log" || op == "log1p" || op == "expm1" || op == "sin" ||
        op == "cos" || op == "tanh" || op == "erf")
      return libm(op, {x});
    if (op == "sigmoid") return logistic(x);
    if (op == "silu") return b_.CreateFMul(x, logistic(x));
    if (op == "relu") return b_.CreateSelect(b_.CreateFCmpUGT(x, k(x, 0.0)), x, k(x, 0.0));
    if (op == "leaky_relu")
      return b_.CreateSelect(gt0(x), x, b_.CreateFMul(x, k(x, attr("negative_slope", 0.01))));
    if (op == "elu")
      return b_.CreateSelect(gt0(x), x,
                             b_.CreateFMul(k(x, attr("alpha", 1.0)), libm("expm1", {x})));
    if (op == "softplus") {
      const double beta = attr("beta", 1.0);
      llvm::Value* bx = b_.CreateFMul(x, k(x, beta));
      llvm::Value* soft = b_.CreateFDiv(libm("log1p", {libm("exp", {bx})}), k(x, beta));
      return b_.CreateSelect(b_.CreateFCmpOGT(bx, k(x, attr("threshold", 20.0))), x, soft);
    }
    if (op == "gelu") {
      if (x->getType()->isFloatTy()) return gelu_erf_f32(x);
      if (tanh_form(in)) {
        const double c = std::sqrt(2.0 / M_PI);
        llvm::Value* x3 = b_.CreateFMul(b_.CreateFMul(x, x), x);
        llvm::Value* u = b_.CreateFAdd(x, b_.CreateFMul(k(x, 0.044715), x3));
        llvm::Value* e = libm("exp", {b_.CreateFMul(k(x, -2.0 * c), u)});
        return b_.CreateFDiv(x, b_.CreateFAdd(k(x, 1.0), e));
      }
      llvm::Value* arg = b_.CreateFDiv(b_.CreateFNeg(x), k(x, std::sqrt(2.0)));
      return b_.CreateFMul(b_.CreateFMul(k(x, 0.5), x), libm("erfc", {arg}));
    }
    if (op == "sign") {
      llvm::Value* zero_or_nan = b_.CreateSelect(b_.CreateFCmpUNO(x, x), x, k(x, 0.0));
      return b_.CreateSelect(
          gt0(x), k(x, 1.0),
          b_.CreateSelect(b_.CreateFCmpOLT(x, k(x, 0.0)), k(x, -1.0), zero_or_nan));
    }
    throw Error("kernel IR: the LLVM emitter has no rule for unary op '" + op + "'");
  }

  llvm::Value* binary(const std::string& op, llvm::Value* a, llvm::Value* c) {
    if (op == "add") return b_.CreateFAdd(a, c);
    if (op == "sub") return b_.CreateFSub(a, c);
    if (op == "mul") return b_.CreateFMul(a, c);
    if (op == "div") return b_.CreateFDiv(a, c);
    if (op == "pow") return libm("pow", {a, c});
    if (op == "maximum" || op == "minimum") {  // NaN-propagating; std::max/min on ties
      llvm::Value* pick_c = op == "maximum" ? b_.CreateFCmpOLT(a, c) : b_.CreateFCmpOLT(c, a);
      llvm::Value* r = b_.CreateSelect(pick_c, c, a);
      return b_.CreateSelect(b_.CreateFCmpUNO(a, c), k(a, NAN), r);
    }
    if (op == "mod") {  // the divisor's sign, like Python
      llvm::Value* r = b_.CreateFRem(a, c);
      llvm::Value* differ =
          b_.CreateXor(b_.CreateFCmpOLT(r, k(r, 0.0)), b_.CreateFCmpOLT(c, k(c, 0.0)));
      llvm::Value* fix = b_.CreateAnd(b_.CreateFCmpUNE(r, k(r, 0.0)), differ);
      return b_.CreateSelect(fix, b_.CreateFAdd(r, c), r);
    }
    throw Error("kernel IR: the LLVM emitter has no rule for binary op '" + op + "'");
  }

  llvm::Value* compare_op(const std::string& op, llvm::Value* a, llvm::Value* c) {
    if (op == "eq") return b_.CreateFCmpOEQ(a, c);
    if (op == "ne") return b_.CreateFCmpUNE(a, c);
    if (op == "lt") return b_.CreateFCmpOLT(a, c);
    if (op == "le") return b_.CreateFCmpOLE(a, c);
    if (op == "gt") return b_.CreateFCmpOGT(a, c);
    return b_.CreateFCmpOGE(a, c);
  }

  llvm::IRBuilder<>& b_;
  llvm::Module& m_;
};

// One row's passes (see row_plan.h) inside the body function: each pass is a
// vectorizable loop over the row that recomputes the elementwise values it needs
// from the inputs and the row registers known so far.
class RowEmitter {
 public:
  RowEmitter(llvm::IRBuilder<>& b, Emitter& e, const KernelIR& ir, const LoopLayout& layout,
             llvm::Function* body, llvm::Value* n)
      : b_(b), e_(e), ir_(ir), layout_(layout), body_(body), n_(n), plan_(plan_rows(ir)),
        known_(ir.num_registers(), nullptr) {}

  void emit() {
    // Inputs constant along the row are read once.
    for (size_t i = 0; i < ir_.inputs.size(); ++i)
      if (!layout_.inner_contiguous(i)) known_[i] = e_.load(arg(i), ir_.inputs[i].dtype);
    for (const RowPass& p : plan_.passes) {
      emit_pass(p);
      for (int r : p.row_insts) known_[r] = compute(r, known_);
    }
    for (int o : plan_.row_outputs) {
      const int r = ir_.outputs[o];
      e_.store(known_[r], arg(ir_.inputs.size() + o), ir_.register_dtype(r));
    }
  }

 private:
  llvm::Value* arg(size_t i) { return body_->getArg(static_cast<unsigned>(i)); }
  size_t num_results() const { return ir_.outputs.size() + (ir_.reduce ? 1 : 0); }
  llvm::Value* reduce_ptr() {
    return arg(ir_.inputs.size() + ir_.outputs.size());  // the trailing reduction's pointer
  }
  // The row buffer of kept register r (after the inputs' and results' pointers).
  llvm::Value* kept_ptr(int r) {
    const auto it = std::find(plan_.kept.begin(), plan_.kept.end(), r);
    return it == plan_.kept.end()
               ? nullptr
               : arg(ir_.inputs.size() + num_results() + (it - plan_.kept.begin()));
  }

  llvm::Value* compute(int r, const std::vector<llvm::Value*>& regs) {
    const KernelInst& in = ir_.insts[r - ir_.inputs.size()];
    std::vector<llvm::Value*> args;
    std::vector<DType> types;
    for (int a : in.args) {
      args.push_back(regs[a]);
      types.push_back(ir_.register_dtype(a));
    }
    return e_.inst(in, args, types);
  }

  struct Acc {
    std::string op;
    int reg;          // the reduced register
    DType type;       // its dtype
    llvm::Type* acc;  // float64 for sums (float32 rows add up without drift), else the dtype
    llvm::Value* init;
    llvm::PHINode* phi = nullptr;
    llvm::PHINode* nan = nullptr;  // max: whether a NaN was seen
    llvm::Value* next = nullptr;
    llvm::Value* nan_next = nullptr;
  };

  void emit_pass(const RowPass& p) {
    llvm::LLVMContext& ctx = b_.getContext();
    std::vector<Acc> accs;
    for (int red : p.reductions) {
      const std::string op = red < 0 ? ir_.reduce->op : ir_.insts[red - ir_.inputs.size()].op;
      const int reg = red < 0 ? ir_.reduce->reg : ir_.insts[red - ir_.inputs.size()].args[0];
      const DType t = ir_.register_dtype(reg);
      llvm::Type* at = op == "max" ? e_.type(t) : b_.getDoubleTy();
      llvm::Value* init = op == "max" ? llvm::ConstantFP::getInfinity(at, /*Negative=*/true)
                                      : llvm::ConstantFP::get(at, 0.0);
      accs.push_back({op, reg, t, at, init});
    }

    llvm::BasicBlock* pre = b_.GetInsertBlock();
    auto* loop = llvm::BasicBlock::Create(ctx, "loop", body_);
    auto* exit = llvm::BasicBlock::Create(ctx, "exit", body_);
    b_.CreateCondBr(b_.CreateICmpSGT(n_, b_.getInt64(0)), loop, exit);
    b_.SetInsertPoint(loop);
    llvm::PHINode* idx = b_.CreatePHI(b_.getInt64Ty(), 2, "i");
    idx->addIncoming(b_.getInt64(0), pre);
    for (Acc& a : accs) {
      a.phi = b_.CreatePHI(a.acc, 2, "acc");
      a.phi->addIncoming(a.init, pre);
      if (a.op == "max") {
        a.nan = b_.CreatePHI(b_.getInt1Ty(), 2, "nan");
        a.nan->addIncoming(b_.getFalse(), pre);
      }
    }
    std::vector<llvm::Value*> regs = known_;
    std::vector<int> now_kept;
    for (int r : p.elements) {
      if (regs[r]) continue;  // read once per row
      const DType t = ir_.register_dtype(r);
      llvm::Value* kept = kept_ptr(r);
      if (r < static_cast<int>(ir_.inputs.size())) {
        regs[r] = e_.load(b_.CreateGEP(e_.memory_type(t), arg(r), idx), t);
      } else if (kept && kept_.count(r)) {
        regs[r] = e_.load(b_.CreateGEP(e_.memory_type(t), kept, idx), t);
      } else {
        regs[r] = compute(r, regs);
        if (kept) {
          e_.store(regs[r], b_.CreateGEP(e_.memory_type(t), kept, idx), t);
          now_kept.push_back(r);
        }
      }
    }
    kept_.insert(now_kept.begin(), now_kept.end());
    for (Acc& a : accs) {
      llvm::Value* v = regs[a.reg];
      if (a.op == "max") {
        // maxnum under no-NaN flags vectorizes; NaNs are tracked apart and win at the end.
        llvm::FastMathFlags f;
        f.setNoNaNs();
        f.setNoSignedZeros();
        a.next = b_.CreateBinaryIntrinsic(llvm::Intrinsic::maxnum, a.phi, v);
        llvm::cast<llvm::Instruction>(a.next)->setFastMathFlags(f);
        a.nan_next = b_.CreateOr(a.nan, b_.CreateFCmpUNO(v, v));
        a.nan->addIncoming(a.nan_next, loop);
      } else {
        // Reassociation lets the vectorizer keep several partial sums.
        llvm::FastMathFlags reassoc;
        reassoc.setAllowReassoc();
        a.next = b_.CreateFAdd(a.phi, e_.convert(v, a.type, DType::Float64));
        llvm::cast<llvm::Instruction>(a.next)->setFastMathFlags(reassoc);
      }
      a.phi->addIncoming(a.next, loop);
    }
    for (int o : p.outputs) {
      const int r = ir_.outputs[o];
      const DType t = ir_.register_dtype(r);
      e_.store(regs[r], b_.CreateGEP(e_.memory_type(t), arg(ir_.inputs.size() + o), idx), t);
    }
    llvm::Value* next = b_.CreateAdd(idx, b_.getInt64(1), "next", true, true);
    idx->addIncoming(next, loop);
    auto* br = b_.CreateCondBr(b_.CreateICmpSLT(next, n_), loop, exit);
    // Ask for vectorization explicitly (the cost model still picks the width).
    llvm::MDNode* enable =
        llvm::MDNode::get(ctx, {llvm::MDString::get(ctx, "llvm.loop.vectorize.enable"),
                                llvm::ConstantAsMetadata::get(b_.getTrue())});
    llvm::MDNode* loop_id = llvm::MDNode::getDistinct(ctx, {nullptr, enable});
    loop_id->replaceOperandWith(0, loop_id);
    br->setMetadata(llvm::LLVMContext::MD_loop, loop_id);

    b_.SetInsertPoint(exit);
    std::vector<llvm::PHINode*> totals, nans;  // every phi first: they lead the block
    for (Acc& a : accs) {
      totals.push_back(b_.CreatePHI(a.acc, 2, "total"));
      totals.back()->addIncoming(a.init, pre);
      totals.back()->addIncoming(a.next, loop);
      nans.push_back(nullptr);
      if (a.op == "max") {
        nans.back() = b_.CreatePHI(b_.getInt1Ty(), 2, "any_nan");
        nans.back()->addIncoming(b_.getFalse(), pre);
        nans.back()->addIncoming(a.nan_next, loop);
      }
    }
    for (size_t i = 0; i < accs.size(); ++i) {
      Acc& a = accs[i];
      llvm::Value* r = totals[i];
      if (a.op == "max") {
        r = b_.CreateSelect(nans[i], llvm::ConstantFP::getNaN(a.acc), r);
      } else {
        if (a.op == "mean") r = b_.CreateFDiv(r, b_.CreateSIToFP(n_, a.acc));
        r = e_.convert(r, DType::Float64, a.type);
      }
      const int red = p.reductions[i];
      if (red < 0)
        e_.store(r, reduce_ptr(), a.type);
      else
        known_[red] = r;
    }
  }

  llvm::IRBuilder<>& b_;
  Emitter& e_;
  const KernelIR& ir_;
  const LoopLayout& layout_;
  llvm::Function* body_;
  llvm::Value* n_;
  RowPlan plan_;
  std::vector<llvm::Value*> known_;  // values fixed for the row: broadcast inputs, row registers
  std::set<int> kept_;               // kept registers stored by an earlier pass
};

}  // namespace

std::unique_ptr<llvm::Module> emit_region(llvm::LLVMContext& ctx, const KernelIR& ir,
                                          const LoopLayout& layout, const std::string& name) {
  auto m = std::make_unique<llvm::Module>(name, ctx);
  llvm::IRBuilder<> b(ctx);
  Emitter e(b, *m);
  const size_t nin = ir.inputs.size();
  // Results' pointers, then one row buffer per kept register.
  const size_t nout = ir.outputs.size() + (ir.reduce ? 1 : 0) + plan_rows(ir).kept.size();
  llvm::Type* ptr = b.getPtrTy();
  llvm::Type* i64 = b.getInt64Ty();

  // body(p0, ..., pk, n): the pointers never alias, which lets the loops vectorize
  // without run-time overlap checks; it is inlined into the entry point.
  std::vector<llvm::Type*> params(nin + nout, ptr);
  params.push_back(i64);
  auto* body = llvm::Function::Create(llvm::FunctionType::get(b.getVoidTy(), params, false),
                                      llvm::Function::InternalLinkage, name + "_body", *m);
  body->addFnAttr(llvm::Attribute::AlwaysInline);
  body->addFnAttr(llvm::Attribute::NoUnwind);
  for (size_t i = 0; i < nin + nout; ++i)
    body->addParamAttr(static_cast<unsigned>(i), llvm::Attribute::NoAlias);
  b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", body));
  RowEmitter(b, e, ir, layout, body, body->getArg(static_cast<unsigned>(nin + nout))).emit();
  b.CreateRetVoid();

  // The entry point: void name(void** ptrs, int64_t n).
  auto* fn = llvm::Function::Create(llvm::FunctionType::get(b.getVoidTy(), {ptr, i64}, false),
                                    llvm::Function::ExternalLinkage, name, *m);
  fn->addFnAttr(llvm::Attribute::NoUnwind);
  b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", fn));
  std::vector<llvm::Value*> call_args;
  for (size_t i = 0; i < nin + nout; ++i)
    call_args.push_back(b.CreateLoad(ptr, b.CreateConstGEP1_64(ptr, fn->getArg(0), i)));
  call_args.push_back(fn->getArg(1));
  b.CreateCall(body, call_args);
  b.CreateRetVoid();
  return m;
}

}  // namespace ds::codegen::llvm_cpu
