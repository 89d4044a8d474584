// sum/mean/max/min/var/std/logsumexp over any set of axes (the row kernels take
// sum/mean/max/logsumexp over trailing axes), and argmax/argmin along one axis:
// batch-norm statistics over {0, 2, 3}, bias gradients over the leading axes, and
// the sums in the norm and softmax backward rules. The device code and its layout
// are described in axis_reduce_source.h. A sum whose `dtype` asks for a wider
// result (bfloat16 gradients into float32 bias gradients under autocast) is always
// served here: it reads x with the same wide loads and writes the wider type.
//
// Every reduction reads x once: var/std and logsumexp fold a single pass too.
// The launch shape is picked from the merged layout: the widest loads the runs
// allow, each thread keeping several in flight, and a reduced extent too short to
// fill the GPU's waves of blocks split into slices whose partial results a second,
// small kernel merges.
#include <algorithm>
#include <map>
#include <mutex>

#include "backends/cuda/axis_reduce_source.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;
constexpr int kThreads = 256;

// The layout of one reduction; the same struct in device code.
struct RedArgs {
  long long ksize[kMaxDims], kstride[kMaxDims], rsize[kMaxDims], rstride[kMaxDims];
  long long outputs, reduced, units, run_units, chunk, parts;
  double divisor;
  int nk, nr, splits, root;
};

enum class Fold { Sum, Max, Min, Var, LogSumExp };

const char* fold_name(Fold f) {
  return kAxisReduceOps[static_cast<int>(f)];
}

// Bytes of one partial result (Op::P) in the accumulator type.
size_t partial_bytes(Fold f, DType acc) {
  const size_t a = dtype_size(acc);
  return f == Fold::Var ? 3 * a : f == Fold::LogSumExp ? 2 * a : a;
}

// Merged dims of x: runs of kept or of reduced axes become one dim each.
struct Layout {
  RedArgs a{};
  bool inner_reduced = false;
};

Layout layout_of(const Shape& shape, const std::vector<int>& axes) {
  std::vector<bool> reduced(shape.size(), false);
  for (int ax : axes) reduced[static_cast<size_t>(ax)] = true;
  // Walk from the outermost dim, merging equal kinds; size-1 dims are dropped.
  std::vector<std::pair<bool, int64_t>> dims;  // (reduced, size), outermost first
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!dims.empty() && dims.back().first == reduced[d])
      dims.back().second *= shape[d];
    else
      dims.emplace_back(reduced[d], shape[d]);
  }
  Layout l;
  l.a.outputs = 1, l.a.reduced = 1;
  int64_t stride = 1;
  std::vector<std::pair<int64_t, int64_t>> kept, red;  // (size, stride), innermost first
  for (auto it = dims.rbegin(); it != dims.rend(); ++it) {
    (it->first ? red : kept).emplace_back(it->second, stride);
    stride *= it->second;
  }
  // No kept dim left: one output, its values the whole of x (rows).
  l.inner_reduced = kept.empty() || (!dims.empty() && dims.back().first);
  // Nothing reduced (all reduced axes of size 1): one reduced "dim" of one value.
  if (red.empty()) red.emplace_back(1, 0);
  l.a.nk = static_cast<int>(kept.size());
  l.a.nr = static_cast<int>(red.size());
  for (int i = 0; i < l.a.nk; ++i) {  // device order: outermost first
    l.a.ksize[i] = kept[kept.size() - 1 - i].first;
    l.a.kstride[i] = kept[kept.size() - 1 - i].second;
    l.a.outputs *= l.a.ksize[i];
  }
  for (int i = 0; i < l.a.nr; ++i) {
    l.a.rsize[i] = red[red.size() - 1 - i].first;
    l.a.rstride[i] = red[red.size() - 1 - i].second;
    l.a.reduced *= l.a.rsize[i];
  }
  return l;
}


int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

int64_t pow2_at_least(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Blocks of `kernel` resident on the device at once (one wave).
int64_t wave(int dev, cudaKernel_t kernel, const dim3& block, size_t smem) {
  static std::mutex mu;
  static std::map<std::pair<cudaKernel_t, size_t>, int> per_sm;  // (kernel, smem) -> blocks
  std::lock_guard<std::mutex> lock(mu);
  auto [it, fresh] = per_sm.try_emplace({kernel, smem}, 0);
  if (fresh) {
    const int threads = static_cast<int>(block.x * block.y);
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &it->second, reinterpret_cast<const void*>(kernel), threads, smem) != cudaSuccess) {
      cudaGetLastError();  // not sticky: assume half the SM's threads
      it->second = 1024 / threads;
    }
  }
  return int64_t{std::max(it->second, 1)} * sm_count(dev);
}

