// The matmul_softmax OpDef: inference through matmul's shape rule on op(b), the
// float64 reference composed of the existing ops, and a VJP through softmax's and
// matmul's rules (the mask's gradient summed over the dims it broadcasts along).
#include "ir/ops/matmul_softmax.h"

#include "ds/op.h"
#include "ds/ops.h"
#include "ir/ops/linalg_shapes.h"
#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

// b's shape as the product reads it: the last two dims swapped under trans_b.
Shape product_rhs_shape(const OpContext& c) {
  Shape s = c.inputs[1].shape;
  if (c.b("trans_b") && s.size() >= 2) std::swap(s[s.size() - 1], s[s.size() - 2]);
  return s;
}

MatmulDims checked_dims(const OpContext& c) {
  const TensorType &a = c.inputs[0], &b = c.inputs[1];
  DS_CHECK(a.shape.size() >= 2 && b.shape.size() >= 2, ShapeError, c.where(),
           "expects a [..., M, K] and b of rank >= 2, got ", shape_str(a.shape), " and ",
           shape_str(b.shape));
  DS_CHECK(a.dtype == b.dtype && is_floating(a.dtype), TypeError, c.where(),
           "expects a and b of one floating dtype, got ", dtype_name(a.dtype), " and ",
           dtype_name(b.dtype));
  MatmulDims d = matmul_dims(a.shape, product_rhs_shape(c), c.where());
  if (c.inputs.size() > 2) {
    const TensorType& mask = c.inputs[2];
    DS_CHECK(mask.dtype == a.dtype, TypeError, c.where(), "mask must be ", dtype_name(a.dtype),
             ", got ", dtype_name(mask.dtype));
    DS_CHECK(broadcast_shapes(d.out, mask.shape, c.where()) == d.out, ShapeError, c.where(),
             "mask ", shape_str(mask.shape), " must broadcast to the scores ", shape_str(d.out));
  }
  return d;
}

Tensor product_rhs(const Tensor& b, bool trans_b) {
  return trans_b ? transpose(b, -2, -1) : b;
}

void reference(const KernelCall& k) {
  const Tensor a = cast(k.inputs[0], DType::Float64), b = cast(k.inputs[1], DType::Float64);
  Tensor z = matmul(a, product_rhs(b, k.ctx.b("trans_b"))) * k.ctx.f("scale");
  if (k.inputs.size() > 2) z = z + cast(k.inputs[2], DType::Float64);
  copy_into(softmax(z, -1), k.outputs[0]);
}

// y = softmax(z), z = scale * a @ B + mask: dz = y * (g - sum(g * y)); a and B
// then take matmul's rule on scale * dz (which sums over broadcast batch dims).
std::vector<Tensor> vjp(const VjpArgs& v) {
  const Tensor &a = v.inputs[0], &b = v.inputs[1], &y = v.outputs[0], &g = v.grads[0];
  const bool trans_b = v.ctx.b("trans_b");
  const Tensor dz = y * (g - sum(g * y, {-1}, true));
  const Tensor rhs = product_rhs(b, trans_b);
  const OpDef& mm = get_op("matmul");
  const OpContext mc{mm, {}, {v.ctx.inputs[0], {b.dtype(), rhs.shape()}}, v.ctx.node};
  const auto grads = mm.vjp(VjpArgs{mc, {a, rhs}, {}, {dz * v.ctx.f("scale")}});
  std::vector<Tensor> out = {grads[0], product_rhs(grads[1], trans_b)};
  if (v.inputs.size() > 2) out.push_back(unbroadcast(dz, v.inputs[2].shape()));
  return out;
}

const OpRegistrar reg([] {
  register_op({
      .name = "matmul_softmax",
      .traits = kLibrary,
      .num_inputs = 3,
      .min_inputs = 2,
      .attrs = {{"trans_b", AttrKind::Bool, false}, {"scale", AttrKind::Float, 1.0}},
      .infer = [](const OpContext& c) { return one(c.inputs[0].dtype, checked_dims(c).out); },
      .cost =
          [](const OpContext& c) {
            const auto d = checked_dims(c);
            // Unknown (symbolic) extents count as 1.
            auto count = [](int64_t v) { return v < 0 ? 1.0 : static_cast<double>(v); };
            const double mn = count(numel(d.batch)) * count(d.m) * count(d.n);
            const double size = static_cast<double>(dtype_size(c.inputs[0].dtype));
            // The product, then about six operations per score for the softmax.
            double bytes = count(numel(c.inputs[0].shape)) + count(numel(c.inputs[1].shape)) + mn;
            if (c.inputs.size() > 2) bytes += count(numel(c.inputs[2].shape));
            return Cost{mn * (2.0 * count(d.k) + 6.0), size * bytes};
          },
      .reference = reference,
      .vjp = vjp,
  });
});

}  // namespace
}  // namespace ops

Tensor matmul_softmax(const Tensor& a, const Tensor& b, bool trans_b, double scale,
                      const Tensor& mask) {
  std::vector<Tensor> in = {a, b};
  if (mask.defined()) in.push_back(mask);
  return apply1("matmul_softmax", in, {{"trans_b", trans_b}, {"scale", scale}});
}

}  // namespace ds
