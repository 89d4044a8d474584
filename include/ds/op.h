// The OpDef registry: the single source of truth for an op. Name, traits,
// attribute schema, type inference, cost, reference kernel and VJP rule live
// together; backends register fast kernels for the same op name.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ds/graph.h"

namespace ds {

enum OpTrait : uint32_t {
  kElementwise = 1u << 0,  // output[i] depends on input[i] only (after broadcast)
  kReduction = 1u << 1,
  kFusible = 1u << 2,      // may join a generated loop region
  kCommutative = 1u << 3,
  kShapeOnly = 1u << 4,    // moves data without arithmetic (reshape, transpose, ...)
  kRandom = 1u << 5,
  kSource = 1u << 6,       // placeholder/constant
  kLibrary = 1u << 7,      // heavy op served by a library kernel (matmul, conv)
};

enum class AttrKind { Int, Float, Bool, String, Ints, Floats, DType, Tensor };

struct AttrSpec {
  std::string name;
  AttrKind kind;
  std::optional<Attr> default_value;  // nullopt: required
};

// What shape inference, cost and kernels see of a node.
struct OpContext {
  const OpDef& op;
  const AttrMap& attrs;
  std::vector<TensorType> inputs;
  std::string node;  // for messages: "%3 matmul 'c'"

  int64_t i(const std::string& name) const;
  double f(const std::string& name) const;
  bool b(const std::string& name) const;
  const std::string& s(const std::string& name) const;
  const std::vector<int64_t>& ints(const std::string& name) const;
  const std::vector<double>& floats(const std::string& name) const;
  DType dtype(const std::string& name) const;
  const Tensor& tensor(const std::string& name) const;
  bool has(const std::string& name) const { return attrs.count(name) > 0; }
  // "matmul (%3 'c'): " — prefix for error messages.
  std::string where() const;
};

struct Cost {
  double flops = 0;
  double bytes = 0;  // bytes read + written
};

// A kernel call: inputs are contiguous, outputs are allocated (contiguous) with
// the inferred types.
struct KernelCall {
  const OpContext& ctx;
  const std::vector<Tensor>& inputs;
  std::vector<Tensor>& outputs;
};
using KernelFn = std::function<void(const KernelCall&)>;

// Reverse-mode rule: builds gradient expressions for each input with ds ops.
struct VjpArgs {
  const OpContext& ctx;
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
  std::vector<Tensor> grads;  // one per output; undefined where no gradient flows
};
using VjpFn = std::function<std::vector<Tensor>(const VjpArgs&)>;

struct OpDef {
  std::string name;
  uint32_t traits = 0;
  int num_inputs = 1;  // -1: variadic
  int min_inputs = -1; // with optional trailing inputs (e.g. bias): the fewest allowed
  std::vector<AttrSpec> attrs;
  std::function<std::vector<TensorType>(const OpContext&)> infer;  // mandatory
  std::function<Cost(const OpContext&)> cost;  // default: elementwise estimate
  KernelFn reference;                          // the oracle
  VjpFn vjp;                                   // empty: not differentiable
  std::string onnx;                            // ONNX op type, if one maps directly

  bool has(OpTrait t) const { return (traits & t) != 0; }
  Cost estimate(const OpContext& ctx, const std::vector<TensorType>& outputs) const;
};

const OpDef& get_op(const std::string& name);  // throws NotFoundError listing near names
const OpDef* find_op(const std::string& name);
std::vector<std::string> op_names();
void register_op(OpDef def);

// Fast kernels, per op and device kind; `supports` may decline a call (then the
// next kernel, finally the reference kernel, runs).
struct KernelEntry {
  KernelFn fn;
  std::function<bool(const OpContext&)> supports;  // empty: supports everything
  std::string impl;  // "onednn", "vectorized", ...: shown by profile/explain
  int priority = 0;  // higher first
};
void register_kernel(const std::string& op, DeviceKind device, KernelEntry entry);
// The kernel that runs `ctx` on `device`: the best supporting fast kernel or the reference.
const KernelEntry& select_kernel(const OpContext& ctx, DeviceKind device);

// Fills attribute defaults and checks kinds; throws TypeError/ValueError naming the op.
AttrMap complete_attrs(const OpDef& op, const AttrMap& attrs, const std::string& where);

// Checks the input count of `op`, after dropping trailing undefined (omitted optional)
// inputs; returns that count.
size_t checked_arity(const OpDef& op, const std::vector<Tensor>& inputs, const std::string& where);

// Registers ops at load time: static OpRegistrar r([] { register_op(...); });
struct OpRegistrar {
  explicit OpRegistrar(void (*fn)()) { fn(); }
};

}  // namespace ds
