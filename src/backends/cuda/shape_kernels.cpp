// The shape ops layout_kernels.cpp leaves out: stack (a strided copy of each
// input into its slot of the output), tril/triu (causal masks) and full. The
// kernels move elements as unsigned integers of the element's width, so every
// dtype is served; adjacent dims that are contiguous in both operands are merged
// before the launch.
#include <cstring>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;

struct CopyArgs {
  long long size[kMaxDims], ss[kMaxDims], ds[kMaxDims];
  int ndim;
};

const char* const kShape = R"(
struct CopyArgs { long long size[8], ss[8], ds[8]; int ndim; };
#define DS_FOR(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
                          i += (long long)gridDim.x * blockDim.x)
extern "C" __global__ void ds_strided_copy(const V* __restrict__ src, V* __restrict__ dst,
                                           long long n, CopyArgs g) {
  DS_FOR(i, n) {
    long long r = i, s = 0, d = 0;
    for (int k = g.ndim - 1; k >= 0; --k) {
      const long long c = r % g.size[k];
      r /= g.size[k];
      s += c * g.ss[k];
      d += c * g.ds[k];
    }
    dst[d] = src[s];
  }
}
extern "C" __global__ void ds_fill(V* __restrict__ dst, long long n, V value) {
  DS_FOR(i, n) dst[i] = value;
}
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

std::string copy_type(size_t bytes) {
  switch (bytes) {
    case 1: return "unsigned char";
    case 2: return "unsigned short";
    case 4: return "unsigned int";
    default: return "unsigned long long";
  }
}

std::string source(size_t elem) { return "typedef " + copy_type(elem) + " V;\n" + kShape; }

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size(), 1);
  for (int d = static_cast<int>(s.size()) - 2; d >= 0; --d) st[d] = st[d + 1] * s[d + 1];
  return st;
}

// dst[index] = src[index] over `shape`, both given by element strides from their first element.
void strided_copy(const KernelCall& kc, const void* src, const Shape& src_strides, void* dst,
                  const Shape& dst_strides, const Shape& shape, size_t elem) {
  const int64_t n = numel(shape);
  if (n == 0) return;
  const int dev = call_device(kc);
  CopyArgs g{};
  // Merge dims (innermost first) that continue each other in both operands; drop extent 1.
  std::vector<int64_t> size, ss, ds;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (!size.empty() && ss.back() * size.back() == src_strides[d] &&
        ds.back() * size.back() == dst_strides[d]) {
      size.back() *= shape[d];
      continue;
    }
    size.push_back(shape[d]), ss.push_back(src_strides[d]), ds.push_back(dst_strides[d]);
  }
  if (size.size() == 1 && ss[0] == 1 && ds[0] == 1) {  // one contiguous run
    set_device(dev);
    DS_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * elem,
                                  cudaMemcpyDeviceToDevice, stream_of(dev)));
    return;
  }
  DS_CHECK(size.size() <= kMaxDims, ShapeError, kc.ctx.where(), "more than ", kMaxDims,
           " non-mergeable dims in a GPU copy of shape ", shape_str(shape));
  g.ndim = static_cast<int>(size.size());
  for (int i = 0; i < g.ndim; ++i) {  // device order: outermost first
    g.size[i] = size[size.size() - 1 - i];
    g.ss[i] = ss[size.size() - 1 - i];
    g.ds[i] = ds[size.size() - 1 - i];
  }
  long long count = n;
  void* args[] = {&src, &dst, &count, &g};
  launch(dev, get_kernel(dev, source(elem), "ds_strided_copy"), grid_for(n, dev), 256, args, 0,
         kc.ctx.op.name.c_str());
}

void fill(const KernelCall& kc, Tensor& out, double value) {
  long long n = out.numel();
  if (n == 0) return;
  const int dev = call_device(kc);
  // The value's bits in the output dtype, converted as the CPU does.
  const Tensor one = Tensor::full({1}, value, out.dtype());
  unsigned long long bits = 0;
  std::memcpy(&bits, one.raw_data(), dtype_size(out.dtype()));
  void* dst = out.raw_data();
  const size_t elem = dtype_size(out.dtype());
  unsigned char v1 = static_cast<unsigned char>(bits);
  unsigned short v2 = static_cast<unsigned short>(bits);
  unsigned int v4 = static_cast<unsigned int>(bits);
  void* value_arg = elem == 1 ? static_cast<void*>(&v1)
                    : elem == 2 ? static_cast<void*>(&v2)
                    : elem == 4 ? static_cast<void*>(&v4)
                                : static_cast<void*>(&bits);
  void* args[] = {&dst, &n, value_arg};
  launch(dev, get_kernel(dev, source(elem), "ds_fill"), grid_for(n, dev), 256, args, 0,
         kc.ctx.op.name.c_str());
}

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
    strided_copy(kc, x.raw_data(), contiguous_strides(x.shape()), dst, st, x.shape(), elem);
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
                  {[](const KernelCall& kc) { fill(kc, kc.outputs[0], kc.ctx.f("value")); },
                   nullptr, "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
