// Graph sources: placeholders (fed at run time) and constants.
#include "ir/ops/op_helpers.h"

namespace ds::ops {
namespace {

const OpRegistrar reg([] {
  register_op({.name = "placeholder",
               .traits = kSource,
               .num_inputs = 0,
               .infer = [](const OpContext& c) -> std::vector<TensorType> {
                 throw ValueError(c.where() + "placeholders are typed when created");
               }});
  register_op({.name = "constant",
               .traits = kSource,
               .num_inputs = 0,
               .attrs = {{"value", AttrKind::Tensor, std::nullopt}},
               .infer =
                   [](const OpContext& c) {
                     const Tensor& v = c.tensor("value");
                     return one(v.dtype(), v.shape());
                   },
               .reference = [](const KernelCall& k) { copy_into(k.ctx.tensor("value"), k.outputs[0]); }});
});

}  // namespace
}  // namespace ds::ops
