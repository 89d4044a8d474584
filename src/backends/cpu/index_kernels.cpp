// Fast CPU kernels for the indexing ops: gathers copy elements (any dtype, by
// size) and whole rows; the scatter-adds split the output into disjoint
// (outer, column block) tiles, so threads never write the same element and each
// element sums its updates in index order, as the reference does. Indices are
// int32 or int64 and are validated before any work, with the reference's message.
#include <algorithm>
#include <cstring>

#include "backends/cpu/elementwise_common.h"
#include "core/thread_pool.h"
#include "ir/ops/index_check.h"

namespace ds::cpu {
namespace {

using ops::AxisSplit;
using ops::IndexRange;

bool index_dtype(DType t) {
  return t == DType::Int32 || t == DType::Int64;
}

template <typename F>
void visit_index(DType t, F&& f) {
  if (t == DType::Int32)
    f(int32_t{});
  else
    f(int64_t{});
}

// Calls f(U{}) with U an unsigned type of the element size (gathers only move bytes).
template <typename F>
void visit_size(size_t bytes, F&& f) {
  switch (bytes) {
    case 1:
      f(uint8_t{});
      break;
    case 2:
      f(uint16_t{});
      break;
    case 4:
      f(uint32_t{});
      break;
    default:
      f(uint64_t{});
      break;
  }
}

template <typename I>
void validate(const I* idx, int64_t count, int64_t extent, IndexRange range, const OpContext& ctx,
              int axis) {
  const int64_t low = range == IndexRange::AllowNegative ? -extent : 0;
  for (int64_t i = 0; i < count; ++i)
    if (idx[i] < low || idx[i] >= extent)
      ops::throw_bad_index(ctx, static_cast<int64_t>(idx[i]), i, axis, extent, range);
}

template <typename I>
inline int64_t wrap(I v, int64_t extent) {
  return v < 0 ? static_cast<int64_t>(v) + extent : static_cast<int64_t>(v);
}

int64_t rows_grain(int64_t inner) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1));
}

// out[o, j, i] = x[o, idx[o, j, i], i]
void take_along_axis_kernel(const KernelCall& k) {
  const Tensor &x = k.inputs[0], &indices = k.inputs[1];
  Tensor& out = k.outputs[0];
  const int axis = normalize_axis(k.ctx.i("axis"), x.ndim(), k.ctx.where());
  const AxisSplit xs = ops::split_at(x.shape(), axis), os = ops::split_at(out.shape(), axis);
  visit_index(indices.dtype(), [&](auto izero) {
    using I = decltype(izero);
    const I* idx = indices.data<I>();
    validate(idx, indices.numel(), xs.extent, IndexRange::AllowNegative, k.ctx, axis);
    visit_size(dtype_size(x.dtype()), [&](auto zero) {
      using U = decltype(zero);
      const U* src = static_cast<const U*>(x.raw_data());
      U* dst = static_cast<U*>(out.raw_data());
      parallel_for(os.outer * os.extent, rows_grain(os.inner), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const U* base = src + (r / os.extent) * xs.extent * xs.inner;
          const I* ir = idx + r * os.inner;
          U* orow = dst + r * os.inner;
          for (int64_t i = 0; i < os.inner; ++i)
            orow[i] = base[wrap(ir[i], xs.extent) * xs.inner + i];
        }
      });
    });
  });
}

// Rows of x along `axis` picked by a 1-D index list (index_select, embedding).
void gather_rows(const Tensor& x, const Tensor& indices, Tensor& out, int axis, IndexRange range,
                 const OpContext& ctx) {
  const AxisSplit xs = ops::split_at(x.shape(), axis);
  const int64_t m = indices.numel();
  const size_t row_bytes = static_cast<size_t>(xs.inner) * dtype_size(x.dtype());
  visit_index(indices.dtype(), [&](auto izero) {
    using I = decltype(izero);
    const I* idx = indices.data<I>();
    validate(idx, m, xs.extent, range, ctx, axis);
    const char* src = static_cast<const char*>(x.raw_data());
    char* dst = static_cast<char*>(out.raw_data());
    parallel_for(xs.outer * m, rows_grain(xs.inner), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r / m, row = wrap(idx[r % m], xs.extent);
        std::memcpy(dst + r * row_bytes, src + (o * xs.extent + row) * row_bytes, row_bytes);
      }
    });
  });
}

// Output tiles for the scatter-adds: (outer, block of `kCols` inner columns).
constexpr int64_t kCols = 256;

