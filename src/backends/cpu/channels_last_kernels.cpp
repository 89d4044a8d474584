// conv2d, its backward ops and max_pool2d (+ backward) with `channels_last` on
// the CPU: the NHWC activations permuted to NCHW, the NCHW op's best CPU kernel
// (oneDNN, the direct kernels or the reference) run on them, the result permuted
// back. The CPU's convolution kernels are written for NCHW and blocked layouts;
// channels-last graphs are for the GPU's NHWC kernels, and on the CPU this keeps
// them correct at NCHW speed plus two copies. Registered above every NCHW kernel
// and accepting every channels-last call, so no NCHW kernel sees one.
#include <map>

#include "ds/tensor.h"
#include "ir/ops/conv_geometry.h"

namespace ds::cpu {
namespace {

// Which tensors of an op are activations (NHWC under channels_last); the others
// (the weight, the bias, the weight gradient) have the same layout in both.
struct Activations {
  std::vector<size_t> inputs;
  bool output;
};

const std::map<std::string, Activations>& activations() {
  static const std::map<std::string, Activations> m = {
      {"conv2d", {{0}, true}},
      {"conv2d_backward_input", {{0}, true}},
      {"conv2d_backward_weight", {{0, 1}, false}},
      {"max_pool2d", {{0}, true}},
      {"max_pool2d_backward", {{0, 1}, true}},
  };
  return m;
}

Shape nchw_shape(const Shape& nhwc) {
  return {nhwc[0], nhwc[3], nhwc[1], nhwc[2]};
}

void run_via_nchw(const KernelCall& kc) {
  const Activations& act = activations().at(kc.ctx.op.name);
  AttrMap attrs = kc.ctx.attrs;
  attrs["channels_last"] = false;
  OpContext ctx{kc.ctx.op, attrs, kc.ctx.inputs, kc.ctx.node};
  std::vector<Tensor> in = kc.inputs;
  for (size_t i : act.inputs) {
    in[i] = kc.inputs[i].permute({0, 3, 1, 2}).contiguous();
    ctx.inputs[i].shape = nchw_shape(ctx.inputs[i].shape);
  }
  std::vector<Tensor> out = kc.outputs;
  if (act.output) out[0] = Tensor::empty(nchw_shape(out[0].shape()), out[0].dtype());
  select_kernel(ctx, DeviceKind::CPU).fn(KernelCall{ctx, in, out});
  if (act.output) copy_into(out[0].permute({0, 2, 3, 1}), kc.outputs[0]);
}

const OpRegistrar reg([] {
  for (const auto& [op, _] : activations())
    register_kernel(op, DeviceKind::CPU,
                    {run_via_nchw, ops::is_channels_last, "nchw-permuted", 100});
});

}  // namespace
}  // namespace ds::cpu
