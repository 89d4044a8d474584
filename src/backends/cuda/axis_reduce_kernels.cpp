// sum/mean/max/min/var/std/logsumexp over any set of axes (the row kernels
// take only trailing axes), and argmax/argmin along one axis: batch-norm statistics over {0, 2, 3}, bias gradients over the
// leading axes, and the sums in the norm and softmax backward rules.
//
// Adjacent axes of one kind are merged first; the input is then a mixed-radix
// walk of kept and reduced dims. Pass 1 writes float/double partial results of
// `splits` slices of every output's reduced range (enough blocks to fill the GPU);
// pass 2 combines each output's partials in order and stores the result.
// - innermost dim reduced (e.g. NCHW over {0, 2, 3}): a block per (output, slice),
//   its threads walk each contiguous run of the slice (one offset computed per run);
// - innermost dim kept (e.g. [N, D] over {0}): a thread per output, consecutive
//   threads read consecutive addresses, blockIdx.y picks the slice.
// var/std run pass 1 twice: the mean, then the squared deviations from it;
// logsumexp likewise: the max, then exp(x - max).
#include <algorithm>

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;

// The layout of one reduction; the same struct in device code.
struct RedArgs {
  long long ksize[kMaxDims], kstride[kMaxDims], rsize[kMaxDims], rstride[kMaxDims];
  long long outputs, reduced, chunk;
  int nk, nr, splits, kind, vec;  // vec: rows load 16 bytes at a time
};

// What pass 1 folds: values, or (x - mean)^2 / exp(x - max) summed for var and logsumexp.
enum Kind { kSum = 0, kMax = 1, kMin = 2, kSquaredDeviation = 3, kShiftedExp = 4 };

const char* const kSource = R"(
struct RedArgs {
  long long ksize[8], kstride[8], rsize[8], rstride[8];
  long long outputs, reduced, chunk;
  int nk, nr, splits, kind, vec;
};
__device__ __forceinline__ long long ds_kept_offset(const RedArgs& g, long long o) {
  long long off = 0;
  for (int d = g.nk - 1; d >= 0; --d) { off += (o % g.ksize[d]) * g.kstride[d]; o /= g.ksize[d]; }
  return off;
}
__device__ __forceinline__ long long ds_reduced_offset(const RedArgs& g, long long r) {
  long long off = 0;
  for (int d = g.nr - 1; d >= 0; --d) { off += (r % g.rsize[d]) * g.rstride[d]; r /= g.rsize[d]; }
  return off;
}
__device__ __forceinline__ A ds_identity(int kind) {
  return kind == 1 ? A(-DS_INF) : (kind == 2 ? A(DS_INF) : A(0));
}
// NaN wins max/min, like the reference's fold_max/fold_min.
__device__ __forceinline__ A ds_combine(int kind, A a, A b) {
  if (kind == 1) return (a != a || b != b) ? a + b : (a > b ? a : b);
  if (kind == 2) return (a != a || b != b) ? a + b : (a < b ? a : b);
  return a + b;
}
struct ds_comb {
  int kind;
  __device__ A operator()(A a, A b) const { return ds_combine(kind, a, b); }
};
__device__ __forceinline__ A ds_value_of(const RedArgs& g, T e, const A* mean, long long o) {
  const A v = ds_io<T>::load(e);
  if (g.kind == 3) { const A d = v - mean[o]; return d * d; }
  if (g.kind == 4) return exp(v - mean[o]);
  return v;
}
// The fold of a pass: the derived values are summed.
__device__ __forceinline__ int ds_fold(int kind) { return kind == 3 || kind == 4 ? 0 : kind; }
__device__ __forceinline__ A ds_value(const RedArgs& g, const T* x, long long at, const A* mean,
                                      long long o) {
  return ds_value_of(g, x[at], mean, o);
}

// The offset of run j: the reduced dims outside the innermost one.
__device__ __forceinline__ long long ds_run_offset(const RedArgs& g, long long j) {
  long long off = 0;
  for (int d = g.nr - 2; d >= 0; --d) { off += (j % g.rsize[d]) * g.rstride[d]; j /= g.rsize[d]; }
  return off;
}

