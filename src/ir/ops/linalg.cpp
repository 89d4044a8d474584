// Linear algebra: matmul (numpy semantics), linear (PyTorch), gemm (ONNX).
// Reference kernels compute in float64; the fast ones live in src/backends/cpu.
#include "ir/ops/linalg_shapes.h"
#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {

namespace {

bool dims_match(int64_t a, int64_t b) { return a == b || a == dyn || b == dyn; }

Shape drop_last(const Shape& s, size_t n) { return Shape(s.begin(), s.end() - n); }

double product(const Shape& s) {
  double p = 1;
  for (int64_t e : s) p *= static_cast<double>(e == dyn ? 1 : e);
  return p;
}

double type_bytes(const TensorType& t) { return product(t.shape) * dtype_size(t.dtype); }

Cost gemm_cost(const OpContext& c, const std::vector<TensorType>& outs, double mnk) {
  Cost cost{2.0 * mnk, 0.0};
  for (const auto& t : c.inputs) cost.bytes += type_bytes(t);
  for (const auto& t : outs) cost.bytes += type_bytes(t);
  return cost;
}

DType checked_promote(const OpContext& c) {
  DType t = c.inputs[0].dtype;
  for (const auto& in : c.inputs) t = promote_types(t, in.dtype);
  DS_CHECK(t != DType::Bool, TypeError, c.where(), "inputs are bool; expected numbers");
  return t;
}

// C[m, n] (+)= alpha * op(A) @ op(B) in float64; A, B, C row-major with their own strides.
void gemm_f64(const double* a, const double* b, double* c, int64_t m, int64_t k, int64_t n,
              bool trans_a, bool trans_b, double alpha) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += (trans_a ? a[p * m + i] : a[i * k + p]) * (trans_b ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] += alpha * s;
    }
}

const Tensor& G(const VjpArgs& a) { return a.grads[0]; }

std::vector<Tensor> matmul_vjp(const VjpArgs& args) {
  const Tensor &a = args.inputs[0], &b = args.inputs[1];
  Tensor g = G(args);
  // Promote 1-D operands to matrices, so one batched rule covers every case.
  const Shape a_shape = a.shape(), b_shape = b.shape();
  const Tensor a2 = a.ndim() == 1 ? reshape(a, {1, a_shape[0]}) : a;
  const Tensor b2 = b.ndim() == 1 ? reshape(b, {b_shape[0], 1}) : b;
  const auto d = matmul_dims(a2.shape(), b2.shape(), "matmul vjp");
  Shape g_shape = d.batch;
  g_shape.push_back(d.m == dyn ? -1 : d.m);
  g_shape.push_back(d.n);
  if (a.ndim() == 1 || b.ndim() == 1) g = reshape(g, g_shape);
  Tensor ga, gb;
  if (a2.ndim() == 2 && b2.ndim() == 2) {
    ga = gemm(g, b2, {}, 1.0, 0.0, false, true);
    gb = gemm(a2, g, {}, 1.0, 0.0, true, false);
  } else if (b2.ndim() == 2) {
    // A batch of rows times one matrix: fold the batch into M (one GEMM each way).
    const int64_t k = a2.shape().back(), n = b2.shape().back();
    ga = reshape(gemm(reshape(g, {-1, n}), b2, {}, 1.0, 0.0, false, true), a2.shape());
    gb = gemm(reshape(a2, {-1, k}), reshape(g, {-1, n}), {}, 1.0, 0.0, true, false);
  } else {
    ga = matmul(g, transpose(b2, -1, -2));
    gb = matmul(transpose(a2, -1, -2), g);
  }
  ga = unbroadcast(ga, a2.shape());
  gb = unbroadcast(gb, b2.shape());
  if (a.ndim() == 1) ga = reshape(ga, a_shape);
  if (b.ndim() == 1) gb = reshape(gb, b_shape);
  return {ga, gb};
}

std::vector<Tensor> linear_vjp(const VjpArgs& args) {
  const Tensor &x = args.inputs[0], &w = args.inputs[1];
  const Tensor& g = G(args);
  const int64_t out = w.shape()[0], in = w.shape()[1];
  Tensor gx = matmul(g, w);
  Tensor gw = gemm(reshape(g, {-1, out}), reshape(x, {-1, in}), {}, 1.0, 0.0, true, false);
  std::vector<Tensor> grads{gx, gw};
  if (args.inputs.size() > 2 && args.inputs[2].defined()) {
    Axes lead;
    for (int d = 0; d + 1 < g.ndim(); ++d) lead.push_back(d);
    grads.push_back(lead.empty() ? g : sum(g, lead));
  }
  return grads;
}

