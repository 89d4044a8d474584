// scaled_dot_product_attention and its backward op: float64 reference kernels,
// CPU kernels composed of matmul and softmax, the VJP through the backward op.
#include "ir/ops/attention.h"

#include <limits>

#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

bool seq_before_heads(const OpContext& c) {
  const std::string& layout = c.s("layout");
  DS_CHECK(layout == "bhsd" || layout == "bshd", ValueError, c.where(),
           "layout must be 'bhsd' ([..., H, S, D]) or 'bshd' ([..., S, H, D]), got '", layout,
           "'");
  return layout == "bshd";
}

// `t` with the sequence and head axes in "bhsd" order ([..., H, S, D]).
TensorType as_bhsd(const OpContext& c, const TensorType& t) {
  if (!seq_before_heads(c)) return t;
  DS_CHECK(t.shape.size() >= 3, ShapeError, c.where(),
           "layout 'bshd' needs [..., S, H, D] inputs (rank >= 3), got ", t.str());
  TensorType r = t;
  std::swap(r.shape[r.shape.size() - 3], r.shape[r.shape.size() - 2]);
  return r;
}

}  // namespace

AttentionDims attention_dims(const OpContext& c) {
  const TensorType q = as_bhsd(c, c.inputs[0]), k = as_bhsd(c, c.inputs[1]),
                   v = as_bhsd(c, c.inputs[2]);
  DS_CHECK(q.shape.size() >= 2 && q.shape.size() == k.shape.size() &&
               q.shape.size() == v.shape.size(),
           ShapeError, c.where(), "q, k and v must have the same rank (at least 2), got ",
           shape_str(q.shape), ", ", shape_str(k.shape), ", ", shape_str(v.shape));
  DS_CHECK(is_floating(q.dtype) && k.dtype == q.dtype && v.dtype == q.dtype, TypeError, c.where(),
           "q, k and v must have one float dtype, got ", dtype_name(q.dtype), ", ",
           dtype_name(k.dtype), ", ", dtype_name(v.dtype));
  const size_t r = q.shape.size();
  for (size_t i = 0; i + 2 < r; ++i)
    DS_CHECK(k.shape[i] == q.shape[i] && v.shape[i] == q.shape[i], ShapeError, c.where(),
             "leading dims of q, k and v must be equal, got ", shape_str(q.shape), ", ",
             shape_str(k.shape), ", ", shape_str(v.shape));
  DS_CHECK(k.shape[r - 1] == q.shape[r - 1], ShapeError, c.where(),
           "q and k must have the same last dim (the head size), got ", shape_str(q.shape),
           " and ", shape_str(k.shape));
  DS_CHECK(v.shape[r - 2] == k.shape[r - 2], ShapeError, c.where(),
           "k and v must have the same number of keys (dim -2), got ", shape_str(k.shape), " and ",
           shape_str(v.shape));
  DS_CHECK(k.shape[r - 2] != 0, ShapeError, c.where(), "attention needs at least one key, got k ",
           shape_str(k.shape));
  AttentionDims d;
  d.sq = q.shape[r - 2];
  d.sk = k.shape[r - 2];
  d.d = q.shape[r - 1];
  d.dv = v.shape[r - 1];
  if (r >= 3) d.h = q.shape[r - 3];
  for (size_t i = 0; i + 3 < r; ++i) d.b *= q.shape[i];
  d.bshd = seq_before_heads(c);
  return d;
}

double attention_scale(const OpContext& c, int64_t d) {
  const double s = c.f("scale");
  return s != 0 ? s : 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(d, 1)));
}

