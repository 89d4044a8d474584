// compile() and Executable::run: an ordered list of kernel launches over value
// slots. Buffers are released right after their last use, so a run holds only
// the live working set.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <sstream>

#include "core/hot_run.h"
#include "ds/compile.h"
#include "ds/cuda.h"
#include "ds/op.h"
#include "ds/ops.h"
#include "ds/profile.h"
#include "ds/runtime.h"
#include "passes/pass_manager.h"
#include "runtime/cuda_graph.h"
#include "runtime/dispatch.h"
#include "runtime/memory_plan.h"
#include "runtime/micro_batch.h"
#include "runtime/serial_ops.h"

namespace ds {

struct Step {
  int node;
  std::vector<int> in_slots;
  std::vector<int> out_slots;
  std::vector<int> release;  // slots whose last use is this step
  const KernelEntry* kernel = nullptr;  // chosen at compile time for static shapes
  // Static shapes: the kernel's context (input types, attributes), made once at
  // compile time instead of on every run; it refers to Impl::graph's node.
  std::shared_ptr<const OpContext> ctx;
  bool on_gpu = false;                  // a CUDA executable's step with a CUDA kernel
  std::string label;                    // the node's label, made once (runs name the op)
  bool serial = false;                  // too small to repay waking the thread pool
  bool hot = false;  // runs inside a HotRunScope: a later step of its serial stretch splits
};

struct Executable::Impl {
  Graph graph;
  std::string target;
  Device device;  // where the steps run (CUDA steps without a CUDA kernel fall back to the CPU)
  std::string reason;
  std::vector<IOSpec> inputs, outputs;
  std::vector<int> input_slots, output_slots;
  std::vector<std::pair<int, Tensor>> constant_slots;
  std::vector<Step> steps;
  int num_slots = 0;
  bool dynamic = false;
  bool hot_may_linger = false;  // every step is serial: hot workers may linger (mark_hot_steps)
  // Static shapes: intermediates live at planned offsets in one arena per run.
  std::vector<int64_t> arena_offset;  // per slot; -1: allocated on its own
  int64_t arena_bytes = 0;
  ExecutableStats stats;
  std::vector<passes::PassTiming> pass_timings;
  mutable std::atomic<int64_t> last_peak{0};
  std::shared_ptr<const MicroBatchPlan> micro;  // set when the plan is over the memory budget
  // CUDA executables: the runner capturing and replaying a CUDA graph, or why there is none.
  std::shared_ptr<CudaGraphRunner> cuda_graph;
  std::string cuda_graph_off;
};

namespace {

bool feed_cast_allowed(DType from, DType to) {
  if (from == to) return true;
  if (is_floating(to)) return true;                    // any number -> float
  if (is_integral(to)) return !is_floating(from);      // int/bool -> int
  return to == DType::Bool && from == DType::Bool;
}

std::string list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}


// Places every intermediate slot in one arena. An elementwise op may write over
// an input that dies at that step and has its exact type (in place).
void plan_arena(Executable::Impl& m, const std::set<int>& keep, const std::map<int, int>& last_use) {
  std::vector<BufferRequest> req;
  std::map<int, int> req_of;  // slot -> request
  std::set<int> aliased;      // requests already taken over in place
  const auto& nodes = m.graph.nodes();
  for (int i = 0; i < static_cast<int>(m.steps.size()); ++i) {
    const Step& st = m.steps[i];
    const Node& n = nodes[st.node];
    for (size_t o = 0; o < st.out_slots.size(); ++o) {
      const int slot = st.out_slots[o];
      if (keep.count(slot)) continue;
      const TensorType& t = n.outputs[o];
      BufferRequest r{static_cast<int64_t>(numel(t.shape) * dtype_size(t.dtype)), i,
                      last_use.at(slot), -1};
      if (n.op->has(kElementwise) && st.out_slots.size() == 1) {
        for (size_t k = 0; k < st.in_slots.size(); ++k) {
          auto it = req_of.find(st.in_slots[k]);
          if (it == req_of.end() || aliased.count(it->second) || last_use.at(st.in_slots[k]) != i)
            continue;
          const TensorType& in_t = m.graph.type(n.inputs[k]);
          if (in_t == t) {
            r.alias_of = it->second;
            aliased.insert(it->second);
            break;
          }
        }
      }
      req_of[slot] = static_cast<int>(req.size());
      req.push_back(r);
    }
  }
  const MemoryPlan plan = plan_memory(req);
  m.arena_offset.assign(m.num_slots, -1);
  for (const auto& [slot, r] : req_of) m.arena_offset[slot] = plan.offsets[r];
  m.arena_bytes = plan.arena_bytes;
  m.stats.arena_bytes = plan.arena_bytes;
  m.stats.unplanned_bytes = plan.unplanned_bytes;
}

// Hot runs (core/hot_run.h): the pool's worker spins from the first step of a
// stretch of serial CPU steps up to the stretch's last step whose kernel splits
// over it. A sleeping worker arrives 13-28 us after it is woken (this VM;
// bench/cpp/hot_gemv_lab.cpp), when a lone batch-1 GEMV is over, so only
// stretches with two or more split steps are hot: the first hides the wake-up,
// the later ones split. Other steps (threaded kernels need the cores) and the end
// of the run put the worker back to sleep, except in runs whose steps are all
// serial: there nothing threaded follows, so the worker may linger for the next
// run (HotRunScope's may_linger). Returns whether the runs may linger.
bool mark_hot_steps(std::vector<Step>& steps) {
  auto serial_cpu = [](const Step& s) { return s.kernel && !s.on_gpu && s.serial; };
  for (size_t begin = 0, end; begin < steps.size(); begin = std::max(end, begin + 1)) {
    int splits = 0;
    size_t last_split = begin;
    for (end = begin; end < steps.size() && serial_cpu(steps[end]); ++end) {
      if (!splits_when_hot(steps[end].kernel->impl)) continue;
      ++splits;
      last_split = end;
    }
    if (splits >= 2)
      for (size_t i = begin; i <= last_split; ++i) steps[i].hot = true;
  }
  return std::all_of(steps.begin(), steps.end(), serial_cpu);
}

// "auto" runs a graph on the GPU only from this many FLOPs per run: below it,
// launches and host<->device copies cost more than the CPU's work.
constexpr double kAutoGpuMinFlops = 1e8;

// The kernel a step runs on the GPU, or nullptr when the op has no CUDA kernel
// for these inputs (then it runs on the CPU).
const KernelEntry* cuda_kernel(const OpContext& ctx) {
  const KernelEntry& k = select_kernel(ctx, DeviceKind::CUDA);
  return k.impl == "reference" ? nullptr : &k;
}

// Ops whose output is their input's bytes under another shape (row-major order kept).
bool is_storage_view(const Node& n) {
  const std::string& op = n.op->name;
  return n.inputs.size() == 1 && n.outputs.size() == 1 &&
         (op == "reshape" || op == "flatten" || op == "squeeze" || op == "unsqueeze");
}

// A CUDA executable's run: each step on the GPU (its CUDA kernel) or on the CPU
// (fallback), inputs copied to where the step runs; outputs stay where made.
std::vector<Tensor> run_cuda(const Executable::Impl& m, std::vector<Tensor>& slots) {
  const auto& nodes = m.graph.nodes();
  int64_t live_bytes = 0, peak = 0;
  std::vector<bool> view(slots.size(), false);  // slots sharing another slot's bytes
  for (const Step& st : m.steps) {
    const Node& n = nodes[st.node];
    std::vector<TensorType> in_types;
    for (int s : st.in_slots) in_types.push_back({slots[s].dtype(), slots[s].shape()});
    OpContext ctx{*n.op, n.attrs, in_types, n.label()};
    const std::vector<TensorType> out_types = st.kernel ? n.outputs : n.op->infer(ctx);
    const KernelEntry* k = st.kernel ? st.kernel : cuda_kernel(ctx);
    const bool gpu = st.kernel ? st.on_gpu : k != nullptr;
    if (!k) k = &select_kernel(ctx, DeviceKind::CPU);
    const Device where = gpu ? m.device : Device::cpu();
    std::vector<Tensor> in;
    for (int s : st.in_slots) {
      if (slots[s].device() != where) slots[s] = slots[s].to(where);
      in.push_back(slots[s]);
    }
    std::vector<Tensor> outs;
    if (is_storage_view(n) && in[0].is_contiguous()) {
      // A view of the same bytes: no kernel, no copy (run_cuda never writes into an input).
      slots[st.out_slots[0]] = in[0].reshape(out_types[0].shape);
      view[st.out_slots[0]] = true;
    } else {
      for (const TensorType& t : out_types) outs.push_back(Tensor::empty(t.shape, t.dtype, where));
      OpEventScope profile_event(ctx, *k, out_types, gpu ? m.device.index : -1);
      run_kernel_into(ctx, *k, in, outs);
    }
    for (size_t i = 0; i < outs.size(); ++i) {
      live_bytes += static_cast<int64_t>(outs[i].nbytes());
      slots[st.out_slots[i]] = std::move(outs[i]);
    }
    peak = std::max(peak, live_bytes);
    for (int s : st.release) {
      if (!view[s]) live_bytes -= static_cast<int64_t>(slots[s].nbytes());
      slots[s] = Tensor();
    }
  }
  m.last_peak.store(peak);
  std::vector<Tensor> result;
  for (int s : m.output_slots) result.push_back(slots[s]);
  return result;
}

// Why a CUDA executable cannot be captured into a CUDA graph ("" when it can).
std::string cuda_graph_blocker(const Executable::Impl& m) {
  if (!cuda_graphs_enabled()) return "DS_CUDA_GRAPHS=0";
  if (m.dynamic) return "symbolic shapes";
  for (const Step& st : m.steps)
    if (!st.on_gpu) return m.graph.nodes()[st.node].label() + " runs on the CPU";
  return "";
}

}  // namespace

