// A contiguous copy of a strided device tensor (a transpose, a slice, a broadcast
// view), made on the device: one thread per output element walks the source's
// strides. Tensor::contiguous() and clone() reach it through the device hooks.
#include "backends/cuda/device_allocator.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;

// Elements are moved as raw 1/2/4/8-byte words: no dtype conversion happens.
const char* const kStridedCopy = R"(
struct ds_layout { int ndim; long long size[8]; long long stride[8]; };
extern "C" __global__ void ds_strided_copy(const W* __restrict__ src, W* __restrict__ dst, long long n,
                                           ds_layout s) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long rest = i, off = 0;
    for (int d = s.ndim - 1; d >= 0; --d) {
      off += (rest % s.size[d]) * s.stride[d];
      rest /= s.size[d];
    }
    dst[i] = src[off];
  }
}
)";

struct Layout {
  int ndim;
  long long size[kMaxDims];
  long long stride[kMaxDims];
};

const char* word_type(size_t bytes) {
  switch (bytes) {
    case 1: return "unsigned char";
    case 2: return "unsigned short";
    case 4: return "unsigned int";
    default: return "unsigned long long";
  }
}

}  // namespace

Tensor contiguous_on_device(const Tensor& src) {
  const Device d = src.device();
  Tensor out = Tensor::empty(src.shape(), src.dtype(), d);
  long long n = src.numel();
  if (n == 0) return out;
  DS_CHECK(src.shape().size() <= kMaxDims, ShapeError, "contiguous on ", d.str(), ": rank ",
           src.shape().size(), " exceeds the ", kMaxDims, " dims the strided copy handles");
  Layout layout{static_cast<int>(src.shape().size()), {}, {}};
  for (int i = 0; i < layout.ndim; ++i) {
    layout.size[i] = src.shape()[i];
    layout.stride[i] = src.strides()[i];
  }
  const std::string source =
      std::string("typedef ") + word_type(dtype_size(src.dtype())) + " W;\n" + kStridedCopy;
  const void* sp = src.raw_data();
  void* dp = out.raw_data();
  void* args[] = {&sp, &dp, &n, &layout};
  launch(d.index, get_kernel(d.index, source, "ds_strided_copy"), grid_for(n, d.index), 256, args,
         0, "contiguous");
  return out;
}

}  // namespace ds::cuda
