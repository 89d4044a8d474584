// Fast CPU kernels for sum/mean/max/min over any axes, float32 and float64; sum
// also reads bfloat16/float16 into the float32/float64 result its `dtype` asks for.
//
// The axes are merged into alternating kept/reduced blocks and reduced one block
// at a time (innermost first), each step an [outer, n, inner] reduction:
//   inner == 1: contiguous rows, reduced pairwise with independent lanes;
//   inner  > 1: a strided reduction vectorized along the inner (kept) axis.
// Sums accumulate in double (narrower inputs) or pairwise/blocked double (float64),
// so they stay within a few ulps of the float64 reference. Work splits into
// chunks fixed by the shape alone, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cpu/vec_lanes.h"
#include "core/thread_pool.h"
#include "ds/op.h"

namespace ds {
namespace {

// Independent vector accumulators per row (hides the add latency).
constexpr int kUnroll = 4;
// Leaf length of the pairwise fold along contiguous rows.
constexpr int64_t kPairwiseLeaf = 2048;
// Contiguous chunk of a long row given to one task.
constexpr int64_t kRowChunk = int64_t{1} << 16;
// Inner (kept) elements one task accumulates at once in the strided case: wide
// enough that typical rows are read whole (half rows ran 4x slower for max).
constexpr int64_t kInnerTile = 4096;
// Reduced rows folded per block in the strided case (two-level accumulation).
constexpr int64_t kStrideBlock = 1024;

// combine() serves scalars and lane vectors alike.
struct SumOp {
  using Acc = double;
  static Acc init() { return 0; }
  template <typename V> static V combine(V a, V v) { return a + v; }
};
// max/min keep NaN once seen, like numpy.
template <typename T> struct MaxOp {
  using Acc = T;
  static Acc init() { return -std::numeric_limits<T>::infinity(); }
  template <typename V> static V combine(V a, V v) { return ((v > a) | (v != v)) ? v : a; }
};
template <typename T> struct MinOp {
  using Acc = T;
  static Acc init() { return std::numeric_limits<T>::infinity(); }
  template <typename V> static V combine(V a, V v) { return ((v < a) | (v != v)) ? v : a; }
};

// kLanesOf<Acc> consecutive values of x as Acc. bfloat16 widens by a shift (the
// upper half of a float32); float16 converts one value at a time.
template <typename Acc, typename In> cpu::Vec<Acc> acc_lanes(const In* x) {
  if constexpr (std::is_same_v<In, BFloat16>) {
    typename cpu::VecOf<uint16_t, cpu::kLanesOf<Acc>>::type h;
    std::memcpy(&h, x, sizeof h);
    const auto f = __builtin_convertvector(h, typename cpu::VecOf<uint32_t, cpu::kLanesOf<Acc>>::type)
                   << 16;
    typename cpu::VecOf<float, cpu::kLanesOf<Acc>>::type v;
    std::memcpy(&v, &f, sizeof v);
    return __builtin_convertvector(v, cpu::Vec<Acc>);
  } else if constexpr (std::is_same_v<In, Half>) {
    cpu::Vec<Acc> v;
    for (int j = 0; j < cpu::kLanesOf<Acc>; ++j) v[j] = static_cast<Acc>(static_cast<float>(x[j]));
    return v;
  } else {
    return cpu::load_lanes<Acc>(x);
  }
}

template <class Op, typename In> typename Op::Acc reduce_leaf(const In* x, int64_t n) {
  using Acc = typename Op::Acc;
  constexpr int kWidth = cpu::kLanesOf<Acc>;
  constexpr int kStep = kWidth * kUnroll;
  cpu::Vec<Acc> lanes[kUnroll];
  for (auto& l : lanes) l = cpu::splat(Op::init());
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep)
    for (int u = 0; u < kUnroll; ++u)
      lanes[u] = Op::combine(lanes[u], acc_lanes<Acc>(x + i + u * kWidth));
  for (int u = 1; u < kUnroll; ++u) lanes[0] = Op::combine(lanes[0], lanes[u]);
  Acc r = Op::init();
  for (int j = 0; j < kWidth; ++j) r = Op::combine(r, static_cast<Acc>(lanes[0][j]));
  for (; i < n; ++i) r = Op::combine(r, static_cast<Acc>(x[i]));
  return r;
}

// Pairwise over leaves of kPairwiseLeaf values, merged like a binary counter (the
// same tree as halving recursion), so error grows with log(n), not n.
template <class Op, typename In> typename Op::Acc reduce_contiguous(const In* x, int64_t n) {
  using Acc = typename Op::Acc;
  Acc pending[64];
  int depth = 0;
  int64_t leaves = 0;
  for (int64_t begin = 0; begin < n; begin += kPairwiseLeaf, ++leaves) {
    Acc s = reduce_leaf<Op>(x + begin, std::min(kPairwiseLeaf, n - begin));
    for (int64_t c = leaves; c & 1; c >>= 1) s = Op::combine(pending[--depth], s);
    pending[depth++] = s;
  }
  Acc r = depth ? pending[depth - 1] : Op::init();
  for (int d = depth - 2; d >= 0; --d) r = Op::combine(pending[d], r);
  return r;
}

// y[o] = fold(x[o, :]) * scale for `outer` rows of length n.
template <class Op, typename In, typename Out>
void reduce_rows(const In* x, Out* y, int64_t outer, int64_t n, double scale) {
  using Acc = typename Op::Acc;
  const int64_t chunks = std::max<int64_t>(1, (n + kRowChunk - 1) / kRowChunk);
  std::vector<Acc> partial(static_cast<size_t>(outer * chunks));
  const int64_t grain = std::max<int64_t>(1, kRowChunk / std::max<int64_t>(n, 1));
  parallel_for(outer * chunks, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / chunks, c = t % chunks;
      const int64_t begin = c * kRowChunk, len = std::min(n - begin, kRowChunk);
      partial[t] = reduce_contiguous<Op>(x + o * n + begin, std::max<int64_t>(len, 0));
    }
  });
  for (int64_t o = 0; o < outer; ++o) {
    Acc r = Op::init();
    for (int64_t c = 0; c < chunks; ++c) r = Op::combine(r, partial[o * chunks + c]);
    y[o] = static_cast<Out>(r * scale);
  }
}