std::vector<std::string> available_targets() {
  std::vector<std::string> t = {"cpu", "auto"};
  const int gpus = cuda::device_count();
  if (gpus > 0) {
    t.push_back("gpu");
    t.push_back("cuda");
    for (int i = 0; i < gpus; ++i) t.push_back("cuda:" + std::to_string(i));
  }
  return t;
}

Executable compile(const Graph& graph, const std::string& target, const CompileOptions& options) {
  DS_CHECK(options.opt_level >= 0 && options.opt_level <= 3, ValueError,
           "compile: opt_level must be 0..3, got ", options.opt_level);
  const auto targets = available_targets();
  const bool gpu_target = target == "gpu" || target.rfind("cuda", 0) == 0;
  if (gpu_target && cuda::device_count() == 0) {
    throw UnavailableError("compile: target '" + target + "' is not available: " +
                           cuda::unavailable_reason() + ". Available targets here: " + list(targets));
  }
  if (std::find(targets.begin(), targets.end(), target) == targets.end())
    throw NotFoundError("compile: unknown target '" + target +
                        "'. Available targets here: " + list(targets));
  graph.verify();

  auto impl = std::make_shared<Executable::Impl>();
  // GPU targets run the level-1 passes and then loop fusion alone (its regions
  // compile with NVRTC); the other level-2 passes make ops without CUDA kernels.
  impl->graph = passes::run_pipeline(graph, gpu_target ? std::min(options.opt_level, 1)
                                                       : options.opt_level, &impl->pass_timings,
                                     passes::precision_dtype(options.precision));
  if (gpu_target && options.opt_level >= 2) {
    const auto t0 = std::chrono::steady_clock::now();
    const int before = static_cast<int>(impl->graph.nodes().size());
    impl->graph = passes::loop_fusion_regions(impl->graph);
    impl->pass_timings.push_back(
        {"loop_fusion (cuda)",
         std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
         before, static_cast<int>(impl->graph.nodes().size())});
  }
  impl->target = "cpu";
  impl->reason = target == "auto" ? "target 'auto': the CPU is the only device here (" +
                                        cuda::unavailable_reason() + ")"
                                  : "target 'cpu' requested";
  DS_CHECK(!graph.outputs().empty(), ValueError, "compile: the graph has no outputs");
  const Graph& g = impl->graph;
  const auto outs = g.outputs();

  const auto& nodes = g.nodes();  // dead code is gone: every node is live
  const bool have_gpu = cuda::device_count() > 0;
  std::vector<const KernelEntry*> cuda_choice;  // per step, when a GPU is present

  std::map<std::pair<int, int>, int> slot_of;
  auto slot = [&](ValueRef v) {
    auto [it, added] = slot_of.try_emplace({v.node, v.output}, impl->num_slots);
    if (added) ++impl->num_slots;
    return it->second;
  };
  // Every placeholder is an input (even unused ones, so feeds stay stable).
  for (int id : g.placeholder_ids()) {
    const Node& n = nodes[id];
    impl->inputs.push_back({n.name, n.outputs[0]});
    impl->input_slots.push_back(slot({id, 0}));
    if (!is_static(n.outputs[0].shape)) impl->dynamic = true;
  }
  for (const Node& n : nodes) {
    if (n.op->name == "placeholder") continue;
    if (n.op->name == "constant") {
      impl->constant_slots.emplace_back(slot({n.id, 0}), std::get<Tensor>(n.attrs.at("value")));
      continue;
    }
    Step s;
    s.node = n.id;
    for (const ValueRef& v : n.inputs) s.in_slots.push_back(slot(v));
    for (int i = 0; i < static_cast<int>(n.outputs.size()); ++i) s.out_slots.push_back(slot({n.id, i}));
    std::vector<TensorType> in;
    for (const ValueRef& v : n.inputs) in.push_back(g.type(v));
    bool is_static_node = true;
    for (const auto& t : in) is_static_node &= is_static(t.shape);
    if (is_static_node) {
      s.ctx =
          std::make_shared<const OpContext>(OpContext{*n.op, n.attrs, std::move(in), n.label()});
      const OpContext& ctx = *s.ctx;
      s.kernel = &select_kernel(ctx, DeviceKind::CPU);
      if (have_gpu) cuda_choice.push_back(cuda_kernel(ctx));
      Cost c = n.op->estimate(ctx, n.outputs);
      impl->stats.flops += c.flops;
      impl->stats.bytes += c.bytes;
      s.serial = runs_serially(c);
    }
    s.label = n.label();
    if (have_gpu && !s.kernel) cuda_choice.push_back(nullptr);  // chosen per run
    impl->steps.push_back(std::move(s));
  }
  if (gpu_target || (target == "auto" && have_gpu)) {
    const bool big = impl->stats.flops >= kAutoGpuMinFlops;
    if (target == "auto") {
      impl->reason = detail::cat("target 'auto': ", impl->stats.flops, " FLOPs per run ",
                                 big ? ">=" : "<", " ", kAutoGpuMinFlops, " (the rule: a GPU is present "
                                 "and the graph does at least that much work, else the CPU, where "
                                 "small graphs are faster than launches and copies)");
    } else {
      impl->reason = "target '" + target + "' requested (GPU: loop fusion into NVRTC kernels at "
                     "opt_level 2+, the other level-2 passes off)";
    }
    if (gpu_target || big) {
      impl->device = Device::parse(target == "auto" ? "cuda" : target);
      impl->target = impl->device.str();
      impl->reason += "; " + cuda::device_info(impl->device.index).str();
      for (size_t i = 0; i < impl->steps.size(); ++i) {
        Step& st = impl->steps[i];
        if (!st.kernel || !cuda_choice[i]) continue;
        st.kernel = cuda_choice[i];
        st.on_gpu = true;
      }
      for (auto& [slot_id, t] : impl->constant_slots) t = t.to(impl->device);
      impl->cuda_graph_off = cuda_graph_blocker(*impl);
      if (impl->cuda_graph_off.empty())
        impl->cuda_graph = std::make_shared<CudaGraphRunner>(impl->device.index);
    }
  }
  if (target == "auto" && !have_gpu)
    impl->reason += detail::cat("; cost model: ", impl->stats.flops, " FLOPs and ",
                                impl->stats.bytes, " bytes per run; with a GPU, graphs under ",
                                kAutoGpuMinFlops, " FLOPs would stay on the CPU");
  for (const auto& [name, v] : outs) {
    impl->outputs.push_back({name, g.type(v)});
    impl->output_slots.push_back(slot(v));
  }
  // Release each intermediate slot after its last reader; inputs, constants and
  // outputs stay with the caller.
  std::set<int> keep(impl->output_slots.begin(), impl->output_slots.end());
  keep.insert(impl->input_slots.begin(), impl->input_slots.end());
  for (const auto& [s, _] : impl->constant_slots) keep.insert(s);
  std::map<int, int> last_use;
  for (int i = 0; i < static_cast<int>(impl->steps.size()); ++i) {
    for (int s : impl->steps[i].in_slots) last_use[s] = i;
    for (int s : impl->steps[i].out_slots) last_use.try_emplace(s, i);
  }
  for (const auto& [s, i] : last_use)
    if (!keep.count(s)) impl->steps[i].release.push_back(s);
  impl->stats.kernels = static_cast<int>(impl->steps.size());
  impl->hot_may_linger = mark_hot_steps(impl->steps);
  // The arena is CPU memory: CUDA executables allocate from the device's caching allocator.
  if (!impl->dynamic && impl->device.kind == DeviceKind::CPU) plan_arena(*impl, keep, last_use);
  if (options.memory_budget > 0) {
    DS_CHECK(!impl->dynamic && impl->device.kind == DeviceKind::CPU, ValueError,
             "compile: memory_budget needs a planned CPU executable (static shapes); this graph ",
             impl->dynamic ? "has symbolic extents" : "runs on " + impl->target);
    const int64_t need = planned_bytes(Executable(impl));
    if (need > options.memory_budget) {
      CompileOptions micro_options = options;
      micro_options.memory_budget = 0;
      impl->micro = plan_micro_batches(graph, need, options.memory_budget, [&](const Graph& part) {
        return compile(part, target, micro_options);
      });
      impl->reason += detail::cat("; the plan needs ", need, " bytes, over the memory_budget of ",
                                  options.memory_budget, ": runs micro-batches of ",
                                  impl->micro->micro, " of the batch of ", impl->micro->batch, " (",
                                  planned_bytes(impl->micro->exec), " bytes each)");
      impl->stats.arena_bytes = impl->micro->exec.stats().arena_bytes;
    }
  }
  return Executable(impl);
}

