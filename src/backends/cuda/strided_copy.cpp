// Strided copies on the device: element i of a shape, read through one set of
// strides and written through another (a transpose, a slice, a broadcast, the
// interior of a padded tensor). Elements move as raw 1/2/4/8-byte words: no dtype
// conversion. Tensor::contiguous() and clone() reach it through the device hooks;
// the layout kernels (layout_kernels.cpp) build their views on it.
#include "backends/cuda/strided_copy.h"

#include "backends/cuda/device_allocator.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;

const char* const kStridedCopy = R"(
struct ds_layout { int ndim; long long size[8]; long long src[8]; long long dst[8]; };
extern "C" __global__ void ds_strided_copy(const W* __restrict__ src, W* __restrict__ dst, long long n,
                                           ds_layout s) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long rest = i, from = 0, to = 0;
    for (int d = s.ndim - 1; d >= 0; --d) {
      const long long c = rest % s.size[d];
      rest /= s.size[d];
      from += c * s.src[d];
      to += c * s.dst[d];
    }
    dst[to] = src[from];
  }
}
)";

struct Layout {
  int ndim;
  long long size[kMaxDims];
  long long src[kMaxDims];
  long long dst[kMaxDims];
};

}  // namespace

const char* word_type(size_t bytes) {
  switch (bytes) {
    case 1: return "unsigned char";
    case 2: return "unsigned short";
    case 4: return "unsigned int";
    default: return "unsigned long long";
  }
}

void strided_copy(int device, const void* src, const Shape& shape, const Shape& src_strides,
                  void* dst, const Shape& dst_strides, size_t element_size, const char* what) {
  long long n = numel(shape);
  if (n == 0) return;
  DS_CHECK(shape.size() <= kMaxDims, ShapeError, what, ": rank ", shape.size(), " exceeds the ",
           kMaxDims, " dims a CUDA strided copy handles");
  Layout layout{static_cast<int>(shape.size()), {}, {}, {}};
  for (int i = 0; i < layout.ndim; ++i) {
    layout.size[i] = shape[i];
    layout.src[i] = src_strides[i];
    layout.dst[i] = dst_strides[i];
  }
  const std::string source = std::string("typedef ") + word_type(element_size) + " W;\n" + kStridedCopy;
  void* args[] = {&src, &dst, &n, &layout};
  launch(device, get_kernel(device, source, "ds_strided_copy"), grid_for(n, device), 256, args, 0,
         what);
}

void strided_copy(const Tensor& src, Tensor& dst, const char* what) {
  DS_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype(), ValueError, what,
           ": strided copy of ", shape_str(src.shape()), " ", dtype_name(src.dtype()), " into ",
           shape_str(dst.shape()), " ", dtype_name(dst.dtype()));
  strided_copy(dst.device().index, src.raw_data(), src.shape(), src.strides(), dst.raw_data(),
               dst.strides(), dtype_size(src.dtype()), what);
}

Tensor contiguous_on_device(const Tensor& src) {
  Tensor out = Tensor::empty(src.shape(), src.dtype(), src.device());
  strided_copy(src, out, "contiguous");
  return out;
}

}  // namespace ds::cuda