// acc[0, len) = fold over r in [r0, r1) of x[r * inner + i], two-level blocked.
// `block` is the calling task's scratch of len values.
template <class Op, typename In>
void reduce_strided_tile(const In* x, int64_t inner, int64_t r0, int64_t r1, int64_t len,
                         typename Op::Acc* block, typename Op::Acc* acc) {
  for (int64_t i = 0; i < len; ++i) acc[i] = Op::init();
  for (int64_t rb = r0; rb < r1; rb += kStrideBlock) {
    for (int64_t i = 0; i < len; ++i) block[i] = Op::init();
    const int64_t re = std::min(r1, rb + kStrideBlock);
    int64_t r = rb;
    // Sums: four rows per pass over block (a quarter of its load/store traffic). The
    // NaN-aware max/min select does not vectorize nested, so they take one row a pass.
    for (; std::is_same_v<Op, SumOp> && r + 4 <= re; r += 4) {
      const In* r0 = x + r * inner;
      const In *r1 = r0 + inner, *r2 = r1 + inner, *r3 = r2 + inner;
      for (int64_t i = 0; i < len; ++i) {
        using A = typename Op::Acc;
        const A v = Op::combine(Op::combine(static_cast<A>(r0[i]), static_cast<A>(r1[i])),
                                Op::combine(static_cast<A>(r2[i]), static_cast<A>(r3[i])));
        block[i] = Op::combine(block[i], v);
      }
    }
    for (; r < re; ++r) {
      const In* row = x + r * inner;
      for (int64_t i = 0; i < len; ++i) block[i] = Op::combine(block[i], static_cast<typename Op::Acc>(row[i]));
    }
    for (int64_t i = 0; i < len; ++i) acc[i] = Op::combine(acc[i], block[i]);
  }
}