// Slices of each output's `units` (at most `max_splits`): the count whose blocks
// fill the last of their waves best, the fewest slices among equals (each slice
// costs a partial result and its merge). `blocks`: blocks per slice.
void split(RedArgs& g, int64_t blocks, int64_t units, int64_t max_splits, int64_t slots) {
  max_splits = std::clamp<int64_t>(max_splits, 1, 65535);  // grid.y
  int64_t best = 1;
  double best_time = static_cast<double>(ceil_div(blocks, slots));  // in waves of one slice
  for (int64_t waves = 1; waves <= 8; ++waves) {
    const int64_t s = std::min(max_splits, ceil_div(waves * slots, blocks));
    const double time = static_cast<double>(ceil_div(blocks * s, slots)) / static_cast<double>(s);
    if (time < best_time * 0.999) best = s, best_time = time;
  }
  g.chunk = ceil_div(units, best);
  g.splits = static_cast<int>(ceil_div(units, g.chunk));  // no empty slice
}

// The widest load (16, 8 or 4 bytes, at least two values) whose units tile runs of
// `len` values, the data being aligned to it; 1 value where none does.
int64_t values_per_load(const Tensor& x, int64_t len) {
  const int64_t size = static_cast<int64_t>(dtype_size(x.dtype()));
  const auto addr = reinterpret_cast<uintptr_t>(x.raw_data());
  for (int64_t bytes : {16, 8, 4}) {
    const int64_t per = bytes / size;
    if (per >= 2 && len % per == 0 && addr % static_cast<uintptr_t>(bytes) == 0) return per;
  }
  return 1;
}

// Pass 1 of one layout: its kernel and launch shape; fills g's units and slices.
struct Pass1 {
  cudaKernel_t kernel;
  dim3 grid, block;
  size_t smem;
};

Pass1 plan_pass1(const Tensor& x, RedArgs& g, bool inner_reduced, const std::string& src,
                 size_t pbytes, int dev, const std::string& where) {
  // Every stride outside the innermost merged dim is a multiple of its length:
  // loads that tile it stay aligned everywhere.
  const int64_t inner = inner_reduced ? g.rsize[g.nr - 1] : g.ksize[g.nk - 1];
  const int64_t per = values_per_load(x, inner);
  const std::string bytes = std::to_string(per * static_cast<int64_t>(dtype_size(x.dtype())));
  Pass1 p{
      get_kernel(dev, src, (inner_reduced ? "ds_rows_" : "ds_columns_") + (per > 1 ? bytes : "1")),
      {},
      {},
      0};
  g.run_units = inner / per;
  // At least this many units a thread: its loads in flight outweigh the block's start and merge.
  const int64_t min_units = 16;
  int64_t blocks = 0, units = 0, max_splits = 0;
  if (inner_reduced) {
    g.units = units = g.reduced / per;
    // Threads per output: a block for long reductions, down to a warp for short ones.
    const int64_t threads = std::clamp<int64_t>(pow2_at_least(ceil_div(units, 4)), 32, kThreads);
    blocks = ceil_div(g.outputs, kThreads / threads);
    p.block = dim3(static_cast<unsigned>(threads), static_cast<unsigned>(kThreads / threads));
    p.smem = kThreads / 32 * pbytes;
    max_splits = units / (threads * min_units);
  } else {
    const int64_t tx = std::min<int64_t>(32, pow2_at_least(g.run_units));
    const int64_t ty = std::min<int64_t>(kThreads / tx, pow2_at_least(g.reduced));
    blocks = g.outputs / inner * ceil_div(g.run_units, tx);
    p.block = dim3(static_cast<unsigned>(tx), static_cast<unsigned>(ty));
    p.smem = static_cast<size_t>(tx * ty * per) * pbytes;
    units = g.reduced;
    max_splits = units / (ty * min_units);
  }
  DS_CHECK(blocks <= 0x7fffffff, ShapeError, where, g.outputs, " outputs exceed the CUDA grid");
  split(g, blocks, units, max_splits, wave(dev, p.kernel, p.block, p.smem));
  p.grid = dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(g.splits));
  return p;
}

