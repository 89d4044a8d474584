// Algebraic simplification: identities (x*1, x+0, x-0, x/1, -(-x)), chains of
// transposes, reshapes and casts collapsed, no-op reshapes/casts/permutes removed.
#include "ds/op.h"
#include "ds/ops.h"
#include "passes/pass_manager.h"
#include "passes/rewriter.h"

namespace ds::passes {
namespace {

bool is_constant_equal_to(Rewriter& rw, const Tensor& v, double value) {
  Tensor c;
  if (!constant_value(rw.dst(), v.value(), &c) || c.numel() > 4096) return false;
  for (int64_t i = 0; i < c.numel(); ++i)
    if (element_as_double(c, i) != value) return false;
  return true;
}

// cast from `from` to `to` keeps every value of `from` exactly.
bool lossless(DType from, DType to) {
  if (from == to) return true;
  if (from == DType::Bool) return true;
  if (is_floating(from)) {
    if (!is_floating(to)) return false;
    if (from == DType::Float16) return to == DType::Float32 || to == DType::Float64;
    if (from == DType::BFloat16) return to == DType::Float32 || to == DType::Float64;
    return from == DType::Float32 && to == DType::Float64;
  }
  if (is_floating(to)) {  // integers fit a float's mantissa
    const size_t mant = to == DType::Float64 ? 53 : to == DType::Float32 ? 24 : to == DType::Float16 ? 11 : 8;
    return dtype_size(from) * 8 <= mant || (from == DType::UInt8 && mant >= 8);
  }
  if (from == DType::UInt8) return to != DType::Int8;
  return is_signed(to) && dtype_size(to) >= dtype_size(from);
}

const Node* producer(Rewriter& rw, const Tensor& v) { return &rw.dst().node(v.value().node); }

}  // namespace

Graph algebraic_simplification(const Graph& g) {
  Rewriter rw(g);
  return rw.run([&](const Node& n) {
    const std::string& op = n.op->name;
    if (n.op->has(kSource)) return false;
    const auto in = rw.mapped_inputs(n);
    const TensorType& out = n.outputs[0];
    auto forward = [&](const Tensor& x) {
      if (TensorType{x.dtype(), x.shape()} != out) return false;
      rw.set({n.id, 0}, x);
      return true;
    };
    if (op == "mul") {
      if (is_constant_equal_to(rw, in[1], 1.0) && forward(in[0])) return true;
      if (is_constant_equal_to(rw, in[0], 1.0) && forward(in[1])) return true;
    } else if (op == "add") {
      if (is_constant_equal_to(rw, in[1], 0.0) && forward(in[0])) return true;
      if (is_constant_equal_to(rw, in[0], 0.0) && forward(in[1])) return true;
    } else if (op == "sub") {
      if (is_constant_equal_to(rw, in[1], 0.0) && forward(in[0])) return true;
    } else if (op == "div") {
      if (is_constant_equal_to(rw, in[1], 1.0) && forward(in[0])) return true;
    } else if (op == "neg") {
      const Node* p = producer(rw, in[0]);
      if (p->op->name == "neg" && forward(rw.dst().value(p->inputs[0]))) return true;
    } else if (op == "reshape") {
      if (is_static(out.shape) && in[0].shape() == out.shape && forward(in[0])) return true;
      const Node* p = producer(rw, in[0]);
      if (p->op->name == "reshape") {
        rw.set({n.id, 0}, reshape(rw.dst().value(p->inputs[0]), std::get<std::vector<int64_t>>(n.attrs.at("shape"))));
        return true;
      }
    } else if (op == "permute") {
      const auto& axes = std::get<std::vector<int64_t>>(n.attrs.at("axes"));
      const int rank = static_cast<int>(axes.size());
      std::vector<int64_t> composed(axes.begin(), axes.end());
      Tensor base = in[0];
      const Node* p = producer(rw, in[0]);
      if (p->op->name == "permute") {
        const auto& inner = std::get<std::vector<int64_t>>(p->attrs.at("axes"));
        for (int i = 0; i < rank; ++i)
          composed[i] = inner[normalize_axis(axes[i], rank, "permute")];
        base = rw.dst().value(p->inputs[0]);
      }
      bool identity = true;
      for (int i = 0; i < rank; ++i) identity &= normalize_axis(composed[i], rank, "permute") == i;
      if (identity && forward(base)) return true;
      if (p->op->name == "permute") {
        rw.set({n.id, 0}, permute(base, composed));
        return true;
      }
    } else if (op == "cast") {
      if (forward(in[0])) return true;  // cast to its own dtype
      const Node* p = producer(rw, in[0]);
      if (p->op->name == "cast") {
        Tensor x = rw.dst().value(p->inputs[0]);
        if (lossless(x.dtype(), in[0].dtype())) {
          rw.set({n.id, 0}, x.dtype() == out.dtype ? x : cast(x, out.dtype));
          return true;
        }
      }
    }
    return false;
  });
}

}  // namespace ds::passes