// y[o, i] = fold over r of x[o, r, i] * scale.
template <class Op, typename In, typename Out>
void reduce_strided(const In* x, Out* y, int64_t outer, int64_t n, int64_t inner, double scale) {
  using Acc = typename Op::Acc;
  const int64_t tiles = (inner + kInnerTile - 1) / kInnerTile;
  // Few (outer, tile) pairs: also split the reduced axis so every core has work.
  const int64_t rchunks =
      outer * tiles < 16 ? std::clamp<int64_t>(16 / (outer * tiles), 1, (n + 255) / 256) : 1;
  const int64_t rlen = (n + rchunks - 1) / rchunks;
  std::vector<Acc> partial(static_cast<size_t>(rchunks * outer * inner));
  parallel_for(outer * tiles * rchunks, 1, [&](int64_t b, int64_t e) {
    std::vector<Acc> block(static_cast<size_t>(std::min(kInnerTile, inner)));
    for (int64_t t = b; t < e; ++t) {
      const int64_t c = t % rchunks, tile = t / rchunks % tiles, o = t / rchunks / tiles;
      const int64_t i0 = tile * kInnerTile, len = std::min(kInnerTile, inner - i0);
      const int64_t r0 = std::min(n, c * rlen), r1 = std::min(n, r0 + rlen);
      reduce_strided_tile<Op>(x + o * n * inner + i0, inner, r0, r1, len, block.data(),
                              partial.data() + (c * outer + o) * inner + i0);
    }
  });
  parallel_for(outer * inner, 4096, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      Acc r = Op::init();
      for (int64_t c = 0; c < rchunks; ++c) r = Op::combine(r, partial[c * outer * inner + j]);
      y[j] = static_cast<Out>(r * scale);
    }
  });
}

template <class Op, typename In, typename Out>
void reduce_step(const In* x, Out* y, int64_t outer, int64_t n, int64_t inner, double scale) {
  if (outer * inner == 0) return;
  if (inner == 1)
    reduce_rows<Op>(x, y, outer, n, scale);
  else
    reduce_strided<Op>(x, y, outer, n, inner, scale);
}

struct Block {
  int64_t extent;
  bool reduced;
};

// The shape as alternating kept/reduced blocks (extent-1 axes dropped, neighbours of
// one kind merged).
std::vector<Block> merge_blocks(const Shape& shape, const std::vector<int64_t>& axes_attr) {
  const int rank = static_cast<int>(shape.size());
  if (rank == 0) return {};
  std::vector<bool> reduced(static_cast<size_t>(rank), axes_attr.empty());
  for (int64_t a : axes_attr) reduced[normalize_axis(a, rank, "reduce")] = true;
  std::vector<Block> blocks;
  for (int d = 0; d < rank; ++d) {
    if (shape[d] == 1) continue;
    if (!blocks.empty() && blocks.back().reduced == reduced[d])
      blocks.back().extent *= shape[d];
    else
      blocks.push_back({shape[d], reduced[d]});
  }
  return blocks;
}

