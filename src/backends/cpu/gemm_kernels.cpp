#include "backends/cpu/gemm_kernels.h"

#include <algorithm>

#include "ir/ops/linalg_shapes.h"
#include "ir/ops/op_helpers.h"

namespace ds::cpu {
namespace {

bool all_float32(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != DType::Float32) return false;
  return true;
}

int64_t count(const Shape& s) { return std::max<int64_t>(numel(s), 0); }

GemmSize gemm_size(const OpContext& c) {
  const std::string& op = c.op.name;
  if (op == "matmul") {
    const auto d = ops::matmul_dims(c.inputs[0].shape, c.inputs[1].shape, c.where());
    // A batch over a shared right operand runs as one GEMM with the batch folded into M.
    const bool folds = count(d.b_batch) == 1 && count(d.a_batch) == count(d.batch);
    return {folds ? d.m * count(d.batch) : d.m, d.n, d.k};
  }
  if (op == "linear") {
    const Shape& w = c.inputs[1].shape;
    return {w[1] == 0 ? 0 : count(c.inputs[0].shape) / w[1], w[0], w[1]};
  }
  const auto d = ops::gemm_dims(c.inputs[0].shape, c.inputs[1].shape, c.b("trans_a"),
                                c.b("trans_b"), c.where());
  return {d.m, d.n, d.k};
}

void run_matmul(SgemmFn sgemm, const KernelCall& kc) {
  const Tensor &a = kc.inputs[0], &b = kc.inputs[1];
  Tensor& y = kc.outputs[0];
  const auto d = ops::matmul_dims(a.shape(), b.shape(), kc.ctx.where());
  float* out = y.data<float>();
  if (y.numel() == 0) return;
  if (d.k == 0) {
    std::fill(out, out + y.numel(), 0.0f);
    return;
  }
  const float *pa = a.data<float>(), *pb = b.data<float>();
  const int64_t ldb = b.ndim() == 1 ? 1 : d.n;
  if (count(d.b_batch) == 1 && count(d.a_batch) == count(d.batch)) {
    sgemm(false, false, d.m * count(d.batch), d.n, d.k, 1.0f, pa, d.k, pb, ldb, 0.0f, out, d.n);
    return;
  }
  const auto ia = ops::broadcast_index(d.a_batch, d.batch);
  const auto ib = ops::broadcast_index(d.b_batch, d.batch);
  for (size_t i = 0; i < ia.size(); ++i)
    sgemm(false, false, d.m, d.n, d.k, 1.0f, pa + ia[i] * d.m * d.k, d.k, pb + ib[i] * d.k * d.n,
          ldb, 0.0f, out + static_cast<int64_t>(i) * d.m * d.n, d.n);
}

// Fills rows x cols of `out` with the bias row (or zeros), so the GEMM can accumulate.
void fill_rows(float* out, int64_t rows, int64_t cols, const float* bias) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = out + r * cols;
    if (bias)
      std::copy(bias, bias + cols, row);
    else
      std::fill(row, row + cols, 0.0f);
  }
}

void run_linear(SgemmFn sgemm, const KernelCall& kc) {
  const Tensor &x = kc.inputs[0], &w = kc.inputs[1];
  Tensor& y = kc.outputs[0];
  const int64_t out = w.dim(0), in = w.dim(1);
  const int64_t rows = out == 0 ? 0 : y.numel() / out;
  if (rows == 0 || out == 0) return;
  const float* bias = kc.inputs.size() > 2 ? kc.inputs[2].data<float>() : nullptr;
  if (bias || in == 0) fill_rows(y.data<float>(), rows, out, bias);
  if (in == 0) return;
  sgemm(false, true, rows, out, in, 1.0f, x.data<float>(), in, w.data<float>(), in,
        bias ? 1.0f : 0.0f, y.data<float>(), out);
}

void run_gemm(SgemmFn sgemm, const KernelCall& kc) {
  const Tensor &a = kc.inputs[0], &b = kc.inputs[1];
  Tensor& y = kc.outputs[0];
  const bool ta = kc.ctx.b("trans_a"), tb = kc.ctx.b("trans_b");
  const auto d = ops::gemm_dims(a.shape(), b.shape(), ta, tb, kc.ctx.where());
  if (y.numel() == 0) return;
  float* out = y.data<float>();
  float beta = 0.0f;
  if (kc.inputs.size() > 2) {
    // Broadcast c (rank <= 2) into the output, then accumulate with beta.
    const Tensor& c = kc.inputs[2];
    const Shape cs = c.ndim() == 2 ? c.shape() : c.ndim() == 1 ? Shape{1, c.dim(0)} : Shape{1, 1};
    const int64_t row_step = cs[0] == 1 ? 0 : cs[1], col_step = cs[1] == 1 ? 0 : 1;
    const float* pc = c.data<float>();
    for (int64_t i = 0; i < d.m; ++i)
      for (int64_t j = 0; j < d.n; ++j) out[i * d.n + j] = pc[i * row_step + j * col_step];
    beta = static_cast<float>(kc.ctx.f("beta"));
  }
  if (d.k == 0) {
    for (int64_t i = 0; i < y.numel(); ++i) out[i] *= beta;
    return;
  }
  sgemm(ta, tb, d.m, d.n, d.k, static_cast<float>(kc.ctx.f("alpha")), a.data<float>(), a.dim(1),
        b.data<float>(), b.dim(1), beta, out, d.n);
}

}  // namespace

void register_gemm_kernels(SgemmFn sgemm, const std::string& impl, int priority,
                           std::function<bool(const GemmSize&)> prefer) {
  auto supports = [prefer](const OpContext& c) { return all_float32(c) && prefer(gemm_size(c)); };
  register_kernel("matmul", DeviceKind::CPU,
                  {[sgemm](const KernelCall& k) { run_matmul(sgemm, k); }, supports, impl, priority});
  register_kernel("linear", DeviceKind::CPU,
                  {[sgemm](const KernelCall& k) { run_linear(sgemm, k); }, supports, impl, priority});
  register_kernel("gemm", DeviceKind::CPU,
                  {[sgemm](const KernelCall& k) { run_gemm(sgemm, k); }, supports, impl, priority});
  register_fused_gemm_kernel(sgemm, impl, priority, prefer);
}

}  // namespace ds::cpu
