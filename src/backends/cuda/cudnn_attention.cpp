// scaled_dot_product_attention and its backward through cuDNN's fused flash
// attention (the SDPA node of cuDNN's graph frontend), for bf16/fp16. On the
// H100/H200 these are the kernels PyTorch's SDPA picks by default; on GPT-2's
// attention (16x12x1024x64, causal, bf16, H200) they take 98 us forward and
// 290 us backward, against 156 and 644 us for our mma.sync kernels
// (attention_mma*.cpp), which stay for what cuDNN declines.
//
// The forward writes the op's second output, lse (cuDNN's softmax statistics:
// the natural log-sum-exp of each row's scaled scores, float32), and the
// backward reads it, so nothing is recomputed. One cuDNN graph per problem
// (shapes, dtype, causal, scale) and device, built once; `supports` builds it
// on device 0, so a problem cuDNN cannot run goes to the next kernel at compile
// time. DS_CUDNN_ATTENTION=0 turns these kernels off (to compare).
#define CUDNN_FRONTEND_SKIP_JSON_LIB
#include <cudnn_frontend.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/cuda/cudnn_support.h"
#include "backends/cuda/kernel_support.h"
#include "ds/cuda.h"
#include "ds/error.h"
#include "ir/ops/attention.h"

namespace ds::cuda {
namespace {

namespace fe = cudnn_frontend;

enum Uid : int64_t { kQ = 1, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV };

// The problem as cuDNN sees it: [b, h, s, d] tensors (the leading dims of ds's
// [..., H, S, D] split into b and h), whose memory is [b, h, s, d] (layout
// "bhsd") or [b, s, h, d] ("bshd"); the statistics are [b, h, s] either way.
struct Problem : ops::AttentionDims {
  bool backward;
  DType dtype;
  bool causal;
  double scale;

  std::string key() const {
    return detail::cat(backward, ' ', static_cast<int>(dtype), ' ', bshd, ' ', b, ' ', h, ' ', sq,
                       ' ', sk, ' ', d, ' ', dv, ' ', causal, ' ', scale);
  }
  std::vector<int64_t> strides(int64_t s, int64_t e) const {
    return bshd ? std::vector<int64_t>{s * h * e, e, h * e, 1}
                : std::vector<int64_t>{h * s * e, s * e, e, 1};
  }
};

Problem problem_of(const OpContext& c) {
  Problem p;
  static_cast<ops::AttentionDims&>(p) = ops::attention_dims(c);
  p.backward = c.op.name != "scaled_dot_product_attention";
  p.dtype = c.inputs[0].dtype;
  p.causal = c.b("causal");
  p.scale = ops::attention_scale(c, p.d);
  return p;
}

using TensorPtr = std::shared_ptr<fe::graph::Tensor_attributes>;

TensorPtr tensor(fe::graph::Graph& g, const Problem& p, Uid uid, int64_t s, int64_t e) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_uid(uid)
                      .set_dim({p.b, p.h, s, e})
                      .set_stride(p.strides(s, e)));
}

void output(const TensorPtr& t, const Problem& p, Uid uid, int64_t s, int64_t e) {
  t->set_output(true).set_uid(uid).set_dim({p.b, p.h, s, e}).set_stride(p.strides(s, e));
}

// The statistics (lse): float32 [b, h, sq, 1], packed.
void as_stats(const TensorPtr& t, const Problem& p) {
  t->set_uid(kStats)
      .set_dim({p.b, p.h, p.sq, 1})
      .set_stride({p.h * p.sq, p.sq, 1, 1})
      .set_data_type(fe::DataType_t::FLOAT);
}

// A built graph and its workspace size; graph null where cuDNN declined (why: reason).
struct Plan {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
  std::string reason;
};