// Reduces the reduced blocks innermost first; intermediates keep the accumulator type.
template <class Op, typename In, typename Out> void reduce_any(const KernelCall& k, bool mean) {
  using Acc = typename Op::Acc;
  std::vector<Block> blocks = merge_blocks(k.inputs[0].shape(), k.ctx.ints("axes"));
  int64_t count = 1;
  for (const Block& b : blocks) count *= b.reduced ? b.extent : 1;
  const double scale = mean ? 1.0 / static_cast<double>(count) : 1.0;
  const In* x = k.inputs[0].data<In>();
  Out* y = k.outputs[0].data<Out>();
  if (k.inputs[0].numel() == 0) {
    // Nothing to read: an empty sum is 0 and an empty mean NaN, as in numpy (infer
    // refuses max/min of nothing). The tiled kernels below assume rows to split.
    const Out empty = mean ? std::numeric_limits<Out>::quiet_NaN() : static_cast<Out>(Op::init());
    std::fill(y, y + k.outputs[0].numel(), empty);
    return;
  }
  int steps = 0;
  for (const Block& b : blocks) steps += b.reduced;
  if (steps == 0) {  // nothing reduced (or only extent-1 axes): a copy, scaled for mean
    for (int64_t i = 0; i < k.outputs[0].numel(); ++i)
      y[i] = static_cast<Out>(static_cast<Acc>(x[i]) * scale);
    return;
  }
  std::vector<Acc> cur, next;
  for (int step = 0; step < steps; ++step) {
    int last = static_cast<int>(blocks.size()) - 1;
    while (!blocks[last].reduced) --last;
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < last; ++d) outer *= blocks[d].extent;
    for (int d = last + 1; d < static_cast<int>(blocks.size()); ++d) inner *= blocks[d].extent;
    const int64_t n = blocks[last].extent;
    const bool first = step == 0, final = step == steps - 1;
    if (!final) next.assign(static_cast<size_t>(outer * inner), Op::init());
    if (first && final)
      reduce_step<Op>(x, y, outer, n, inner, scale);
    else if (first)
      reduce_step<Op>(x, next.data(), outer, n, inner, 1.0);
    else if (final)
      reduce_step<Op>(cur.data(), y, outer, n, inner, scale);
    else
      reduce_step<Op>(cur.data(), next.data(), outer, n, inner, 1.0);
    cur.swap(next);
    blocks.erase(blocks.begin() + last);
    if (last > 0 && last < static_cast<int>(blocks.size())) {  // kept neighbours meet
      blocks[last - 1].extent *= blocks[last].extent;
      blocks.erase(blocks.begin() + last);
    }
  }
}

bool float_input(const OpContext& c) {
  const DType t = c.inputs[0].dtype;
  return t == DType::Float32 || t == DType::Float64;
}

template <template <typename> class OpOf> KernelFn typed_kernel(bool mean) {
  return [mean](const KernelCall& k) {
    if (k.inputs[0].dtype() == DType::Float32)
      reduce_any<OpOf<float>, float, float>(k, mean);
    else
      reduce_any<OpOf<double>, double, double>(k, mean);
  };
}
template <typename> using SumOf = SumOp;

// sum into a float32/float64 result: of its own type, or of a narrower float input
// (the `dtype` attribute; infer has checked the pair).
bool sum_types(const OpContext& c) {
  const DType in = c.inputs[0].dtype;
  const DType out = c.has("dtype") && !c.s("dtype").empty() ? dtype_from_name(c.s("dtype")) : in;
  return is_floating(in) && (out == DType::Float32 || out == DType::Float64);
}

template <typename In> void sum_into(const KernelCall& k) {
  if (k.outputs[0].dtype() == DType::Float64)
    reduce_any<SumOp, In, double>(k, false);
  else
    reduce_any<SumOp, In, float>(k, false);
}

void sum_kernel(const KernelCall& k) {
  switch (k.inputs[0].dtype()) {
    case DType::BFloat16: return sum_into<BFloat16>(k);
    case DType::Float16: return sum_into<Half>(k);
    case DType::Float32: return sum_into<float>(k);
    default: return sum_into<double>(k);
  }
}

const OpRegistrar reg([] {
  register_kernel("sum", DeviceKind::CPU, {sum_kernel, sum_types, "vectorized", 10});
  register_kernel("mean", DeviceKind::CPU, {typed_kernel<SumOf>(true), float_input, "vectorized", 10});
  register_kernel("max", DeviceKind::CPU, {typed_kernel<MaxOp>(false), float_input, "vectorized", 10});
  register_kernel("min", DeviceKind::CPU, {typed_kernel<MinOp>(false), float_input, "vectorized", 10});
});

}  // namespace
}  // namespace ds
