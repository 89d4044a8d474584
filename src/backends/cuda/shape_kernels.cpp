// The shape ops layout_kernels.cpp leaves out: stack (a strided copy of each
// input into its slot of the output), tril/triu (causal masks) and full. The
// kernels move elements as unsigned integers of the element's width, so every
// dtype is served.

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "backends/cuda/strided_copy.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;

const char* const kShape = R"(
#define DS_FOR(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
                          i += (long long)gridDim.x * blockDim.x)
// Keeps x[..., i, j] where j - i <= k (lower) or >= k (upper); zero bits elsewhere.
extern "C" __global__ void ds_triangle(const V* __restrict__ src, V* __restrict__ dst, long long n,
                                       long long rows, long long cols, long long k, int lower) {
  DS_FOR(t, n) {
    const long long j = t % cols, i = t / cols % rows;
    const bool keep = lower ? j - i <= k : j - i >= k;
    dst[t] = keep ? src[t] : V();
  }
}
)";

std::string source(size_t elem) { return std::string("typedef ") + word_type(elem) + " V;\n" + kShape; }

// stack: input k goes to out[..., k, ...]: the output's strides without `axis`.
void stack_kernel(const KernelCall& kc) {
  Tensor& out = kc.outputs[0];
  const int axis = normalize_axis(kc.ctx.i("axis"), out.ndim(), kc.ctx.where());
  const Shape full = contiguous_strides(out.shape());
  Shape st = full;
  st.erase(st.begin() + axis);
  const size_t elem = dtype_size(out.dtype());
  for (size_t k = 0; k < kc.inputs.size(); ++k) {
    const Tensor& x = kc.inputs[k];
    const int64_t at = static_cast<int64_t>(k) * full[static_cast<size_t>(axis)];
    void* dst = static_cast<char*>(out.raw_data()) + at * static_cast<int64_t>(elem);
    strided_copy(call_device(kc), x.raw_data(), x.shape(), contiguous_strides(x.shape()), dst, st,
                 elem, "stack");
  }
}

void triangle_kernel(const KernelCall& kc, int lower) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  long long n = x.numel();
  if (n == 0) return;
  const int dev = call_device(kc);
  long long rows = x.dim(x.ndim() - 2), cols = x.dim(x.ndim() - 1), k = kc.ctx.i("k");
  const void* src = x.raw_data();
  void* dst = out.raw_data();
  void* args[] = {&src, &dst, &n, &rows, &cols, &k, &lower};
  launch(dev, get_kernel(dev, source(dtype_size(x.dtype())), "ds_triangle"), grid_for(n, dev), 256,
         args, 0, kc.ctx.op.name.c_str());
}

bool rank_fits(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.shape.size() > kMaxDims) return false;
  return true;
}

// Copies keep the dtype: every input must already have the output's.
bool same_dtype(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  return rank_fits(c);
}

const OpRegistrar reg([] {
  register_kernel("stack", DeviceKind::CUDA, {stack_kernel, same_dtype, "nvrtc", 10});
  register_kernel("tril", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { triangle_kernel(kc, 1); }, nullptr, "nvrtc", 10});
  register_kernel("triu", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { triangle_kernel(kc, 0); }, nullptr, "nvrtc", 10});
  register_kernel("full", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { fill(kc.outputs[0], kc.ctx.f("value"), "full"); },
                   nullptr, "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