// Merges the [splits, outputs, parts] partials of pass 1 into `dst`.
void finish(int dev, const std::string& src, RedArgs& g, const void* partial, void* dst,
            size_t pbytes) {
  void* args[] = {&partial, &dst, &g};
  if (g.splits * g.parts <= 32) {
    launch(dev, get_kernel(dev, src, "ds_finish_thread"), grid_for(g.outputs, dev), kThreads, args,
           0, "axis reduction");
  } else {
    const int64_t blocks = ceil_div(g.outputs, kThreads / 32);
    launch(dev, get_kernel(dev, src, "ds_finish_warp"), dim3(static_cast<unsigned>(blocks)),
           dim3(32, kThreads / 32), args, kThreads * pbytes, "axis reduction");
  }
}

// NCHW over {0, 2, 3} where the spatial runs take no 16-byte loads (7x7, or bf16 at
// 14x14): pass 1 reduces the batch of the [N, C*HW] view as columns (16-byte loads,
// no per-value index arithmetic) into [slices, C, HW] partials, and the finish
// merges each channel's slices and positions. Worth it while the partials stay
// small next to x (N >= 32).
bool per_channel_by_columns(const Tensor& x, const Layout& l) {
  const RedArgs& g = l.a;
  if (!l.inner_reduced || g.nr != 2 || g.nk != 1 || g.rsize[0] < 32) return false;
  const int64_t size = static_cast<int64_t>(dtype_size(x.dtype()));
  return values_per_load(x, g.rsize[1]) * size < 16 &&
         values_per_load(x, g.ksize[0] * g.rsize[1]) * size == 16;
}

// sum (mean: divided by n), max, min, var/std (ddof; root: std), logsumexp.
void reduce_kernel(const KernelCall& kc, Fold fold, bool mean, bool root) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  if (out.numel() == 0) return;
  const int dev = call_device(kc);
  const auto axes = ops::norm_axes(kc.ctx.ints("axes"), x.ndim(), kc.ctx.where());
  const Layout l = layout_of(x.shape(), axes);
  RedArgs g = l.a;  // the result's: outputs, divisor, root
  g.parts = 1;
  if (x.numel() == 0) g.reduced = 0;  // a zero extent among the reduced dims
  const double n = static_cast<double>(g.reduced);
  g.divisor = mean ? n : 1.0;
  if (fold == Fold::Var) g.divisor = std::max(n - static_cast<double>(kc.ctx.i("ddof")), 0.0);
  g.root = root ? 1 : 0;
  const DType acc = x.dtype() == DType::Float64 || out.dtype() == DType::Float64 ? DType::Float64
                                                                                 : DType::Float32;
  const size_t pbytes = partial_bytes(fold, acc);
  const std::string src =
      axis_reduce_source(device_type(x.dtype()), device_type(out.dtype()), fold_name(fold));
  void* dst = out.raw_data();
  if (g.reduced == 0) {  // nothing to read: every output is the fold's empty result
    g.splits = 0;
    finish(dev, src, g, nullptr, dst, pbytes);
    return;
  }
  // Pass 1 reduces x as laid out, or the per-channel case as [N, C*HW] columns.
  RedArgs g1 = g;
  bool rows = l.inner_reduced;
  if (per_channel_by_columns(x, l)) {
    const int64_t hw = g.rsize[1];
    g1.nk = 1, g1.ksize[0] = g.ksize[0] * hw, g1.kstride[0] = 1;
    g1.nr = 1, g1.rsize[0] = g.rsize[0], g1.rstride[0] = g.rstride[0];
    g1.outputs = g1.ksize[0], g1.reduced = g.rsize[0];
    g1.parts = hw;  // pass 1 writes partials; the finish merges hw of them a slice
    rows = false;
  }
  const Pass1 p = plan_pass1(x, g1, rows, src, pbytes, dev, kc.ctx.where());
  g.splits = g1.splits;
  g.parts = g1.parts;
  std::shared_ptr<void> partial;
  if (g.splits > 1 || g.parts > 1)
    partial =
        allocate(static_cast<size_t>(g1.outputs) * static_cast<size_t>(g1.splits) * pbytes, dev);
  const void* xp = x.raw_data();
  void* pp = partial.get();
  void* args[] = {&xp, &pp, &dst, &g1};
  launch(dev, p.kernel, p.grid, p.block, args, p.smem, "axis reduction");
  if (partial) finish(dev, src, g, partial.get(), dst, pbytes);
}