template <typename F>
void for_each_tile(const AxisSplit& s, int64_t work_per_column, F&& f) {
  const int64_t blocks = (s.inner + kCols - 1) / kCols;
  const int64_t grain =
      std::max<int64_t>(1, kGrain / std::max<int64_t>(1, work_per_column * kCols));
  parallel_for(s.outer * blocks, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t i0 = (t % blocks) * kCols;
      f(t / blocks, i0, std::min(s.inner, i0 + kCols));
    }
  });
}

// out[o, idx[o, j, i], i] += upd[o, j, i], into zeros of axis extent `size`.
void scatter_add_along_axis_kernel(const KernelCall& k) {
  const Tensor &indices = k.inputs[0], &updates = k.inputs[1];
  Tensor& out = k.outputs[0];
  const int axis = normalize_axis(k.ctx.i("axis"), updates.ndim(), k.ctx.where());
  const int64_t size = k.ctx.i("size");
  const AxisSplit us = ops::split_at(updates.shape(), axis);
  visit_index(indices.dtype(), [&](auto izero) {
    using I = decltype(izero);
    const I* idx = indices.data<I>();
    validate(idx, indices.numel(), size, IndexRange::AllowNegative, k.ctx, axis);
    visit_fast(out.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* upd = updates.data<T>();
      T* dst = out.data<T>();
      for_each_tile(us, us.extent, [&](int64_t o, int64_t i0, int64_t i1) {
        T* obase = dst + o * size * us.inner;
        for (int64_t r = 0; r < size; ++r)
          std::fill(obase + r * us.inner + i0, obase + r * us.inner + i1, T{});
        for (int64_t j = 0; j < us.extent; ++j) {
          const int64_t row = (o * us.extent + j) * us.inner;
          for (int64_t i = i0; i < i1; ++i)
            obase[wrap(idx[row + i], size) * us.inner + i] += upd[row + i];
        }
      });
    });
  });
}

// out[o, idx[j], i] += upd[o, j, i], into zeros of axis extent `size`.
void index_add_kernel(const KernelCall& k) {
  const Tensor &indices = k.inputs[0], &updates = k.inputs[1];
  Tensor& out = k.outputs[0];
  const int axis = normalize_axis(k.ctx.i("axis"), updates.ndim(), k.ctx.where());
  const int64_t size = k.ctx.i("size");
  const AxisSplit us = ops::split_at(updates.shape(), axis);
  visit_index(indices.dtype(), [&](auto izero) {
    using I = decltype(izero);
    const I* idx = indices.data<I>();
    validate(idx, indices.numel(), size, IndexRange::AllowNegative, k.ctx, axis);
    visit_fast(out.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* upd = updates.data<T>();
      T* dst = out.data<T>();
      for_each_tile(us, us.extent, [&](int64_t o, int64_t i0, int64_t i1) {
        T* obase = dst + o * size * us.inner;
        for (int64_t r = 0; r < size; ++r)
          std::fill(obase + r * us.inner + i0, obase + r * us.inner + i1, T{});
        for (int64_t j = 0; j < us.extent; ++j) {
          T* __restrict orow = obase + wrap(idx[j], size) * us.inner;
          const T* __restrict urow = upd + (o * us.extent + j) * us.inner;
          for (int64_t i = i0; i < i1; ++i) orow[i] += urow[i];
        }
      });
    });
  });
}

bool indices_at(const OpContext& c, size_t i) {
  return index_dtype(c.inputs[i].dtype);
}

const OpRegistrar reg([] {
  register_kernel(
      "take_along_axis", DeviceKind::CPU,
      {take_along_axis_kernel, [](const OpContext& c) { return indices_at(c, 1); }, "gather", 10});
  register_kernel("index_select", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     const int axis =
                         normalize_axis(k.ctx.i("axis"), k.inputs[0].ndim(), k.ctx.where());
                     gather_rows(k.inputs[0], k.inputs[1], k.outputs[0], axis,
                                 IndexRange::AllowNegative, k.ctx);
                   },
                   [](const OpContext& c) { return indices_at(c, 1); }, "gather", 10});
  register_kernel("embedding", DeviceKind::CPU,
                  {[](const KernelCall& k) {
                     gather_rows(k.inputs[1], k.inputs[0], k.outputs[0], 0, IndexRange::NonNegative,
                                 k.ctx);
                   },
                   [](const OpContext& c) { return indices_at(c, 0); }, "gather", 10});
  auto scatter_supports = [](const OpContext& c) {
    return indices_at(c, 0) && is_fast(c.inputs[1].dtype);
  };
  register_kernel("scatter_add_along_axis", DeviceKind::CPU,
                  {scatter_add_along_axis_kernel, scatter_supports, "scatter", 10});
  register_kernel("index_add", DeviceKind::CPU,
                  {index_add_kernel, scatter_supports, "scatter", 10});
});

}  // namespace
}  // namespace ds::cpu