namespace {

const std::vector<AttrSpec> kAttrs = {{"causal", AttrKind::Bool, false},
                                      {"scale", AttrKind::Float, 0.0},
                                      {"layout", AttrKind::String, std::string("bhsd")}};

// A kernel written for "bhsd" serving "bshd" too: the inputs (not lse, which is
// [..., H, S] either way) go through transposed copies, the outputs back.
KernelFn any_layout(KernelFn bhsd) {
  return [bhsd](const KernelCall& kc) {
    if (!seq_before_heads(kc.ctx)) return bhsd(kc);
    AttrMap attrs = kc.ctx.attrs;
    attrs["layout"] = std::string("bhsd");
    std::vector<TensorType> types;
    std::vector<Tensor> inputs;
    for (size_t i = 0; i < kc.inputs.size(); ++i) {
      const bool seq_heads = i < kLseInput;
      types.push_back(seq_heads ? as_bhsd(kc.ctx, kc.ctx.inputs[i]) : kc.ctx.inputs[i]);
      inputs.push_back(seq_heads ? transpose(kc.inputs[i], -3, -2).contiguous() : kc.inputs[i]);
    }
    const OpContext ctx{kc.ctx.op, attrs, types, kc.ctx.node};
    std::vector<Tensor> outputs;
    for (const TensorType& t : kc.ctx.op.infer(ctx))
      outputs.push_back(Tensor::empty(t.shape, t.dtype, kc.inputs[0].device()));
    bhsd(KernelCall{ctx, inputs, outputs});
    for (size_t i = 0; i < outputs.size(); ++i) {
      const bool is_lse = kc.ctx.op.name == "scaled_dot_product_attention" && i == 1;
      copy_into(is_lse ? outputs[i] : transpose(outputs[i], -3, -2), kc.outputs[i]);
    }
  };
}

// Softmax rows of q k^T * scale (masked) in float64, for batch b: p[i * sk + j].
// With `lse`, each row's log-sum-exp of the scaled, masked scores goes to
// (*lse)[b * sq + i].
std::vector<double> probabilities(const std::vector<double>& q, const std::vector<double>& k,
                                  const AttentionDims& d, int64_t b, double scale,
                                  bool causal, std::vector<double>* lse = nullptr) {
  std::vector<double> p(static_cast<size_t>(d.sq * d.sk));
  for (int64_t i = 0; i < d.sq; ++i) {
    double* row = &p[i * d.sk];
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < d.sk; ++j) {
      if (causal && j > i) {
        row[j] = -std::numeric_limits<double>::infinity();
        continue;
      }
      double s = 0;
      for (int64_t e = 0; e < d.d; ++e)
        s += q[(b * d.sq + i) * d.d + e] * k[(b * d.sk + j) * d.d + e];
      row[j] = s * scale;
      m = std::max(m, row[j]);
    }
    double total = 0;
    for (int64_t j = 0; j < d.sk; ++j) total += row[j] = std::exp(row[j] - m);
    for (int64_t j = 0; j < d.sk; ++j) row[j] /= total;
    if (lse) (*lse)[b * d.sq + i] = m + std::log(total);
  }
  return p;
}

void reference_forward(const KernelCall& kc) {
  const AttentionDims d = attention_dims(kc.ctx);
  const double scale = attention_scale(kc.ctx, d.d);
  const bool causal = kc.ctx.b("causal");
  const auto q = to_f64(kc.inputs[0]), k = to_f64(kc.inputs[1]), v = to_f64(kc.inputs[2]);
  std::vector<double> out(static_cast<size_t>(d.batch() * d.sq * d.dv), 0.0);
  std::vector<double> lse(static_cast<size_t>(d.batch() * d.sq));
  for (int64_t b = 0; b < d.batch(); ++b) {
    const auto p = probabilities(q, k, d, b, scale, causal, &lse);
    for (int64_t i = 0; i < d.sq; ++i)
      for (int64_t j = 0; j < d.sk; ++j)
        for (int64_t e = 0; e < d.dv; ++e)
          out[(b * d.sq + i) * d.dv + e] += p[i * d.sk + j] * v[(b * d.sk + j) * d.dv + e];
  }
  from_f64(out, kc.outputs[0]);
  from_f64(lse, kc.outputs[1]);
}

