// gemm (ONNX Gemm: y = alpha * op(a) @ op(b) + beta * c) through cuBLASLt; the
// weight gradients of linear layers come out of autodiff as gemm with a
// transposed operand. ds tensors are row-major and cuBLASLt column-major, so
// y^T = op(b)^T op(a)^T is computed on the same memory: a row-major operand read
// column-major is its transpose, and a transposed operand becomes CUBLAS_OP_T.
// c is broadcast into y first (one NVRTC pass), then cuBLASLt accumulates into y
// with beta.

#include "backends/cuda/cublaslt_support.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"
#include "ir/ops/linalg_shapes.h"

namespace ds::cuda {
namespace {

// y[i, j] = c[i or 0, j or 0] for c viewed as [cm, cn] (cm in {1, m}, cn in {1, n}).
const char* const kBroadcastC = R"(
extern "C" __global__ void ds_gemm_c(const T* __restrict__ c, T* __restrict__ y, long long m,
                                     long long n, long long cm, long long cn) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < m * n;
       i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / n, col = i % n;
    y[i] = c[(cm == 1 ? 0 : r) * cn + (cn == 1 ? 0 : col)];
  }
}
)";

void broadcast_c(const KernelCall& kc, int dev, int64_t m, int64_t n) {
  const Tensor& c = kc.inputs[2];
  const Shape& s = c.shape();
  long long cm = s.size() == 2 ? s[0] : 1, cn = s.empty() ? 1 : s.back();
  long long mm = m, nn = n;
  const void* cp = c.raw_data();
  void* yp = kc.outputs[0].raw_data();
  void* args[] = {&cp, &yp, &mm, &nn, &cm, &cn};
  const std::string src = "typedef " + device_type(c.dtype()) + " T;\n" + kBroadcastC;
  launch(dev, get_kernel(dev, src, "ds_gemm_c"), grid_for(m * n, dev), 256, args, 0, "gemm c");
}

void gemm_kernel(const KernelCall& kc) {
  const OpContext& ctx = kc.ctx;
  const bool ta = ctx.b("trans_a"), tb = ctx.b("trans_b");
  const auto d = ops::gemm_dims(kc.inputs[0].shape(), kc.inputs[1].shape(), ta, tb, ctx.where());
  Tensor& y = kc.outputs[0];
  if (y.numel() == 0) return;
  const int dev = call_device(kc);
  const bool with_c = kc.inputs.size() > 2 && ctx.f("beta") != 0.0;
  if (with_c) broadcast_c(kc, dev, d.m, d.n);
  // Column-major: y^T (n x m) = op(b)^T (n x k) @ op(a)^T (k x m); a row-major
  // operand read column-major is its transpose, so op(b)^T is b's storage as is
  // unless b is transposed (likewise a).
  LtMatmul m;
  m.dtype = y.dtype();
  m.rows = d.n, m.cols = d.m, m.inner = d.k;
  m.a = kc.inputs[1].raw_data(), m.trans_a = tb;
  m.b = kc.inputs[0].raw_data(), m.trans_b = ta;
  m.d = y.raw_data();
  m.alpha = ctx.f("alpha");
  m.beta = with_c ? ctx.f("beta") : 0.0;
  lt_matmul(dev, m, ctx.where().c_str());
}

// One float dtype throughout and a non-empty inner dimension (cuBLASLt needs k >= 1).
bool supported(const OpContext& c) {
  const DType t = c.inputs[0].dtype;
  for (const auto& in : c.inputs)
    if (in.dtype != t) return false;
  if (!lt_dtype(t)) return false;
  const auto d = ops::gemm_dims(c.inputs[0].shape, c.inputs[1].shape, c.b("trans_a"),
                                c.b("trans_b"), c.where());
  return d.k > 0;
}

const OpRegistrar reg([] {
  register_kernel("gemm", DeviceKind::CUDA, {gemm_kernel, supported, "cublaslt", 10});
});

}  // namespace

}  // namespace ds::cuda