std::vector<Tensor> Executable::run(const std::vector<Tensor>& feeds) const {
  RecordFunction profile_range("Executable.run");
  const Impl& m = *impl_;
  if (m.micro) return run_micro_batches(*m.micro, feeds);
  DS_CHECK(feeds.size() == m.inputs.size(), ValueError, "run: expected ", m.inputs.size(),
           " feeds (", [&] {
             std::vector<std::string> n;
             for (const auto& i : m.inputs) n.push_back(i.name);
             return list(n);
           }(), "), got ", feeds.size());
  std::vector<Tensor> slots(m.num_slots);
  for (size_t i = 0; i < feeds.size(); ++i) {
    const IOSpec& spec = m.inputs[i];
    const Tensor& f = feeds[i];
    DS_CHECK(f.defined() && !f.is_symbolic(), ValueError, "run: feed for placeholder '", spec.name,
             "' is not a concrete tensor");
    bool shape_ok = f.ndim() == static_cast<int>(spec.type.shape.size());
    for (int d = 0; shape_ok && d < f.ndim(); ++d)
      shape_ok = spec.type.shape[d] == dyn || spec.type.shape[d] == f.shape()[d];
    DS_CHECK(shape_ok, ShapeError, "run: placeholder '", spec.name, "' expects shape ",
             shape_str(spec.type.shape), ", got ", shape_str(f.shape()));
    DS_CHECK(feed_cast_allowed(f.dtype(), spec.type.dtype), TypeError, "run: placeholder '",
             spec.name, "' expects dtype ", dtype_name(spec.type.dtype), ", got ",
             dtype_name(f.dtype()), " (which does not convert safely)");
    slots[m.input_slots[i]] = f.dtype() == spec.type.dtype ? f.contiguous() : cast(f, spec.type.dtype);
  }
  for (const auto& [s, t] : m.constant_slots) slots[s] = t;
  if (m.device.kind == DeviceKind::CUDA) {
    // Feeds all on the device: the outputs stay there (a training step's parameters and
    // optimizer state never cross the bus); otherwise they come back to the host.
    const bool on_device = !feeds.empty() && std::all_of(feeds.begin(), feeds.end(),
                                                         [&](const Tensor& f) { return f.device() == m.device; });
    std::vector<Tensor> result =
        m.cuda_graph ? m.cuda_graph->run(slots, m.input_slots,
                                         [&m](std::vector<Tensor>& s) { return run_cuda(m, s); })
                     : run_cuda(m, slots);
    for (Tensor& t : result) t = t.to(on_device ? m.device : Device::cpu());
    return result;
  }

  int64_t live_bytes = 0, peak = 0;
  const auto& nodes = m.graph.nodes();
  std::shared_ptr<Storage> arena;
  if (m.arena_bytes > 0) arena = allocate_storage(static_cast<size_t>(m.arena_bytes));
  std::optional<HotRunScope> hot;
  for (const Step& st : m.steps) {
    if (st.hot && !hot) hot.emplace(m.hot_may_linger);
    if (!st.hot && hot) hot.reset();
    const Node& n = nodes[st.node];
    std::vector<Tensor> in;
    in.reserve(st.in_slots.size());
    for (int s : st.in_slots) in.push_back(slots[s].contiguous());
    // Symbolic shapes: the context, the output types and the kernel per run.
    std::optional<OpContext> dynamic_ctx;
    std::vector<TensorType> dynamic_types;
    if (!st.ctx) {
      std::vector<TensorType> in_types;
      for (const Tensor& t : in) in_types.push_back({t.dtype(), t.shape()});
      dynamic_ctx.emplace(OpContext{*n.op, n.attrs, std::move(in_types), st.label});
      dynamic_types = n.op->infer(*dynamic_ctx);
    }
    const OpContext& ctx = st.ctx ? *st.ctx : *dynamic_ctx;
    const std::vector<TensorType>& out_types = st.ctx ? n.outputs : dynamic_types;
    const KernelEntry& k = st.kernel ? *st.kernel : select_kernel(ctx, DeviceKind::CPU);
    const SerialOpScope serial(st.serial);
    std::vector<Tensor> outs;
    outs.reserve(out_types.size());
    for (size_t o = 0; o < out_types.size(); ++o) {
      const TensorType& t = out_types[o];
      const int64_t off = m.arena_offset.empty() ? -1 : m.arena_offset[st.out_slots[o]];
      if (off < 0) {
        outs.push_back(Tensor::empty(t.shape, t.dtype));
        continue;
      }
      auto impl = std::make_shared<TensorImpl>();
      impl->storage = arena;
      impl->offset = off / static_cast<int64_t>(dtype_size(t.dtype));
      impl->shape = t.shape;
      impl->strides = contiguous_strides(t.shape);
      impl->dtype = t.dtype;
      outs.emplace_back(std::move(impl));
    }
    {
      OpEventScope profile_event(ctx, k, out_types);
      k.fn(KernelCall{ctx, in, outs});  // inputs made contiguous above
    }
    for (size_t i = 0; i < outs.size(); ++i) {
      live_bytes += static_cast<int64_t>(outs[i].nbytes());
      slots[st.out_slots[i]] = std::move(outs[i]);
    }
    peak = std::max(peak, live_bytes);
    for (int s : st.release) {
      live_bytes -= static_cast<int64_t>(slots[s].nbytes());
      slots[s] = Tensor();
    }
  }
  m.last_peak.store(peak);
  std::vector<Tensor> result;
  for (int s : m.output_slots) result.push_back(slots[s]);
  return result;
}