// dv = p^T g; dp = g v^T; ds = p (dp - rowsum(dp p)); dq = ds k scale; dk = ds^T q scale.
void reference_backward(const KernelCall& kc) {
  const AttentionDims d = attention_dims(kc.ctx);
  const double scale = attention_scale(kc.ctx, d.d);
  const bool causal = kc.ctx.b("causal");
  const auto q = to_f64(kc.inputs[0]), k = to_f64(kc.inputs[1]), v = to_f64(kc.inputs[2]);
  const auto g = to_f64(kc.inputs[4]);
  std::vector<double> dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
  for (int64_t b = 0; b < d.batch(); ++b) {
    const auto p = probabilities(q, k, d, b, scale, causal);
    for (int64_t i = 0; i < d.sq; ++i) {
      std::vector<double> dp(static_cast<size_t>(d.sk), 0.0);
      double dot = 0;
      for (int64_t j = 0; j < d.sk; ++j) {
        for (int64_t e = 0; e < d.dv; ++e)
          dp[j] += g[(b * d.sq + i) * d.dv + e] * v[(b * d.sk + j) * d.dv + e];
        dot += dp[j] * p[i * d.sk + j];
      }
      for (int64_t j = 0; j < d.sk; ++j) {
        const double pij = p[i * d.sk + j], ds = pij * (dp[j] - dot) * scale;
        for (int64_t e = 0; e < d.dv; ++e)
          dv[(b * d.sk + j) * d.dv + e] += pij * g[(b * d.sq + i) * d.dv + e];
        for (int64_t e = 0; e < d.d; ++e) {
          dq[(b * d.sq + i) * d.d + e] += ds * k[(b * d.sk + j) * d.d + e];
          dk[(b * d.sk + j) * d.d + e] += ds * q[(b * d.sq + i) * d.d + e];
        }
      }
    }
  }
  from_f64(dq, kc.outputs[0]);
  from_f64(dk, kc.outputs[1]);
  from_f64(dv, kc.outputs[2]);
}

// The additive mask: -inf above the diagonal (key j > query i), 0 elsewhere.
Tensor causal_mask(int64_t sq, int64_t sk, DType t) {
  Tensor m = Tensor::zeros({sq, sk}, DType::Float32);
  float* p = m.data<float>();
  for (int64_t i = 0; i < sq; ++i)
    for (int64_t j = i + 1; j < sk; ++j) p[i * sk + j] = -std::numeric_limits<float>::infinity();
  return m.to(t);
}

// The scaled, masked scores with the library's matmul kernels.
Tensor composed_scores(const KernelCall& kc, const AttentionDims& d) {
  const Tensor &q = kc.inputs[0], &k = kc.inputs[1];
  Tensor s = matmul(q, transpose(k, -2, -1)) * attention_scale(kc.ctx, d.d);
  if (kc.ctx.b("causal")) s = s + causal_mask(d.sq, d.sk, s.dtype());
  return s;
}

// The log-sum-exp output's type: float64 for float64 attention, else float32
// (what the fused kernels accumulate in).
TensorType lse_type(const OpContext& c) {
  const TensorType q = as_bhsd(c, c.inputs[0]);
  return {q.dtype == DType::Float64 ? DType::Float64 : DType::Float32,
          Shape(q.shape.begin(), q.shape.end() - 1)};
}

