// Strided copies on the device: element i of a shape, read through one set of
// strides and written through another (a transpose, a slice, a broadcast, the
// interior of a padded tensor, a stacked slot), and fills. Elements move as raw
// words: no dtype conversion. Dims that continue each other in both operands are
// merged first; one contiguous run is a plain device memcpy; contiguous inner runs
// move in words of up to 16 bytes. Tensor::contiguous() and clone() reach it through the device hooks;
// the layout kernels (layout_kernels.cpp) build their views on it.
#include "backends/cuda/strided_copy.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/cuda/cuda_check.h"
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

const char* const kFill = R"(
extern "C" __global__ void ds_fill(W* __restrict__ o, long long n, W value) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    o[i] = value;
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
    case 8: return "unsigned long long";
    default: return "uint4";
  }
}

void strided_copy(int device, const void* src, const Shape& shape, const Shape& src_strides,
                  void* dst, const Shape& dst_strides, size_t element_size, const char* what) {
  long long n = numel(shape);
  if (n == 0) return;
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
    set_device(device);
    DS_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * element_size,
                                  cudaMemcpyDeviceToDevice, stream_of(device)));
    return;
  }
  // A run contiguous in both operands moves in the widest word (up to 16 bytes) that
  // its length, every other stride and both pointers allow: the head split of
  // attention (bf16 rows of 64) measured 460 GB/s in 2-byte words on the H200.
  size_t word = element_size;
  if (!size.empty() && ss[0] == 1 && ds[0] == 1) {
    auto divides = [&](size_t w) {
      if ((static_cast<size_t>(size[0]) * element_size) % w != 0 ||
          reinterpret_cast<uintptr_t>(src) % w != 0 || reinterpret_cast<uintptr_t>(dst) % w != 0)
        return false;
      for (size_t d = 1; d < size.size(); ++d)
        if ((static_cast<size_t>(ss[d]) * element_size) % w != 0 ||
            (static_cast<size_t>(ds[d]) * element_size) % w != 0)
          return false;
      return true;
    };
    for (size_t w = 16; w > element_size; w /= 2)
      if (divides(w)) {
        word = w;
        break;
      }
    const int64_t k = static_cast<int64_t>(word / element_size);
    size[0] /= k;
    for (size_t d = 1; d < size.size(); ++d) ss[d] /= k, ds[d] /= k;
    n /= k;
  }
  DS_CHECK(size.size() <= kMaxDims, ShapeError, what, ": more than ", kMaxDims,
           " non-mergeable dims in a CUDA strided copy of shape ", shape_str(shape));
  Layout layout{static_cast<int>(size.size()), {}, {}, {}};
  for (int i = 0; i < layout.ndim; ++i) {  // device order: outermost first
    const size_t from = size.size() - 1 - static_cast<size_t>(i);
    layout.size[i] = size[from];
    layout.src[i] = ss[from];
    layout.dst[i] = ds[from];
  }
  const std::string source = std::string("typedef ") + word_type(word) + " W;\n" + kStridedCopy;
  void* args[] = {&src, &dst, &n, &layout};
  launch(device, get_kernel(device, source, "ds_strided_copy"), grid_for(n, device), 256, args, 0,
         what);
}

void fill(Tensor& out, double value, const char* what) {
  long long n = out.numel();
  if (n == 0) return;
  const int device = out.device().index;
  // The value's bits in the output dtype, converted as the CPU does, passed as a W.
  const Tensor one = Tensor::full({1}, value, out.dtype());
  const size_t size = dtype_size(out.dtype());
  unsigned long long bits = 0;
  std::memcpy(&bits, one.raw_data(), size);
  unsigned char v1 = static_cast<unsigned char>(bits);
  unsigned short v2 = static_cast<unsigned short>(bits);
  unsigned int v4 = static_cast<unsigned int>(bits);
  void* value_arg = size == 1 ? static_cast<void*>(&v1)
                    : size == 2 ? static_cast<void*>(&v2)
                    : size == 4 ? static_cast<void*>(&v4)
                                : static_cast<void*>(&bits);
  void* dst = out.raw_data();
  void* args[] = {&dst, &n, value_arg};
  const std::string source = std::string("typedef ") + word_type(size) + " W;\n" + kFill;
  launch(device, get_kernel(device, source, "ds_fill"), grid_for(n, device), 256, args, 0, what);
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
