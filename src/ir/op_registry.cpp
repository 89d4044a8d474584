#include <algorithm>
#include <map>
#include <mutex>

#include "ds/op.h"
#include "ir/kernel_inventory.h"

namespace ds {
namespace {

struct Registry {
  std::map<std::string, OpDef> ops;
  std::map<std::pair<std::string, DeviceKind>, std::vector<KernelEntry>> kernels;
  std::map<std::string, KernelEntry> reference_entries;
};

Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

const char* kind_name(AttrKind k) {
  switch (k) {
    case AttrKind::Int: return "int";
    case AttrKind::Float: return "float";
    case AttrKind::Bool: return "bool";
    case AttrKind::String: return "string";
    case AttrKind::Ints: return "list of ints";
    case AttrKind::Floats: return "list of floats";
    case AttrKind::DType: return "dtype";
    case AttrKind::Tensor: return "tensor";
  }
  return "?";
}

// Converts between compatible kinds (int -> float, int -> ints) so callers may
// pass `stride=2` for `stride=[2]`.
bool coerce(AttrKind kind, Attr& a) {
  switch (kind) {
    case AttrKind::Int:
      if (auto* b = std::get_if<bool>(&a)) a = static_cast<int64_t>(*b);
      return std::holds_alternative<int64_t>(a);
    case AttrKind::Float:
      if (auto* i = std::get_if<int64_t>(&a)) a = static_cast<double>(*i);
      return std::holds_alternative<double>(a);
    case AttrKind::Bool:
      if (auto* i = std::get_if<int64_t>(&a)) a = *i != 0;
      return std::holds_alternative<bool>(a);
    case AttrKind::String: return std::holds_alternative<std::string>(a);
    case AttrKind::Ints:
      if (auto* i = std::get_if<int64_t>(&a)) a = std::vector<int64_t>{*i};
      return std::holds_alternative<std::vector<int64_t>>(a);
    case AttrKind::Floats:
      if (auto* f = std::get_if<double>(&a)) a = std::vector<double>{*f};
      if (auto* v = std::get_if<std::vector<int64_t>>(&a))
        a = std::vector<double>(v->begin(), v->end());
      return std::holds_alternative<std::vector<double>>(a);
    case AttrKind::DType:
      if (auto* s = std::get_if<std::string>(&a)) a = dtype_from_name(*s);
      return std::holds_alternative<DType>(a);
    case AttrKind::Tensor: return std::holds_alternative<Tensor>(a);
  }
  return false;
}

template <typename T> const T& get_attr(const OpContext& c, const std::string& name) {
  auto it = c.attrs.find(name);
  DS_CHECK(it != c.attrs.end(), ValueError, c.where(), "missing attribute '", name, "'");
  const T* v = std::get_if<T>(&it->second);
  DS_CHECK(v, TypeError, c.where(), "attribute '", name, "' has the wrong kind: ",
           attr_str(it->second));
  return *v;
}

}  // namespace

std::string OpContext::where() const {
  return node.empty() ? op.name + ": " : op.name + " (" + node + "): ";
}
int64_t OpContext::i(const std::string& n) const { return get_attr<int64_t>(*this, n); }
double OpContext::f(const std::string& n) const { return get_attr<double>(*this, n); }
bool OpContext::b(const std::string& n) const { return get_attr<bool>(*this, n); }
const std::string& OpContext::s(const std::string& n) const {
  return get_attr<std::string>(*this, n);
}
const std::vector<int64_t>& OpContext::ints(const std::string& n) const {
  return get_attr<std::vector<int64_t>>(*this, n);
}
const std::vector<double>& OpContext::floats(const std::string& n) const {
  return get_attr<std::vector<double>>(*this, n);
}
DType OpContext::dtype(const std::string& n) const { return get_attr<DType>(*this, n); }
const Tensor& OpContext::tensor(const std::string& n) const { return get_attr<Tensor>(*this, n); }

Cost OpDef::estimate(const OpContext& ctx, const std::vector<TensorType>& outs) const {
  if (cost) return cost(ctx);
  Cost c;
  auto bytes = [](const TensorType& t) {
    const int64_t n = numel(t.shape);
    return n < 0 ? 0.0 : static_cast<double>(n) * dtype_size(t.dtype);
  };
  for (const auto& t : ctx.inputs) c.bytes += bytes(t);
  for (const auto& t : outs) {
    c.bytes += bytes(t);
    if (!has(kShapeOnly) && !has(kSource)) c.flops += std::max<int64_t>(numel(t.shape), 0);
  }
  return c;
}

void register_op(OpDef def) {
  DS_CHECK(def.infer, ValueError, "register_op(", def.name, "): shape inference is mandatory");
  auto& r = registry();
  DS_CHECK(!r.ops.count(def.name), ValueError, "register_op: op '", def.name,
           "' is already registered");
  std::string name = def.name;
  KernelEntry ref{def.reference, {}, "reference", -1000};
  r.ops.emplace(name, std::move(def));
  r.reference_entries.emplace(name, std::move(ref));
}

const OpDef* find_op(const std::string& name) {
  auto& r = registry();
  auto it = r.ops.find(name);
  return it == r.ops.end() ? nullptr : &it->second;
}

const OpDef& get_op(const std::string& name) {
  if (const OpDef* op = find_op(name)) return *op;
  // Suggest names sharing a prefix.
  std::string near;
  for (const auto& [n, _] : registry().ops)
    if (n.compare(0, 3, name, 0, 3) == 0) near += (near.empty() ? "" : ", ") + n;
  throw NotFoundError("unknown op '" + name + "'" +
                      (near.empty() ? "" : "; did you mean one of: " + near + "?"));
}

std::vector<std::string> op_names() {
  std::vector<std::string> v;
  for (const auto& [n, _] : registry().ops) v.push_back(n);
  return v;
}

void register_kernel(const std::string& op, DeviceKind device, KernelEntry entry) {
  auto& list = registry().kernels[{op, device}];
  list.push_back(std::move(entry));
  std::stable_sort(list.begin(), list.end(),
                   [](const KernelEntry& a, const KernelEntry& b) { return a.priority > b.priority; });
}

std::vector<std::string> kernel_impls(const std::string& op, DeviceKind device) {
  std::vector<std::string> impls;
  auto it = registry().kernels.find({op, device});
  if (it != registry().kernels.end())
    for (const auto& k : it->second) impls.push_back(k.impl);
  return impls;
}

const KernelEntry& select_kernel(const OpContext& ctx, DeviceKind device) {
  auto& r = registry();
  auto it = r.kernels.find({ctx.op.name, device});
  if (it != r.kernels.end())
    for (const auto& k : it->second)
      if (!k.supports || k.supports(ctx)) return k;
  const KernelEntry& ref = r.reference_entries.at(ctx.op.name);
  DS_CHECK(ref.fn, UnavailableError, ctx.where(), "no kernel for this op on ",
           device == DeviceKind::CPU ? "cpu" : "cuda");
  return ref;
}

size_t checked_arity(const OpDef& op, const std::vector<Tensor>& inputs, const std::string& where) {
  size_t count = inputs.size();
  while (count > 0 && !inputs[count - 1].defined()) --count;
  const int min_in = op.min_inputs >= 0 ? op.min_inputs : op.num_inputs;
  DS_CHECK(op.num_inputs < 0 ||
               (static_cast<int>(count) >= min_in && static_cast<int>(count) <= op.num_inputs),
           ValueError, where, "expected ",
           min_in == op.num_inputs ? std::to_string(op.num_inputs)
                                   : std::to_string(min_in) + " to " + std::to_string(op.num_inputs),
           " inputs, got ", count);
  for (size_t i = 0; i < count; ++i)
    DS_CHECK(inputs[i].defined(), ValueError, where, "input ", i, " is undefined");
  return count;
}

AttrMap complete_attrs(const OpDef& op, const AttrMap& attrs, const std::string& where) {
  AttrMap out;
  for (const auto& spec : op.attrs) {
    auto it = attrs.find(spec.name);
    if (it == attrs.end()) {
      DS_CHECK(spec.default_value.has_value(), ValueError, where, "required attribute '",
               spec.name, "' (", kind_name(spec.kind), ") is missing");
      out.emplace(spec.name, *spec.default_value);
      continue;
    }
    Attr a = it->second;
    DS_CHECK(coerce(spec.kind, a), TypeError, where, "attribute '", spec.name, "' expects ",
             kind_name(spec.kind), ", got ", attr_str(it->second));
    out.emplace(spec.name, std::move(a));
  }
  for (const auto& [name, value] : attrs) {
    if (out.count(name)) continue;
    std::string known;
    for (const auto& s : op.attrs) known += (known.empty() ? "" : ", ") + s.name;
    throw ValueError(where + "unknown attribute '" + name + "'; " +
                     (known.empty() ? "this op takes none" : "expected one of: " + known));
  }
  return out;
}

}  // namespace ds