const OpRegistrar reg([] {
  register_op({
      .name = "scaled_dot_product_attention",
      .traits = kLibrary,
      .num_inputs = 3,
      .attrs = kAttrs,
      .infer =
          [](const OpContext& c) {
            attention_dims(c);
            Shape s = c.inputs[0].shape;
            s.back() = c.inputs[2].shape.back();
            return std::vector<TensorType>{{c.inputs[0].dtype, s}, lse_type(c)};
          },
      .cost =
          [](const OpContext& c) {
            const AttentionDims d = attention_dims(c);
            const double pairs = static_cast<double>(d.batch() * d.sq * d.sk);
            const double bytes = static_cast<double>(dtype_size(c.inputs[0].dtype)) *
                                 static_cast<double>(d.batch()) *
                                 static_cast<double>(d.sq * (d.d + d.dv) + d.sk * (d.d + d.dv));
            return Cost{pairs * static_cast<double>(2 * (d.d + d.dv)), bytes};
          },
      .reference = any_layout(reference_forward),
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            DS_CHECK(!a.grads[1].defined(), ValueError, a.ctx.where(),
                     "the log-sum-exp output (1) is not differentiable");
            if (!a.grads[0].defined()) return {Tensor(), Tensor(), Tensor()};
            return apply(
                "scaled_dot_product_attention_backward",
                {a.inputs[0], a.inputs[1], a.inputs[2], a.outputs[0], a.grads[0], a.outputs[1]},
                a.ctx.attrs);
          },
  });
  register_op({
      .name = "scaled_dot_product_attention_backward",
      .traits = kLibrary,
      .num_inputs = kLseInput + 1,
      .min_inputs = kLseInput,  // lse, the forward's log-sum-exp, is optional: kernels recompute it
      .attrs = kAttrs,
      .infer =
          [](const OpContext& c) {
            attention_dims(c);
            Shape o = c.inputs[0].shape;
            o.back() = c.inputs[2].shape.back();
            const TensorType want{c.inputs[0].dtype, o};
            for (int i : {3, 4})
              DS_CHECK(c.inputs[i] == want, ShapeError, c.where(), i == 3 ? "out" : "grad_out",
                       " must be ", want.str(), ", got ", c.inputs[i].str());
            if (c.inputs.size() > kLseInput)
              DS_CHECK(c.inputs[kLseInput] == lse_type(c), ShapeError, c.where(), "lse must be ",
                       lse_type(c).str(), ", got ", c.inputs[kLseInput].str());
            return std::vector<TensorType>{c.inputs[0], c.inputs[1], c.inputs[2]};
          },
      .cost =
          [](const OpContext& c) {
            const AttentionDims d = attention_dims(c);
            const double pairs = static_cast<double>(d.batch() * d.sq * d.sk);
            return Cost{pairs * static_cast<double>(4 * d.d + 3 * d.dv),
                        static_cast<double>(dtype_size(c.inputs[0].dtype) * d.batch()) *
                            static_cast<double>(2 * d.sq * (d.d + 2 * d.dv) + 4 * d.sk * d.d)};
          },
      .reference = any_layout(reference_backward),
  });
  register_kernel("scaled_dot_product_attention", DeviceKind::CPU,
                  {.fn = any_layout(
                       [](const KernelCall& kc) {
                         const AttentionDims d = attention_dims(kc.ctx);
                         const Tensor s = composed_scores(kc, d);
                         copy_into(matmul(softmax(s, -1), kc.inputs[2]), kc.outputs[0]);
                         copy_into(logsumexp(s, {-1}).to(kc.outputs[1].dtype()), kc.outputs[1]);
                       }),
                   .impl = "matmul-softmax",
                   .priority = 5});
  register_kernel(
      "scaled_dot_product_attention_backward", DeviceKind::CPU,
      {.fn = any_layout(
           [](const KernelCall& kc) {
             const AttentionDims d = attention_dims(kc.ctx);
             const double scale = attention_scale(kc.ctx, d.d);
             const Tensor &q = kc.inputs[0], &k = kc.inputs[1], &v = kc.inputs[2];
             const Tensor& g = kc.inputs[4];
             const Tensor p = softmax(composed_scores(kc, d), -1);
             const Tensor dp = matmul(g, transpose(v, -2, -1));
             const Tensor ds = p * (dp - sum(dp * p, {-1}, true)) * scale;
             copy_into(matmul(ds, k), kc.outputs[0]);
             copy_into(matmul(transpose(ds, -2, -1), q), kc.outputs[1]);
             copy_into(matmul(transpose(p, -2, -1), g), kc.outputs[2]);
           }),
       .impl = "matmul-softmax",
       .priority = 5});
});

}  // namespace
}  // namespace ops

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    double scale, const std::string& layout) {
  return apply1("scaled_dot_product_attention", {q, k, v},
                {{"causal", causal}, {"scale", scale}, {"layout", layout}});
}

}  // namespace ds
