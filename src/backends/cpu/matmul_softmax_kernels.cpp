// The CPU matmul_softmax kernel (float32): each task takes one batch item and a
// chunk of its rows, packs op(b) once into column panels, then runs the ISA's row
// kernels (matmul_softmax_rows.h): a block of rows of scale * a @ op(b) computed
// into a cache-resident scratch buffer, the mask added and the rows normalized
// there, each output row written once. The product never goes to memory, and a
// transposed b is read in place of a separate transpose kernel.
#include <algorithm>
#include <vector>

#include "backends/cpu/matmul_softmax_rows.h"
#include "core/thread_pool.h"
#include "ds/op.h"
#include "ds/runtime.h"
#include "ir/ops/linalg_shapes.h"
#include "ir/ops/op_helpers.h"

namespace ds::cpu {
namespace {

// A task packs op(b) (n * k floats): give it enough rows that this stays small
// next to its rows * n * k multiply-adds.
constexpr int64_t kMinTaskRows = 64;
// A thread's packed op(b) above this (8 MiB) is released after the call, not kept.
constexpr size_t kKeepFloats = size_t{1} << 21;

const MatmulSoftmaxRows* best_rows() {
  static const MatmulSoftmaxRows* const rows =
      matmul_softmax_rows_avx512() ? matmul_softmax_rows_avx512() : matmul_softmax_rows_avx2();
  return rows;
}

Shape product_rhs_shape(const Shape& b, bool trans_b) {
  Shape s = b;
  if (trans_b) std::swap(s[s.size() - 1], s[s.size() - 2]);
  return s;
}

// Where the mask (broadcast to the scores `out` [batch..., M, N]) starts for each
// batch item, and its row and column strides: 0 along the dims it broadcasts.
struct MaskLayout {
  std::vector<int64_t> item_offset;
  int64_t row_stride = 0, col_stride = 0;
};

MaskLayout mask_layout(const Shape& mask, const Shape& out) {
  const size_t rank = out.size(), lead = rank - mask.size();
  std::vector<int64_t> stride(rank, 0);
  int64_t step = 1;
  for (size_t d = rank; d-- > lead;) {
    stride[d] = mask[d - lead] == 1 ? 0 : step;
    step *= mask[d - lead];
  }
  MaskLayout l{{0}, stride[rank - 2], stride[rank - 1]};
  for (size_t d = 0; d + 2 < rank; ++d) {  // items run over the batch dims, last fastest
    std::vector<int64_t> next;
    for (int64_t base : l.item_offset)
      for (int64_t i = 0; i < out[d]; ++i) next.push_back(base + i * stride[d]);
    l.item_offset = std::move(next);
  }
  return l;
}

void run(const MatmulSoftmaxRows& impl, const KernelCall& kc) {
  const Tensor &a = kc.inputs[0], &b = kc.inputs[1];
  Tensor& y = kc.outputs[0];
  const bool trans_b = kc.ctx.b("trans_b");
  const auto d = ops::matmul_dims(a.shape(), product_rhs_shape(b.shape(), trans_b), kc.ctx.where());
  if (y.numel() == 0) return;
  const auto ia = ops::broadcast_index(d.a_batch, d.batch);
  const auto ib = ops::broadcast_index(d.b_batch, d.batch);
  const int64_t m = d.m, n = d.n, k = d.k, items = static_cast<int64_t>(ia.size());
  // Enough tasks for every thread twice over (for balance), none under kMinTaskRows rows.
  const int64_t want = (2 * num_threads() + items - 1) / items;
  const int64_t chunks = std::clamp<int64_t>(want, 1, (m + kMinTaskRows - 1) / kMinTaskRows);
  const int64_t chunk_rows =
      ((m + chunks - 1) / chunks + impl.block_rows - 1) / impl.block_rows * impl.block_rows;
  const int64_t tasks_per_item = (m + chunk_rows - 1) / chunk_rows;
  const float *pa = a.data<float>(), *pb = b.data<float>();
  float* py = y.data<float>();
  const float scale = static_cast<float>(kc.ctx.f("scale"));
  const bool masked = kc.inputs.size() > 2;
  const MaskLayout ml = masked ? mask_layout(kc.inputs[2].shape(), y.shape()) : MaskLayout{};
  const float* pm = masked ? kc.inputs[2].data<float>() : nullptr;
  parallel_for(items * tasks_per_item, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> packed, scratch;
    packed.resize(static_cast<size_t>(impl.packed_floats(n, k)));
    scratch.resize(static_cast<size_t>(impl.scratch_floats(n)));
    int64_t packed_item = -1;  // consecutive tasks of one b item pack it once
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t / tasks_per_item, r0 = t % tasks_per_item * chunk_rows;
      if (ib[i] != packed_item) {
        impl.pack(pb + ib[i] * n * k, trans_b, n, k, packed.data());
        packed_item = ib[i];
      }
      const RowMask mask = masked ? RowMask{pm + ml.item_offset[i] + r0 * ml.row_stride,
                                            ml.row_stride, ml.col_stride}
                                  : RowMask{};
      impl.rows(pa + ia[i] * m * k + r0 * k, packed.data(), std::min(chunk_rows, m - r0), n, k,
                scale, mask, py + i * m * n + r0 * n, scratch.data());
    }
    if (packed.capacity() > kKeepFloats) std::vector<float>().swap(packed);
  });
}

const OpRegistrar reg([] {
  const MatmulSoftmaxRows* impl = best_rows();
  if (!impl) return;
  register_kernel("matmul_softmax", DeviceKind::CPU,
                  {.fn = [impl](const KernelCall& kc) { run(*impl, kc); },
                   .supports =
                       [](const OpContext& c) {
                         for (const TensorType& t : c.inputs)
                           if (t.dtype != DType::Float32) return false;
                         return true;
                       },
                   .impl = impl->isa,
                   .priority = 10});
});

}  // namespace
}  // namespace ds::cpu