void arg_extremum_kernel(const KernelCall& kc, int is_max) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  if (out.numel() == 0) return;
  const int dev = call_device(kc);
  const int axis = normalize_axis(kc.ctx.i("axis"), x.ndim(), kc.ctx.where());
  long long outer = 1, extent = x.dim(axis), inner = 1;
  for (int d = 0; d < x.ndim(); ++d) {
    if (d < axis) outer *= x.dim(d);
    if (d > axis) inner *= x.dim(d);
  }
  const void* xp = x.raw_data();
  void* op = out.raw_data();
  void* args[] = {&xp, &op, &outer, &extent, &inner, &is_max};
  launch(dev, get_kernel(dev, arg_extremum_source(device_type(x.dtype())), "ds_arg_extremum"),
         grid_for(outer * inner, dev), kThreads, args, 0, kc.ctx.op.name.c_str());
}

bool supported(const OpContext& c) {
  const DType t = c.inputs[0].dtype;
  return nvrtc_float(t) && c.inputs[0].shape.size() <= kMaxDims;
}

// Few long rows (sums of whole tensors, e.g. gradient norms): the row kernels give
// each row one block, which leaves most of the GPU idle; these kernels split rows.
bool few_long_rows(const OpContext& c) {
  if (!supported(c)) return false;
  const Shape& s = c.inputs[0].shape;
  const auto axes = ops::norm_axes(c.ints("axes"), static_cast<int>(s.size()), c.where());
  int64_t rows = 1, len = 1;
  for (size_t d = 0; d < s.size(); ++d) {
    if (s[d] < 0) return false;  // a dynamic dim: the row kernels decide at run time
    (std::count(axes.begin(), axes.end(), static_cast<int>(d)) ? len : rows) *= s[d];
  }
  return rows < 256 && len >= 16384;
}

// A sum into a wider type than x's (its `dtype`): the row kernels read such an x one
// value at a time, so this kernel takes it whatever the axes.
bool sum_into_wider(const OpContext& c) {
  return supported(c) && c.has("dtype") && !c.s("dtype").empty() &&
         dtype_from_name(c.s("dtype")) != c.inputs[0].dtype;
}

const OpRegistrar reg([] {
  // Below the row kernels (priority 10), which serve trailing axes.
  struct Entry {
    const char* name;
    Fold fold;
    bool mean, root;
  };
  const Entry entries[] = {{"sum", Fold::Sum, false, false},
                           {"mean", Fold::Sum, true, false},
                           {"max", Fold::Max, false, false},
                           {"min", Fold::Min, false, false},
                           {"var", Fold::Var, false, false},
                           {"std", Fold::Var, false, true},
                           {"logsumexp", Fold::LogSumExp, false, false}};
  for (const Entry& e : entries)
    register_kernel(e.name, DeviceKind::CUDA,
                    {[e](const KernelCall& kc) { reduce_kernel(kc, e.fold, e.mean, e.root); },
                     supported, "nvrtc-axes", 5});
  // Above the row kernels (priority 10) where those would leave the GPU idle.
  for (const Entry& e : entries)
    register_kernel(e.name, DeviceKind::CUDA,
                    {[e](const KernelCall& kc) { reduce_kernel(kc, e.fold, e.mean, e.root); },
                     few_long_rows, "nvrtc-axes", 11});
  register_kernel("sum", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { reduce_kernel(kc, Fold::Sum, false, false); },
                   sum_into_wider, "nvrtc-axes", 12});
  for (int is_max : {1, 0})
    register_kernel(is_max ? "argmax" : "argmin", DeviceKind::CUDA,
                    {[is_max](const KernelCall& kc) { arg_extremum_kernel(kc, is_max); },
                     [](const OpContext& c) {
                       return nvrtc_float(c.inputs[0].dtype) && !c.inputs[0].shape.empty();
                     },
                     "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
