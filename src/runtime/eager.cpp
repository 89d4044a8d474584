// Eager dispatch: ops on concrete tensors run at once through the same OpDefs;
// ops on symbolic tensors add nodes to their graph.
#include "ds/ops.h"
#include "ds/profile.h"
#include "runtime/dispatch.h"

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

std::vector<Tensor> apply(const std::string& op_name, const std::vector<Tensor>& inputs,
                          const AttrMap& attrs, const std::string& name) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.is_symbolic()) return Graph(t.impl().graph).add(op_name, inputs, attrs, name);
  const OpDef& op = get_op(op_name);
  const std::string where = op_name + ": ";
  const size_t count = checked_arity(op, inputs, where);
  std::vector<Tensor> in(inputs.begin(), inputs.begin() + count);
  std::vector<TensorType> types;
  for (const Tensor& t : in) {
    DS_CHECK(t.device().kind == DeviceKind::CPU, UnavailableError, where,
             "eager execution on ", t.device().str(), " needs the CUDA backend");
    types.push_back({t.dtype(), t.shape()});
  }
  AttrMap full = complete_attrs(op, attrs, where);
  OpContext ctx{op, full, types, ""};
  const auto out_types = op.infer(ctx);
  const KernelEntry& kernel = select_kernel(ctx, DeviceKind::CPU);
  OpEventScope profile_event(ctx, kernel, out_types);
  return run_kernel(ctx, kernel, in, out_types);
}

Tensor apply1(const std::string& op, const std::vector<Tensor>& inputs, const AttrMap& attrs,
              const std::string& name) {
  return apply(op, inputs, attrs, name)[0];
}

}  // namespace ds