std::vector<Tensor> gemm_vjp(const VjpArgs& args) {
  const Tensor &a = args.inputs[0], &b = args.inputs[1];
  const Tensor& g = G(args);
  const double alpha = args.ctx.f("alpha");
  const bool ta = args.ctx.b("trans_a"), tb = args.ctx.b("trans_b");
  // d op(A) = alpha g op(B)^T and d op(B) = alpha op(A)^T g, transposed back where needed.
  Tensor ga = ta ? gemm(b, g, {}, alpha, 0.0, tb, true) : gemm(g, b, {}, alpha, 0.0, false, !tb);
  Tensor gb = tb ? gemm(g, a, {}, alpha, 0.0, true, ta) : gemm(a, g, {}, alpha, 0.0, !ta, false);
  std::vector<Tensor> grads{ga, gb};
  if (args.inputs.size() > 2 && args.inputs[2].defined())
    grads.push_back(unbroadcast(g * args.ctx.f("beta"), args.inputs[2].shape()));
  return grads;
}

}  // namespace

MatmulDims matmul_dims(const Shape& a, const Shape& b, const std::string& where) {
  DS_CHECK(!a.empty() && !b.empty(), ShapeError, where, "operands need at least 1 dimension, got ",
           shape_str(a), " and ", shape_str(b));
  MatmulDims d;
  const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  d.m = a_vec ? 1 : a[a.size() - 2];
  d.k = a.back();
  const int64_t kb = b_vec ? b[0] : b[b.size() - 2];
  d.n = b_vec ? 1 : b.back();
  DS_CHECK(dims_match(d.k, kb), ShapeError, where, "inner dimensions differ: ", shape_str(a), " @ ",
           shape_str(b), " (", d.k, " != ", kb, ")");
  if (d.k == dyn) d.k = kb;
  d.a_batch = a_vec ? Shape{} : drop_last(a, 2);
  d.b_batch = b_vec ? Shape{} : drop_last(b, 2);
  d.batch = broadcast_shapes(d.a_batch, d.b_batch, where + "batch dimensions of " + shape_str(a) +
                                                       " and " + shape_str(b));
  d.out = d.batch;
  if (!a_vec) d.out.push_back(d.m);
  if (!b_vec) d.out.push_back(d.n);
  return d;
}

GemmDims gemm_dims(const Shape& a, const Shape& b, bool trans_a, bool trans_b,
                   const std::string& where) {
  DS_CHECK(a.size() == 2 && b.size() == 2, ShapeError, where, "expects 2-D a and b, got ",
           shape_str(a), " and ", shape_str(b));
  GemmDims d{trans_a ? a[1] : a[0], trans_a ? a[0] : a[1], trans_b ? b[0] : b[1]};
  const int64_t kb = trans_b ? b[1] : b[0];
  DS_CHECK(dims_match(d.k, kb), ShapeError, where, "inner dimensions differ: op(a) of ",
           shape_str(a), " has ", d.k, " columns, op(b) of ", shape_str(b), " has ", kb, " rows");
  return d;
}

