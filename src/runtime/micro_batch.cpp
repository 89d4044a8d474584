#include "runtime/micro_batch.h"

#include <algorithm>
#include <optional>
#include <set>

#include "ds/op.h"
#include "ds/ops.h"
#include "passes/rewriter.h"

namespace ds {
namespace {

int norm_axis(int64_t axis, size_t rank) { return static_cast<int>(axis < 0 ? axis + static_cast<int64_t>(rank) : axis); }

// Ops whose first input is per-sample along axis 0 and whose other inputs (weights,
// bias, statistics) are shared by all samples; a fused op's residual is per-sample too.
const std::set<std::string>& per_sample_ops() {
  static const std::set<std::string> s = {
      "linear", "matmul", "fused_linear", "conv2d", "fused_conv2d", "conv_transpose2d",
      "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "global_avg_pool2d", "batch_norm",
      "layer_norm", "rms_norm", "group_norm", "softmax", "log_softmax", "reshape", "flatten",
      "permute", "squeeze", "slice", "concat", "tril", "triu", "cast"};
  return s;
}

// Does `n` use axis 0 of its input as more than a batch (reduce, move or cut it)?
std::string axis0_use(const Node& n, size_t rank) {
  const std::string& op = n.op->name;
  auto has_axis0 = [&](const char* attr, bool empty_means_all) {
    auto it = n.attrs.find(attr);
    if (it == n.attrs.end()) return false;
    if (const auto* one = std::get_if<int64_t>(&it->second)) return norm_axis(*one, rank) == 0;
    const auto& v = std::get<std::vector<int64_t>>(it->second);
    if (v.empty()) return empty_means_all;
    if (op == "permute") return v[0] != 0;
    return std::any_of(v.begin(), v.end(), [&](int64_t a) { return norm_axis(a, rank) == 0; });
  };
  if (n.op->has(kReduction) && (has_axis0("axes", true) || has_axis0("axis", false)))
    return "reduces axis 0";
  if (has_axis0("axis", false) || (op == "permute" && has_axis0("axes", false)) ||
      (op == "squeeze" && has_axis0("axes", true)))
    return "works along axis 0";
  return "";
}

}  // namespace

std::string batch_split_blocker(const Graph& g) {
  std::vector<char> batched(g.nodes().size(), 0);  // output 0 carries the batch on axis 0
  int64_t batch = -1;
  for (const Node& n : g.nodes()) {
    if (n.op->name == "placeholder") {
      const Shape& s = n.outputs[0].shape;
      if (s.empty() || s[0] == dyn) return "placeholder '" + n.name + "' has no static axis 0";
      if (batch < 0) batch = s[0];
      if (s[0] != batch)
        return "placeholder '" + n.name + "' has axis 0 of " + std::to_string(s[0]) +
               ", another has " + std::to_string(batch);
      batched[n.id] = 1;
      continue;
    }
    std::vector<int> batched_inputs;
    for (size_t i = 0; i < n.inputs.size(); ++i)
      if (batched[n.inputs[i].node]) batched_inputs.push_back(static_cast<int>(i));
    if (batched_inputs.empty()) continue;  // shared by every sample (weights, constants)
    const std::string where = "op " + n.label() + " ";
    if (!n.op->has(kElementwise)) {
      const std::string use = axis0_use(n, g.type(n.inputs[0]).shape.size());
      if (!use.empty()) return where + use;
    }
    if (n.outputs.size() != 1 || n.outputs[0].shape.empty() || n.outputs[0].shape[0] != batch)
      return where + "does not keep the batch as axis 0";
    const size_t rank = n.outputs[0].shape.size();
    if (n.op->has(kElementwise)) {
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        const Shape& s = g.type(n.inputs[i]).shape;
        if (batched[n.inputs[i].node] ? s.size() != rank : s.size() == rank && s[0] != 1)
          return where + "broadcasts input " + std::to_string(i) + " across axis 0";
      }
    } else if (per_sample_ops().count(n.op->name) || n.op->has(kReduction)) {
      const bool all_batched = n.op->name == "concat";
      for (size_t i = 1; i < n.inputs.size(); ++i) {
        const bool residual = i + 1 == n.inputs.size() && n.attrs.count("has_residual") &&
                              std::get<bool>(n.attrs.at("has_residual"));
        if (batched[n.inputs[i].node] != (all_batched || residual))
          return where + "mixes samples through input " + std::to_string(i);
      }
      if (!batched[n.inputs[0].node]) return where + "mixes samples through input 0";
    } else {
      return where + "is not known to treat axis 0 per sample";
    }
    batched[n.id] = 1;
  }
  if (batch < 0) return "the graph has no placeholder";
  for (const auto& [name, v] : g.outputs())
    if (!batched[v.node]) return "output '" + name + "' does not carry the batch";
  return "";
}

