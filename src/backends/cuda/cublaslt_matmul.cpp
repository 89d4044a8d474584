// matmul and linear through cuBLASLt. ds tensors are row-major; cuBLASLt is
// column-major, so C = A·op(B) (row-major) is computed as C' = op(B)'·A' with
// the same memory: no transposes are materialized. Bias and ReLU/GELU run in
// the matmul's epilogue.
#include <atomic>
#include <map>

#include "backends/cuda/cublaslt_support.h"
#include "backends/cuda/cuda_check.h"
#include "ds/cuda.h"
#include "ds/op.h"
#include "ir/ops/linalg_shapes.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

std::atomic<bool> tf32_allowed{false};

// Row-major c[batch][m][n] = a[batch][m][k] · b (b is [k][n], or [n][k] with trans_b),
// a batch stride of 0 repeats an operand over the batch.
struct Gemm {
  const Tensor* a;
  const Tensor* b;
  Tensor* c;
  const Tensor* bias = nullptr;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  int64_t stride_a = 0, stride_b = 0;
  bool trans_b = false;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
};

// Row-major c = a·op(b) is column-major c' = op(b)'·a' on the same memory.
void run_gemm(const Gemm& g, const std::string& what) {
  const int device = g.c->device().index;
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (g.k == 0) {  // an empty sum: cuBLASLt needs k >= 1
    set_device(device);
    DS_CUDA_CHECK(cudaMemsetAsync(g.c->raw_data(), 0, g.c->nbytes(), stream_of(device)));
    DS_CHECK(g.epilogue == CUBLASLT_EPILOGUE_DEFAULT, ValueError,
             "cuBLASLt matmul: k = 0 with a bias or activation epilogue is not supported");
    return;
  }
  LtMatmul m;
  m.dtype = g.c->dtype();
  m.rows = g.n, m.cols = g.m, m.inner = g.k, m.batch = g.batch;
  m.a = g.b->raw_data(), m.trans_a = g.trans_b, m.stride_a = g.stride_b;
  m.b = g.a->raw_data(), m.stride_b = g.stride_a;
  m.d = g.c->raw_data(), m.stride_d = g.m * g.n;
  m.bias = g.bias ? g.bias->raw_data() : nullptr;
  m.epilogue = g.epilogue;
  lt_matmul(device, m, what.c_str());
}

bool same_float_inputs(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  return lt_dtype(c.inputs[0].dtype);
}

// Each operand's batch is the full broadcast batch (contiguous) or a single matrix.
bool matmul_supported(const OpContext& c) {
  if (!same_float_inputs(c)) return false;
  const auto d = ops::matmul_dims(c.inputs[0].shape, c.inputs[1].shape, c.where());
  const int64_t batch = numel(d.batch);
  return (numel(d.a_batch) == batch || numel(d.a_batch) == 1) &&
         (numel(d.b_batch) == batch || numel(d.b_batch) == 1) && batch <= INT32_MAX;
}

void matmul_kernel(const KernelCall& kc) {
  const auto d = ops::matmul_dims(kc.inputs[0].shape(), kc.inputs[1].shape(), kc.ctx.where());
  Gemm g{&kc.inputs[0], &kc.inputs[1], &kc.outputs[0]};
  g.m = d.m;
  g.n = d.n;
  g.k = d.k;
  g.batch = numel(d.batch);
  g.stride_a = numel(d.a_batch) == 1 ? 0 : d.m * d.k;
  g.stride_b = numel(d.b_batch) == 1 ? 0 : d.k * d.n;
  if (g.stride_b == 0 && g.batch > 1) {
    // A batch of rows times one matrix is one taller product: one launch, and
    // lt_matmul pads unaligned dimensions only for single products (GPT-2's
    // [16, 1024, 50257] x [50257, 768] ran at 141 TFLOP/s as a batch of 16).
    g.m *= g.batch;
    g.batch = 1;
    g.stride_a = 0;
  }
  run_gemm(g, kc.ctx.where());
}

Gemm linear_gemm(const Tensor& x, const Tensor& w, Tensor& y) {
  Gemm g{&x, &w, &y};
  g.n = w.dim(0);
  g.k = w.dim(1);
  g.m = g.n == 0 ? 0 : y.numel() / g.n;
  g.trans_b = true;
  return g;
}

// cuBLASLt's bias epilogue is for fp32/fp16/bf16 outputs; fp64 with a bias runs on the CPU.
bool linear_supported(const OpContext& c) {
  return same_float_inputs(c) && !(c.inputs.size() > 2 && c.inputs[0].dtype == DType::Float64);
}

void linear_kernel(const KernelCall& kc) {
  Gemm g = linear_gemm(kc.inputs[0], kc.inputs[1], kc.outputs[0]);
  if (kc.inputs.size() > 2) {
    g.bias = &kc.inputs[2];
    g.epilogue = CUBLASLT_EPILOGUE_BIAS;
  }
  run_gemm(g, kc.ctx.where());
}

const OpRegistrar reg([] {
  register_kernel("matmul", DeviceKind::CUDA, {matmul_kernel, matmul_supported, "cublaslt", 10});
  register_kernel("linear", DeviceKind::CUDA, {linear_kernel, linear_supported, "cublaslt", 10});
});

}  // namespace

Tensor fused_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Activation act) {
  const bool has_bias = bias.defined();
  DS_CHECK(x.ndim() == 2 && weight.ndim() == 2 && x.dim(1) == weight.dim(1), ShapeError,
           "fused_linear: expects x [rows, in] and weight [out, in], got ", shape_str(x.shape()),
           " and ", shape_str(weight.shape()));
  DS_CHECK(!has_bias || bias.shape() == Shape{weight.dim(0)}, ShapeError, "fused_linear: bias ",
           shape_str(bias.shape()), " must be [", weight.dim(0), "]");
  for (const Tensor* t : {&x, &weight, &bias}) {
    if (!t->defined()) continue;
    DS_CHECK(t->device() == x.device() && x.device().kind == DeviceKind::CUDA, ValueError,
             "fused_linear: every tensor must be on one CUDA device, got ", t->device().str(),
             " and ", x.device().str());
    DS_CHECK(t->dtype() == x.dtype() && lt_dtype(t->dtype()) && t->is_contiguous(), TypeError,
             "fused_linear: tensors must be contiguous with one float dtype, got ",
             dtype_name(t->dtype()), " and ", dtype_name(x.dtype()));
  }
  Tensor y = Tensor::empty({x.dim(0), weight.dim(0)}, x.dtype(), x.device());
  Gemm g = linear_gemm(x, weight, y);
  if (has_bias) g.bias = &bias;
  static const std::map<std::pair<Activation, bool>, cublasLtEpilogue_t> epilogues = {
      {{Activation::None, false}, CUBLASLT_EPILOGUE_DEFAULT},
      {{Activation::None, true}, CUBLASLT_EPILOGUE_BIAS},
      {{Activation::Relu, false}, CUBLASLT_EPILOGUE_RELU},
      {{Activation::Relu, true}, CUBLASLT_EPILOGUE_RELU_BIAS},
      {{Activation::Gelu, false}, CUBLASLT_EPILOGUE_GELU},
      {{Activation::Gelu, true}, CUBLASLT_EPILOGUE_GELU_BIAS}};
  g.epilogue = epilogues.at({act, has_bias});
  run_gemm(g, "fused_linear");
  return y;
}

void set_allow_tf32(bool allow) { tf32_allowed.store(allow); }
bool allow_tf32() { return tf32_allowed.load(); }

}  // namespace ds::cuda
