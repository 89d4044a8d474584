// Fast CPU kernels for the data-moving shape ops: concat, stack and split copy
// contiguous blocks with memcpy; tril/triu copy each row's kept span and zero the
// rest (all-zero bytes are 0 in every dtype). Mixed-dtype concat/stack fall back
// to the reference kernel, which converts.
#include <algorithm>
#include <cstring>

#include "backends/cpu/elementwise_common.h"
#include "core/thread_pool.h"
#include "ir/ops/index_check.h"

namespace ds::cpu {
namespace {

// A block copy: `bytes` from src to dst.
struct Block {
  const char* src;
  char* dst;
  size_t bytes;
};

void copy_blocks(const std::vector<Block>& blocks, size_t bytes_per_block_hint) {
  const int64_t grain = std::max<int64_t>(
      1, (int64_t{1} << 18) / static_cast<int64_t>(std::max<size_t>(bytes_per_block_hint, 1)));
  parallel_for(static_cast<int64_t>(blocks.size()), grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(blocks[i].dst, blocks[i].src, blocks[i].bytes);
  });
}

// Output viewed as [outer, sum of parts, inner] around `axis`; part k of
// extent n_k (1 for stack) lands at its offset along the axis.
void join(const std::vector<Tensor>& parts, Tensor& out, int axis,
          const std::vector<int64_t>& extents) {
  const ops::AxisSplit os = ops::split_at(out.shape(), axis);
  const size_t es = dtype_size(out.dtype());
  std::vector<Block> blocks;
  blocks.reserve(static_cast<size_t>(os.outer) * parts.size());
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t o = 0; o < os.outer; ++o) {
    int64_t offset = 0;
    for (size_t k = 0; k < parts.size(); ++k) {
      const size_t bytes = static_cast<size_t>(extents[k] * os.inner) * es;
      if (bytes)
        blocks.push_back({static_cast<const char*>(parts[k].raw_data()) + o * bytes,
                          dst + static_cast<size_t>((o * os.extent + offset) * os.inner) * es,
                          bytes});
      offset += extents[k];
    }
  }
  copy_blocks(blocks, blocks.empty() ? 1 : blocks.front().bytes);
}

bool same_dtypes(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  return true;
}

template <bool Lower>
void triangle(const KernelCall& k) {
  const Tensor& x = k.inputs[0];
  Tensor& out = k.outputs[0];
  const Shape& s = x.shape();
  const int64_t rows = s[s.size() - 2], cols = s[s.size() - 1], diag = k.ctx.i("k");
  const size_t es = dtype_size(x.dtype());
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  parallel_for(x.numel() / std::max<int64_t>(cols, 1),
               std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t r = b; r < e; ++r) {
                   const int64_t i = r % rows;
                   // Kept columns: j <= i + diag (tril) or j >= i + diag (triu).
                   const int64_t lo = Lower ? 0 : std::clamp<int64_t>(i + diag, 0, cols);
                   const int64_t hi = Lower ? std::clamp<int64_t>(i + diag + 1, 0, cols) : cols;
                   const size_t row = static_cast<size_t>(r * cols) * es;
                   std::memset(dst + row, 0, static_cast<size_t>(cols) * es);
                   if (hi > lo)
                     std::memcpy(dst + row + lo * es, src + row + lo * es,
                                 static_cast<size_t>(hi - lo) * es);
                 }
               });
}

const OpRegistrar reg([] {
  register_kernel("concat", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     const int axis =
                         normalize_axis(k.ctx.i("axis"), k.outputs[0].ndim(), k.ctx.where());
                     std::vector<int64_t> extents;
                     for (const Tensor& t : k.inputs) extents.push_back(t.shape()[axis]);
                     join(k.inputs, k.outputs[0], axis, extents);
                   },
                   same_dtypes, "memcpy", 10});
  register_kernel("stack", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     const int axis =
                         normalize_axis(k.ctx.i("axis"), k.outputs[0].ndim(), k.ctx.where());
                     join(k.inputs, k.outputs[0], axis, std::vector<int64_t>(k.inputs.size(), 1));
                   },
                   same_dtypes, "memcpy", 10});
  register_kernel("split", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     const Tensor& x = k.inputs[0];
                     const int axis = normalize_axis(k.ctx.i("axis"), x.ndim(), k.ctx.where());
                     const ops::AxisSplit xs = ops::split_at(x.shape(), axis);
                     const size_t es = dtype_size(x.dtype());
                     std::vector<Block> blocks;
                     const char* src = static_cast<const char*>(x.raw_data());
                     for (int64_t o = 0; o < xs.outer; ++o) {
                       int64_t offset = 0;
                       for (Tensor& part : k.outputs) {
                         const int64_t n = part.shape()[axis];
                         const size_t bytes = static_cast<size_t>(n * xs.inner) * es;
                         if (bytes)
                           blocks.push_back(
                               {src + static_cast<size_t>((o * xs.extent + offset) * xs.inner) * es,
                                static_cast<char*>(part.raw_data()) + o * bytes, bytes});
                         offset += n;
                       }
                     }
                     copy_blocks(blocks, blocks.empty() ? 1 : blocks.front().bytes);
                   },
                   {},
                   "memcpy",
                   10});
  register_kernel("tril", DeviceKind::CPU, {triangle<true>, {}, "memcpy", 10});
  register_kernel("triu", DeviceKind::CPU, {triangle<false>, {}, "memcpy", 10});
});

}  // namespace
}  // namespace ds::cpu