// Innermost dim reduced: the reduced range is runs of rsize[nr-1] contiguous
// elements; block (o, s) takes runs [s * chunk, (s + 1) * chunk) of output o.
extern "C" __global__ void ds_reduce_rows(const T* __restrict__ x, A* __restrict__ partial,
                                          const A* __restrict__ mean, RedArgs g) {
  const long long o = blockIdx.x / g.splits, s = blockIdx.x % g.splits;
  const long long base = ds_kept_offset(g, o);
  const long long len = g.rsize[g.nr - 1], runs = len == 0 ? 0 : g.reduced / len;
  const long long j0 = s * g.chunk, j1 = min(j0 + g.chunk, runs);
  const int kind = ds_fold(g.kind);
  A acc = ds_identity(kind);
  const int lanes = 16 / sizeof(T);
  for (long long j = j0; j < j1; ++j) {
    const long long run = base + ds_run_offset(g, j);
    if (g.vec) {  // runs start at multiples of len, a multiple of `lanes`: 16-byte aligned
      const uint4* p = reinterpret_cast<const uint4*>(x + run);
      for (long long i = threadIdx.x; i < len / lanes; i += blockDim.x) {
        const uint4 r = p[i];
        const T* e = reinterpret_cast<const T*>(&r);
#pragma unroll
        for (int u = 0; u < lanes; ++u) acc = ds_combine(kind, acc, ds_value_of(g, e[u], mean, o));
      }
    } else {
      for (long long i = threadIdx.x; i < len; i += blockDim.x)
        acc = ds_combine(kind, acc, ds_value(g, x, run + i, mean, o));
    }
  }
  acc = ds_block_reduce(acc, ds_comb{kind}, ds_identity(kind));
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Innermost dim kept: a thread per output, slice s of its reduced range.
extern "C" __global__ void ds_reduce_columns(const T* __restrict__ x, A* __restrict__ partial,
                                             const A* __restrict__ mean, RedArgs g) {
  const long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x, s = blockIdx.y;
  if (o >= g.outputs) return;
  const long long base = ds_kept_offset(g, o);
  const long long r0 = s * g.chunk, r1 = min(r0 + g.chunk, g.reduced);
  const int kind = ds_fold(g.kind);
  A acc = ds_identity(kind);
  if (g.nr == 1) {  // one reduced dim (bias gradients): a plain stride, no divisions
    for (long long r = r0; r < r1; ++r)
      acc = ds_combine(kind, acc, ds_value(g, x, base + r * g.rstride[0], mean, o));
  } else {
    for (long long r = r0; r < r1; ++r)
      acc = ds_combine(kind, acc, ds_value(g, x, base + ds_reduced_offset(g, r), mean, o));
  }
  partial[o * g.splits + s] = acc;
}

// argmax/argmin along one axis of x viewed as [outer, extent, inner]: the first
// index of the extremum; the first NaN wins (numpy's rule, the reference's).
extern "C" __global__ void ds_arg_extremum(const T* __restrict__ x, long long* __restrict__ out,
                                           long long outer, long long extent, long long inner,
                                           int is_max) {
  for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < outer * inner;
       t += (long long)gridDim.x * blockDim.x) {
    const long long base = t / inner * extent * inner + t % inner;
    long long best = 0;
    A bv = ds_io<T>::load(x[base]);
    for (long long j = 1; j < extent && bv == bv; ++j) {
      const A v = ds_io<T>::load(x[base + j * inner]);
      if (v != v || (is_max ? v > bv : v < bv)) { best = j; bv = v; }
    }
    out[t] = best;
  }
}

// scale: 1/n for means; var/std divide by `divisor`, std takes the root;
// logsumexp adds back its shift (a non-finite max is the result itself).
extern "C" __global__ void ds_reduce_finish(const A* __restrict__ partial, A* __restrict__ stats,
                                            O* __restrict__ out, RedArgs g, double divisor, int root,
                                            const A* __restrict__ shift) {
  for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < g.outputs;
       o += (long long)gridDim.x * blockDim.x) {
    const int kind = ds_fold(g.kind);
    A acc = ds_identity(kind);
    for (int s = 0; s < g.splits; ++s) acc = ds_combine(kind, acc, partial[o * g.splits + s]);
    if (divisor != 1.0) acc = acc / A(divisor);
    if (root) acc = sqrt(acc);
    if (shift) {
      const A m = shift[o];
      acc = (m != m || m == A(DS_INF) || m == A(-DS_INF)) ? m : log(acc) + m;
    }
    if (stats) stats[o] = acc;
    if (out) out[o] = ds_io<O>::store(acc);
  }
}
)";

std::string source(DType in, DType out) {
  return "typedef " + device_type(in) + " T;\ntypedef " + device_type(out) +
         " O;\ntypedef ds_io<T>::acc A;\n" + kSource;
}

// Merged dims of x: runs of kept or of reduced axes become one dim each.
struct Layout {
  RedArgs a{};
  bool inner_reduced = false;
};

