// Eager dispatch: ops on concrete tensors run at once through the same OpDefs;
// ops on symbolic tensors add nodes to their graph.
#include "ds/ops.h"
#include "ds/profile.h"
#include "runtime/dispatch.h"
#include "runtime/serial_ops.h"

namespace ds {

void run_kernel_into(const OpContext& ctx, const KernelEntry& kernel,
                     const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) {
  std::vector<Tensor> in;
  in.reserve(inputs.size());
  for (const Tensor& t : inputs) in.push_back(t.contiguous());
  kernel.fn(KernelCall{ctx, in, outputs});
}

std::vector<Tensor> run_kernel(const OpContext& ctx, const KernelEntry& kernel,
                               const std::vector<Tensor>& inputs,
                               const std::vector<TensorType>& types) {
  std::vector<Tensor> out;
  out.reserve(types.size());
  for (const TensorType& t : types) out.push_back(Tensor::empty(t.shape, t.dtype));
  run_kernel_into(ctx, kernel, inputs, out);
  return out;
}

namespace {

// The device an op's inputs share; mixing devices is an error naming the input.
Device common_device(const std::vector<Tensor>& inputs, const std::string& where) {
  Device device = Device::cpu();
  int first = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    if (first < 0) {
      device = inputs[i].device();
      first = static_cast<int>(i);
      continue;
    }
    DS_CHECK(inputs[i].device() == device, ValueError, where, "input ", i, " is on ",
             inputs[i].device().str(), " but input ", first, " is on ", device.str(),
             "; move them to one device with .to(device)");
  }
  return device;
}

}  // namespace

std::vector<Tensor> apply(const std::string& op_name, const std::vector<Tensor>& inputs,
                          const AttrMap& attrs, const std::string& name) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.is_symbolic()) return Graph(t.impl().graph).add(op_name, inputs, attrs, name);
  const OpDef& op = get_op(op_name);
  const std::string where = op_name + ": ";
  const size_t count = checked_arity(op, inputs, where);
  std::vector<Tensor> in(inputs.begin(), inputs.begin() + count);
  std::vector<TensorType> types;
  const Device device = common_device(in, where);
  for (const Tensor& t : in) types.push_back({t.dtype(), t.shape()});
  AttrMap full = complete_attrs(op, attrs, where);
  OpContext ctx{op, full, types, ""};
  const auto out_types = op.infer(ctx);
  if (device.kind == DeviceKind::CPU) {
    const KernelEntry& kernel = select_kernel(ctx, DeviceKind::CPU);
    const SerialOpScope serial(runs_serially(op.estimate(ctx, out_types)));
    OpEventScope profile_event(ctx, kernel, out_types);
    return run_kernel(ctx, kernel, in, out_types);
  }
  // On a device: its kernel, or (an op it has none for) the CPU's, with the inputs
  // copied over and the results copied back, so tensors stay where the user put them.
  const KernelEntry& kernel = select_kernel(ctx, device.kind);
  if (kernel.impl != "reference") {
    std::vector<Tensor> out;
    for (const TensorType& t : out_types) out.push_back(Tensor::empty(t.shape, t.dtype, device));
    OpEventScope profile_event(ctx, kernel, out_types,
                               device.kind == DeviceKind::CUDA ? device.index : -1);
    run_kernel_into(ctx, kernel, in, out);
    return out;
  }
  std::vector<Tensor> host;
  for (const Tensor& t : in) host.push_back(t.defined() ? t.to(Device::cpu()) : t);
  const KernelEntry& cpu_kernel = select_kernel(ctx, DeviceKind::CPU);
  std::vector<Tensor> out;
  {
    OpEventScope profile_event(ctx, cpu_kernel, out_types);
    out = run_kernel(ctx, cpu_kernel, host, out_types);
  }
  for (Tensor& t : out) t = t.to(device);
  return out;
}

Tensor apply1(const std::string& op, const std::vector<Tensor>& inputs, const AttrMap& attrs,
              const std::string& name) {
  return apply(op, inputs, attrs, name)[0];
}

}  // namespace ds