std::map<std::string, Tensor> Executable::run(const std::map<std::string, Tensor>& feeds) const {
  const Impl& m = *impl_;
  for (const auto& [name, _] : feeds) {
    bool known = false;
    for (const auto& i : m.inputs) known |= i.name == name;
    if (!known) {
      std::vector<std::string> n;
      for (const auto& i : m.inputs) n.push_back(i.name);
      throw NotFoundError("run: feed '" + name + "' matches no placeholder; the placeholders are: " +
                          list(n));
    }
  }
  std::vector<Tensor> ordered;
  for (const auto& spec : m.inputs) {
    auto it = feeds.find(spec.name);
    DS_CHECK(it != feeds.end(), NotFoundError, "run: missing feed for placeholder '", spec.name,
             "' (", spec.type.str(), ")");
    ordered.push_back(it->second);
  }
  auto outs = run(ordered);
  std::map<std::string, Tensor> named;
  for (size_t i = 0; i < outs.size(); ++i) named[m.outputs[i].name] = outs[i];
  return named;
}

const std::vector<IOSpec>& Executable::inputs() const { return impl_->inputs; }
const std::vector<IOSpec>& Executable::outputs() const { return impl_->outputs; }
const std::string& Executable::target() const { return impl_->target; }
const Graph& Executable::graph() const { return impl_->graph; }