namespace {

const OpRegistrar reg([] {
  register_op({
      .name = "matmul",
      .traits = kLibrary,
      .num_inputs = 2,
      .infer =
          [](const OpContext& c) {
            return one(checked_promote(c),
                       matmul_dims(c.inputs[0].shape, c.inputs[1].shape, c.where()).out);
          },
      .cost =
          [](const OpContext& c) {
            const auto d = matmul_dims(c.inputs[0].shape, c.inputs[1].shape, c.where());
            return gemm_cost(c, {{c.inputs[0].dtype, d.out}},
                             product(d.batch) * product({d.m, d.k, d.n}));
          },
      .reference =
          [](const KernelCall& kc) {
            const auto d = matmul_dims(kc.inputs[0].shape(), kc.inputs[1].shape(), "");
            const auto a = to_f64(kc.inputs[0]), b = to_f64(kc.inputs[1]);
            const auto ia = broadcast_index(d.a_batch, d.batch);
            const auto ib = broadcast_index(d.b_batch, d.batch);
            std::vector<double> c(static_cast<size_t>(numel(d.out)), 0.0);
            for (size_t i = 0; i < ia.size(); ++i)
              gemm_f64(a.data() + ia[i] * d.m * d.k, b.data() + ib[i] * d.k * d.n,
                       c.data() + i * d.m * d.n, d.m, d.k, d.n, false, false, 1.0);
            from_f64(c, kc.outputs[0]);
          },
      .vjp = matmul_vjp,
      .onnx = "MatMul",
  });

  register_op({
      .name = "linear",
      .traits = kLibrary,
      .num_inputs = 3,
      .min_inputs = 2,
      .infer =
          [](const OpContext& c) {
            const Shape &x = c.inputs[0].shape, &w = c.inputs[1].shape;
            DS_CHECK(!x.empty() && w.size() == 2, ShapeError, c.where(),
                     "expects x [..., in] and weight [out, in], got ", shape_str(x), " and ",
                     shape_str(w));
            DS_CHECK(dims_match(x.back(), w[1]), ShapeError, c.where(), "x ", shape_str(x),
                     " has ", x.back(), " features, weight ", shape_str(w), " expects ", w[1]);
            if (c.inputs.size() > 2)
              DS_CHECK(c.inputs[2].shape == Shape{w[0]}, ShapeError, c.where(), "bias ",
                       shape_str(c.inputs[2].shape), " must be [", w[0], "] for weight ",
                       shape_str(w));
            Shape out = drop_last(x, 1);
            out.push_back(w[0]);
            return one(checked_promote(c), out);
          },
      .cost =
          [](const OpContext& c) {
            const Shape &x = c.inputs[0].shape, &w = c.inputs[1].shape;
            Shape out = drop_last(x, 1);
            out.push_back(w[0]);
            return gemm_cost(c, {{c.inputs[0].dtype, out}}, product(x) * static_cast<double>(w[0]));
          },
      .reference =
          [](const KernelCall& kc) {
            const int64_t out = kc.inputs[1].dim(0), in = kc.inputs[1].dim(1);
            const int64_t rows = in == 0 ? kc.outputs[0].numel() / std::max<int64_t>(out, 1)
                                         : kc.inputs[0].numel() / in;
            const auto x = to_f64(kc.inputs[0]), w = to_f64(kc.inputs[1]);
            std::vector<double> y(static_cast<size_t>(rows * out), 0.0);
            if (kc.inputs.size() > 2) {
              const auto b = to_f64(kc.inputs[2]);
              for (int64_t r = 0; r < rows; ++r)
                for (int64_t o = 0; o < out; ++o) y[r * out + o] = b[o];
            }
            gemm_f64(x.data(), w.data(), y.data(), rows, in, out, false, true, 1.0);
            from_f64(y, kc.outputs[0]);
          },
      .vjp = linear_vjp,
  });

  register_op({
      .name = "gemm",
      .traits = kLibrary,
      .num_inputs = 3,
      .min_inputs = 2,
      .attrs = {{"alpha", AttrKind::Float, 1.0},
                {"beta", AttrKind::Float, 1.0},
                {"trans_a", AttrKind::Bool, false},
                {"trans_b", AttrKind::Bool, false}},
      .infer =
          [](const OpContext& c) {
            const auto d = gemm_dims(c.inputs[0].shape, c.inputs[1].shape, c.b("trans_a"),
                                     c.b("trans_b"), c.where());
            const Shape out{d.m, d.n};
            if (c.inputs.size() > 2) {
              const Shape& cs = c.inputs[2].shape;
              const Shape b = broadcast_shapes(cs, out, c.where() + "c");
              DS_CHECK(b == out && cs.size() <= 2, ShapeError, c.where(), "c ", shape_str(cs),
                       " does not broadcast to the result ", shape_str(out));
            }
            return one(checked_promote(c), out);
          },
      .cost =
          [](const OpContext& c) {
            const auto d = gemm_dims(c.inputs[0].shape, c.inputs[1].shape, c.b("trans_a"),
                                     c.b("trans_b"), c.where());
            return gemm_cost(c, {{c.inputs[0].dtype, {d.m, d.n}}}, product({d.m, d.k, d.n}));
          },
      .reference =
          [](const KernelCall& kc) {
            const bool ta = kc.ctx.b("trans_a"), tb = kc.ctx.b("trans_b");
            const auto d = gemm_dims(kc.inputs[0].shape(), kc.inputs[1].shape(), ta, tb, "");
            const auto a = to_f64(kc.inputs[0]), b = to_f64(kc.inputs[1]);
            std::vector<double> y(static_cast<size_t>(d.m * d.n), 0.0);
            if (kc.inputs.size() > 2) {
              const Tensor& c = kc.inputs[2];
              const auto cv = to_f64(c);
              const auto ic = broadcast_index(c.shape(), {d.m, d.n});
              for (size_t i = 0; i < y.size(); ++i) y[i] = kc.ctx.f("beta") * cv[ic[i]];
            }
            gemm_f64(a.data(), b.data(), y.data(), d.m, d.k, d.n, ta, tb, kc.ctx.f("alpha"));
            from_f64(y, kc.outputs[0]);
          },
      .vjp = gemm_vjp,
      .onnx = "Gemm",
  });
});

}  // namespace
}  // namespace ops

Tensor matmul(const Tensor& a, const Tensor& b) { return apply1("matmul", {a, b}); }

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return apply1("linear", {x, weight, bias});
}

Tensor gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta,
            bool trans_a, bool trans_b) {
  return apply1("gemm", {a, b, c},
                {{"alpha", alpha}, {"beta", beta}, {"trans_a", trans_a}, {"trans_b", trans_b}});
}

}  // namespace ds