Layout layout_of(const Shape& shape, const std::vector<int>& axes) {
  std::vector<bool> reduced(shape.size(), false);
  for (int ax : axes) reduced[static_cast<size_t>(ax)] = true;
  // Walk from the innermost dim, merging equal kinds; size-1 dims are dropped.
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
  l.inner_reduced = !dims.empty() && dims.back().first;
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

int sm_count(int device) {
  static const int n = device_info(device).sm_count;  // one GPU model per process
  return n;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Pass 1 into `partial` (outputs x splits accumulators); returns nothing, sets g.splits/chunk.
void partial_pass(int dev, const std::string& src, const Layout& l, RedArgs& g, const void* x,
                  void* partial, const void* mean) {
  void* args[] = {&x, &partial, &mean, &g};
  if (l.inner_reduced) {
    DS_CHECK(g.outputs * g.splits <= 0x7fffffff, ShapeError, "axis reduction: ", g.outputs,
             " outputs exceed the CUDA grid");
    launch(dev, get_kernel(dev, src, "ds_reduce_rows"),
           dim3(static_cast<unsigned>(g.outputs * g.splits)), 256, args, 0, "axis reduction");
  } else {
    launch(dev, get_kernel(dev, src, "ds_reduce_columns"),
           dim3(static_cast<unsigned>(ceil_div(g.outputs, 256)), static_cast<unsigned>(g.splits)),
           256, args, 0, "axis reduction");
  }
}

// mean: divide by the count; var: (x - mean)^2 summed over ddof-corrected count
// (root: std); lse: log(sum(exp(x - max))) + max.
void reduce_kernel(const KernelCall& kc, Kind kind, bool mean, bool var, bool root, bool lse) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  if (out.numel() == 0) return;
  const int dev = call_device(kc);
  const auto axes = ops::norm_axes(kc.ctx.ints("axes"), x.ndim(), kc.ctx.where());
  Layout l = layout_of(x.shape(), axes);
  RedArgs& g = l.a;
  if (x.numel() == 0) g.reduced = 0;  // a zero extent among the reduced dims
  // Slices: enough blocks (or threads) for 4 waves of the GPU. Rows slice whole
  // contiguous runs; columns slices of >= 256 reduced items.
  const int64_t want_blocks = int64_t{4} * sm_count(dev);
  const int64_t have = l.inner_reduced ? g.outputs : ceil_div(g.outputs, 256);
  const int64_t units = l.inner_reduced ? (g.reduced == 0 ? 0 : g.reduced / g.rsize[g.nr - 1])
                                        : ceil_div(g.reduced, 256);
  const int64_t splits =
      std::clamp<int64_t>(ceil_div(want_blocks, have), 1, std::max<int64_t>(1, units));
  g.splits = static_cast<int>(std::min<int64_t>(splits, 65535));
  g.chunk = ceil_div(l.inner_reduced ? units : g.reduced, g.splits);
  const int64_t lanes = 16 / static_cast<int64_t>(dtype_size(x.dtype()));
  g.vec = l.inner_reduced && g.reduced > 0 && g.rsize[g.nr - 1] % lanes == 0 &&
          reinterpret_cast<uintptr_t>(x.raw_data()) % 16 == 0;
  const DType acc = x.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  const std::string src = source(x.dtype(), out.dtype());
  auto partial = allocate(static_cast<size_t>(g.outputs * g.splits) * dtype_size(acc), dev);
  auto finish = [&](void* stats, void* dst, double divisor, int take_root, const void* shift) {
    const void* p = partial.get();
    void* args[] = {&p, &stats, &dst, &g, &divisor, &take_root, &shift};
    launch(dev, get_kernel(dev, src, "ds_reduce_finish"), grid_for(g.outputs, dev), 256, args, 0,
           "axis reduction");
  };
  const double n = static_cast<double>(g.reduced);
  if (!var && !lse) {
    g.kind = kind;
    partial_pass(dev, src, l, g, x.raw_data(), partial.get(), nullptr);
    finish(nullptr, out.raw_data(), mean ? n : 1.0, 0, nullptr);
    return;
  }
  // Two passes: the statistic (mean or max) per output, then the derived sum.
  auto stats = allocate(static_cast<size_t>(g.outputs) * dtype_size(acc), dev);
  g.kind = var ? kSum : kMax;
  partial_pass(dev, src, l, g, x.raw_data(), partial.get(), nullptr);
  finish(stats.get(), nullptr, var ? n : 1.0, 0, nullptr);
  g.kind = var ? kSquaredDeviation : kShiftedExp;
  partial_pass(dev, src, l, g, x.raw_data(), partial.get(), stats.get());
  if (lse) return finish(nullptr, out.raw_data(), 1.0, 0, stats.get());
  const double dof = std::max(n - static_cast<double>(kc.ctx.i("ddof")), 0.0);
  finish(nullptr, out.raw_data(), dof, root ? 1 : 0, nullptr);
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
  launch(dev, get_kernel(dev, source(x.dtype(), x.dtype()), "ds_arg_extremum"),
         grid_for(outer * inner, dev), 256, args, 0, kc.ctx.op.name.c_str());
}

bool supported(const OpContext& c) {
  const DType t = c.inputs[0].dtype;
  return nvrtc_float(t) && c.inputs[0].shape.size() <= kMaxDims;
}

const OpRegistrar reg([] {
  // Below the row kernels (priority 10), which serve trailing axes.
  struct Entry { const char* name; Kind kind; bool mean, var, root, lse; };
  const Entry entries[] = {
      {"sum", kSum, false, false, false, false},  {"mean", kSum, true, false, false, false},
      {"max", kMax, false, false, false, false},  {"min", kMin, false, false, false, false},
      {"var", kSum, false, true, false, false},
      {"std", kSum, false, true, true, false},    {"logsumexp", kSum, false, false, false, true}};
  for (const Entry& e : entries)
    register_kernel(e.name, DeviceKind::CUDA,
                    {[e](const KernelCall& kc) {
                       reduce_kernel(kc, e.kind, e.mean, e.var, e.root, e.lse);
                     },
                     supported, "nvrtc-axes", 5});
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