Graph with_batch(const Graph& g, int64_t batch) {
  int64_t old = -1;
  for (int id : g.placeholder_ids()) old = g.node(id).outputs[0].shape[0];
  // Values computed from a placeholder: only their reshapes name the batch (a
  // constant's reshape may have the same leading extent by chance).
  std::vector<char> batched(g.nodes().size(), 0);
  for (const Node& n : g.nodes())
    for (const ValueRef& v : n.inputs)
      batched[n.id] |= batched[v.node] || g.node(v.node).op->name == "placeholder";
  passes::Rewriter rw(g);
  return rw.run([&](const Node& n) {
    if (n.op->name == "placeholder") {
      Shape s = n.outputs[0].shape;
      s[0] = batch;
      rw.set({n.id, 0}, rw.dst().placeholder(n.name, s, n.outputs[0].dtype));
      return true;
    }
    auto it = n.attrs.find("shape");
    if (n.op->name != "reshape" || it == n.attrs.end() || !batched[n.id]) return false;
    AttrMap attrs = n.attrs;
    auto& target = std::get<std::vector<int64_t>>(attrs["shape"]);
    if (!target.empty() && target[0] == old) target[0] = batch;
    rw.set({n.id, 0}, rw.dst().add(n.op->name, rw.mapped_inputs(n), attrs, n.name)[0]);
    return true;
  });
}

int64_t planned_bytes(const Executable& e) {
  int64_t bytes = e.stats().arena_bytes;
  for (const IOSpec& o : e.outputs())
    bytes += std::max<int64_t>(numel(o.type.shape), 0) * static_cast<int64_t>(dtype_size(o.type.dtype));
  return bytes;
}

MicroBatchChoice largest_fitting_micro_batch(int64_t batch, int64_t need, int64_t budget,
                                             const std::function<int64_t(int64_t)>& bytes_at) {
  // The plan grows about linearly with the batch: start from the proportional
  // size, then step down through the divisors until the plan fits.
  const int64_t guess = std::clamp<int64_t>(batch * budget / std::max<int64_t>(need, 1), 1, batch);
  int64_t bytes = need;
  for (int64_t micro = guess; micro >= 1; --micro) {
    if (batch % micro != 0 || micro == batch) continue;
    bytes = bytes_at(micro);
    if (bytes <= budget) return {micro, bytes};
  }
  return {0, bytes};  // a batch of 1 cannot be split: its bytes are the need
}

std::shared_ptr<const MicroBatchPlan> plan_micro_batches(
    const Graph& g, int64_t need, int64_t budget,
    const std::function<Executable(const Graph&)>& compile_fn) {
  const std::string over = "compile: the plan needs " + std::to_string(need) +
                           " bytes, over the memory_budget of " + std::to_string(budget) + " bytes";
  const std::string blocker = batch_split_blocker(g);
  if (!blocker.empty())
    throw ValueError(over + ", and the graph cannot be split along the batch (" + blocker + ")");
  const int64_t batch = g.node(g.placeholder_ids().front()).outputs[0].shape[0];
  std::optional<Executable> fitting;
  const MicroBatchChoice choice = largest_fitting_micro_batch(batch, need, budget, [&](int64_t micro) {
    Executable e = compile_fn(with_batch(g, micro));
    const int64_t bytes = planned_bytes(e);
    if (bytes <= budget) fitting.emplace(std::move(e));
    return bytes;
  });
  if (choice.micro == 0)
    throw ValueError(over + "; even a micro-batch of 1 row needs " + std::to_string(choice.bytes) +
                     " bytes");
  return std::make_shared<const MicroBatchPlan>(MicroBatchPlan{std::move(*fitting), batch, choice.micro, need});
}

std::vector<Tensor> run_micro_batches(const MicroBatchPlan& plan, const std::vector<Tensor>& feeds) {
  for (const Tensor& f : feeds)
    DS_CHECK(f.defined() && f.ndim() > 0 && f.shape()[0] == plan.batch, ShapeError,
             "run: this executable runs a batch of ", plan.batch, " as micro-batches of ",
             plan.micro, "; every feed needs axis 0 of ", plan.batch, ", got ",
             f.defined() ? shape_str(f.shape()) : std::string("an undefined tensor"));
  std::vector<std::vector<Tensor>> parts;
  for (int64_t start = 0; start < plan.batch; start += plan.micro) {
    std::vector<Tensor> slice;
    for (const Tensor& f : feeds) slice.push_back(f.slice(0, start, start + plan.micro, 1));
    auto outs = plan.exec.run(slice);
    if (parts.empty()) parts.resize(outs.size());
    for (size_t i = 0; i < outs.size(); ++i) parts[i].push_back(std::move(outs[i]));
  }
  std::vector<Tensor> result;
  for (auto& p : parts) result.push_back(p.size() == 1 ? p[0] : concat(p, 0));
  return result;
}

}  // namespace ds