Plan build(const Problem& p, int device) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(p.dtype == DType::BFloat16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto q = tensor(*g, p, kQ, p.sq, p.d), k = tensor(*g, p, kK, p.sk, p.d),
       v = tensor(*g, p, kV, p.sk, p.dv);
  const float scale = static_cast<float>(p.scale);
  if (!p.backward) {
    auto opts = fe::graph::SDPA_attributes().set_generate_stats(true).set_attn_scale(scale);
    if (p.causal) opts.set_causal_mask(true);
    auto [o, stats] = g->sdpa(q, k, v, opts);
    output(o, p, kO, p.sq, p.dv);
    stats->set_output(true);
    as_stats(stats, p);
  } else {
    auto o = tensor(*g, p, kO, p.sq, p.dv), dout = tensor(*g, p, kDO, p.sq, p.dv);
    auto stats = g->tensor(fe::graph::Tensor_attributes());
    as_stats(stats, p);
    auto opts = fe::graph::SDPA_backward_attributes().set_attn_scale(scale);
    if (p.causal) opts.set_causal_mask(true);
    auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, opts);
    output(dq, p, kDQ, p.sq, p.d);
    output(dk, p, kDK, p.sk, p.d);
    output(dv, p, kDV, p.sk, p.dv);
  }
  Plan plan;
  auto status = g->build(cudnn_handle(device), {fe::HeurMode_t::A});
  if (status.is_bad()) {
    plan.reason = status.get_message();
    return plan;
  }
  if (g->get_workspace_size(plan.workspace).is_bad()) {
    plan.reason = "no workspace size";
    return plan;
  }
  plan.graph = std::move(g);
  return plan;
}

// The plan of `p` on `device`, built on first use.
const Plan& plan_for(const Problem& p, int device) {
  static std::mutex mu;
  static auto* plans = new std::map<std::string, Plan>;
  std::lock_guard<std::mutex> lock(mu);
  const std::string key = detail::cat(device, ' ', p.key());
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, build(p, device)).first;
  return it->second;
}

bool enabled() {
  static const bool on = [] {
    const char* env = std::getenv("DS_CUDNN_ATTENTION");
    return env == nullptr || std::string(env) != "0";
  }();
  return on;
}

// bf16/fp16 q, k, v (and out, grad_out) of one dtype, at least [S, D], the
// backward with the forward's lse; then whatever cuDNN's graph accepts.
bool supports(const OpContext& c) {
  const TensorType& q = c.inputs[0];
  if (!enabled() || device_count() == 0 || q.shape.size() < 2 ||
      (q.dtype != DType::BFloat16 && q.dtype != DType::Float16) || c.f("scale") < 0)
    return false;
  const bool backward = c.op.name != "scaled_dot_product_attention";
  if (backward && c.inputs.size() <= ops::kLseInput) return false;
  for (size_t i = 0; i < (backward ? ops::kLseInput : 3); ++i)
    if (c.inputs[i].dtype != q.dtype) return false;
  const Problem p = problem_of(c);
  if (p.batch() == 0 || p.sq == 0) return false;  // nothing to run: the other kernels fill zeros
  return plan_for(p, 0).graph != nullptr;
}

void run(const KernelCall& kc, std::unordered_map<int64_t, void*> pack) {
  const Problem p = problem_of(kc.ctx);
  const int dev = call_device(kc);
  const Plan& plan = plan_for(p, dev);
  DS_CHECK(plan.graph != nullptr, Error, kc.ctx.where(), "cuDNN cannot run this attention on GPU ",
           dev, ": ", plan.reason);
  const std::shared_ptr<void> workspace =
      plan.workspace > 0 ? allocate(static_cast<size_t>(plan.workspace), dev) : nullptr;
  auto status = plan.graph->execute(cudnn_handle(dev), pack, workspace.get());
  DS_CHECK(status.is_good(), Error, kc.ctx.where(),
           "cuDNN attention failed: ", status.get_message());
}

void forward(const KernelCall& kc) {
  auto in = [&](int i) { return const_cast<void*>(kc.inputs[i].raw_data()); };
  run(kc, {{kQ, in(0)},
           {kK, in(1)},
           {kV, in(2)},
           {kO, kc.outputs[0].raw_data()},
           {kStats, kc.outputs[1].raw_data()}});
}

void backward(const KernelCall& kc) {
  auto in = [&](int i) { return const_cast<void*>(kc.inputs[i].raw_data()); };
  run(kc, {{kQ, in(0)},
           {kK, in(1)},
           {kV, in(2)},
           {kO, in(3)},
           {kDO, in(4)},
           {kStats, in(ops::kLseInput)},
           {kDQ, kc.outputs[0].raw_data()},
           {kDK, kc.outputs[1].raw_data()},
           {kDV, kc.outputs[2].raw_data()}});
}

const OpRegistrar reg([] {
  register_kernel("scaled_dot_product_attention", DeviceKind::CUDA,
                  {forward, supports, "cudnn-sdpa", 30});
  register_kernel("scaled_dot_product_attention_backward", DeviceKind::CUDA,
                  {backward, supports, "cudnn-sdpa", 30});
});

}  // namespace
}  // namespace ds::cuda
