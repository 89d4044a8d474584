// `fused`: a generated loop over an elementwise region (see codegen/kernel_ir.h),
// made by the loop-fusion pass. The reference kernel interprets the region with
// each op's own reference kernel; backends register compiled kernels.
#include "codegen/kernel_ir.h"
#include "ir/ops/op_helpers.h"

namespace ds::ops {
namespace {

const OpRegistrar reg([] {
  register_op({
      .name = "fused",
      .traits = kFusible,
      .num_inputs = -1,
      .attrs = {{"region", AttrKind::String, std::nullopt}},
      .infer =
          [](const OpContext& c) {
            const codegen::KernelIR& ir = codegen::cached_kernel_ir(c.s("region"));
            DS_CHECK(c.inputs.size() == ir.inputs.size(), ValueError, c.where(),
                     "the region takes ", ir.inputs.size(), " inputs, got ", c.inputs.size());
            for (size_t i = 0; i < ir.inputs.size(); ++i)
              DS_CHECK(c.inputs[i] == ir.inputs[i], TypeError, c.where(), "input ", i, " must be ",
                       ir.inputs[i].str(), ", got ", c.inputs[i].str());
            return ir.result_types();
          },
      .cost =
          [](const OpContext& c) {
            const codegen::KernelIR& ir = codegen::cached_kernel_ir(c.s("region"));
            const double n = static_cast<double>(numel(ir.shape));
            Cost cost{n * static_cast<double>(ir.insts.size()), 0};
            for (const auto& t : ir.inputs)
              cost.bytes += static_cast<double>(numel(t.shape) * dtype_size(t.dtype));
            for (const auto& t : ir.result_types())
              cost.bytes += static_cast<double>(numel(t.shape) * dtype_size(t.dtype));
            return cost;
          },
      .reference =
          [](const KernelCall& k) {
            const auto out =
                codegen::interpret(codegen::cached_kernel_ir(k.ctx.s("region")), k.inputs);
            for (size_t i = 0; i < out.size(); ++i) copy_into(out[i], k.outputs[i]);
          },
  });
});

}  // namespace
}  // namespace ds::ops