ExecutableStats Executable::stats() const {
  ExecutableStats s = impl_->stats;
  s.peak_bytes = impl_->last_peak.load();
  if (impl_->cuda_graph) {
    const CudaGraphStats g = impl_->cuda_graph->stats();
    s.cuda_graph_captures = g.captures;
    s.cuda_graph_replays = g.replays;
  }
  return s;
}

std::string Executable::explain() const {
  std::ostringstream os;
  os << "target: " << impl_->target << " (" << impl_->reason << ")\npasses:\n";
  for (const auto& t : impl_->pass_timings)
    os << "  " << t.name << ": " << t.nodes_before << " -> " << t.nodes_after << " nodes, " << t.ms
       << " ms\n";
  os << "kernels:\n";
  const auto& nodes = impl_->graph.nodes();
  const bool cuda = impl_->device.kind == DeviceKind::CUDA;
  for (const Step& s : impl_->steps)
    os << "  " << nodes[s.node].label() << " -> "
       << (s.kernel ? s.kernel->impl : std::string("chosen per run (symbolic shape)"))
       << (!cuda || !s.kernel ? ""
           : s.on_gpu ? " [cuda]"
                      : " [cpu fallback: no CUDA kernel for these inputs; copies to and from the "
                        "device]")
       << "\n";
  if (cuda)
    os << "cuda graph: "
       << (impl_->cuda_graph ? impl_->cuda_graph->stats().status : "off: " + impl_->cuda_graph_off)
       << "\n";
  return os.str();
}

}  // namespace ds
