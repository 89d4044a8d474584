// Indexing on the GPU: embedding, index_select, take_along_axis (gathers), their
// gradients index_add and scatter_add_along_axis (scatter-adds), and one_hot.
//
// Gathers only move bytes: they are compiled for an unsigned type of the element's
// width, or for 16-byte uint4 when every row is a multiple of 16 bytes (embedding
// rows of bf16 GPT-2: 768 x 2 bytes). Scatter-adds accumulate with atomicAdd,
// into the output for float32/float64 and into a float32 buffer for float16 /
// bfloat16 (then rounded once). An out-of-range index is recorded on the device
// (the lowest position) and reported after the kernel with the reference
// kernel's message; while the stream is being captured into a CUDA graph the
// check cannot read back, and such rows read as zeros / are dropped.
#include <climits>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"
#include "ir/ops/index_check.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

using ops::AxisSplit;
using ops::IndexRange;

const char* const kIndex = R"(
#define DS_FOR(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
                          i += (long long)gridDim.x * blockDim.x)
// The index in [0, extent), or -1 after recording `position` as a bad one.
__device__ __forceinline__ long long ds_index(I raw, long long extent, int allow_negative,
                                              long long position, unsigned long long* bad) {
  long long k = (long long)raw;
  if (k < 0 && allow_negative) k += extent;
  if (k < 0 || k >= extent) { atomicMin(bad, (unsigned long long)position); return -1; }
  return k;
}

// out[o, j, i] = x[o, idx[j], i]  (index_select, embedding)
extern "C" __global__ void ds_index_select(const V* __restrict__ x, const I* __restrict__ idx,
                                           V* __restrict__ out, long long outer, long long extent,
                                           long long m, long long inner, int allow_negative,
                                           unsigned long long* bad) {
  DS_FOR(t, outer * m * inner) {
    const long long i = t % inner, j = t / inner % m, o = t / (inner * m);
    const long long k = ds_index(idx[j], extent, allow_negative, j, bad);
    out[t] = k < 0 ? V() : x[(o * extent + k) * inner + i];
  }
}

// out[o, j, i] = x[o, idx[o, j, i], i]  (take_along_axis)
extern "C" __global__ void ds_take_along(const V* __restrict__ x, const I* __restrict__ idx,
                                         V* __restrict__ out, long long outer, long long extent,
                                         long long m, long long inner, int allow_negative,
                                         unsigned long long* bad) {
  DS_FOR(t, outer * m * inner) {
    const long long i = t % inner, o = t / (inner * m);
    const long long k = ds_index(idx[t], extent, allow_negative, t, bad);
    out[t] = k < 0 ? V() : x[(o * extent + k) * inner + i];
  }
}

)";

const char* const kScatter = R"(
#define DS_FOR(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
                          i += (long long)gridDim.x * blockDim.x)
__device__ __forceinline__ long long ds_index(I raw, long long extent, long long position,
                                              unsigned long long* bad) {
  long long k = (long long)raw;
  if (k < 0) k += extent;
  if (k < 0 || k >= extent) { atomicMin(bad, (unsigned long long)position); return -1; }
  return k;
}

// acc[o, idx[j], i] += upd[o, j, i]  (index_add; per_element: idx[o, j, i], scatter_add)
extern "C" __global__ void ds_scatter_add(const I* __restrict__ idx, const T* __restrict__ upd,
                                          S* __restrict__ acc, long long outer, long long m,
                                          long long inner, long long size, int per_element,
                                          unsigned long long* bad) {
  DS_FOR(t, outer * m * inner) {
    const long long i = t % inner, j = t / inner % m, o = t / (inner * m);
    const long long at = per_element ? t : j;
    const long long k = ds_index(idx[at], size, at, bad);
    if (k >= 0) atomicAdd(acc + (o * size + k) * inner + i, (S)ds_io<T>::load(upd[t]));
  }
}

extern "C" __global__ void ds_round_to(const float* __restrict__ acc, T* __restrict__ out,
                                       long long n) {
  DS_FOR(t, n) out[t] = ds_io<T>::store(acc[t]);
}

extern "C" __global__ void ds_one_hot(const I* __restrict__ idx, T* __restrict__ out, long long n,
                                      long long classes, unsigned long long* bad) {
  DS_FOR(t, n * classes) {
    const long long c = t % classes, j = t / classes;
    const long long k = (long long)idx[j];
    if (c == 0 && (k < 0 || k >= classes)) atomicMin(bad, (unsigned long long)j);
    out[t] = ds_io<T>::store(k == c ? 1.0f : 0.0f);
  }
}
)";

std::string index_type(DType t) { return t == DType::Int32 ? "int" : "long long"; }

bool index_dtype(DType t) { return t == DType::Int32 || t == DType::Int64; }

// Gathers move elements of type `vec`; indices of dtype `idx`.
std::string gather_source(const std::string& vec, DType idx) {
  return "typedef " + vec + " V;\ntypedef " + index_type(idx) + " I;\n" + kIndex;
}

// Scatter-adds and one_hot compute on dtype `data`, accumulate in `acc`.
std::string scatter_source(DType data, DType idx) {
  return "typedef " + device_type(data) + " T;\ntypedef " + index_type(idx) + " I;\ntypedef " +
         (data == DType::Float64 ? "double" : "float") + " S;\n" + kScatter;
}

// The unsigned type of an element's width, for byte moves.
std::string copy_type(size_t bytes) {
  switch (bytes) {
    case 1: return "unsigned char";
    case 2: return "unsigned short";
    case 4: return "unsigned int";
    case 8: return "unsigned long long";
    default: return "uint4";
  }
}

// The device word holding the lowest bad position (ULLONG_MAX: none).
struct BadIndex {
  std::shared_ptr<void> word;
  int device;
  explicit BadIndex(int dev) : word(allocate(sizeof(unsigned long long), dev)), device(dev) {
    set_device(dev);
    DS_CUDA_CHECK(cudaMemsetAsync(word.get(), 0xff, sizeof(unsigned long long), stream_of(dev)));
  }
  void* ptr() { return word.get(); }

  // The lowest bad position and the index found there; false when all were in range
  // (or the stream is being captured, when nothing can be read back).
  bool found(const Tensor& indices, int64_t* position, int64_t* value) {
    const cudaStream_t s = stream_of(device);
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    DS_CUDA_CHECK(cudaStreamIsCapturing(s, &capturing));
    if (capturing != cudaStreamCaptureStatusNone) return false;
    unsigned long long pos = 0;
    DS_CUDA_CHECK(cudaMemcpyAsync(&pos, word.get(), sizeof pos, cudaMemcpyDeviceToHost, s));
    DS_CUDA_CHECK(cudaStreamSynchronize(s));
    if (pos == ULLONG_MAX) return false;
    const size_t width = dtype_size(indices.dtype());
    int64_t v64 = 0;
    int32_t v32 = 0;
    DS_CUDA_CHECK(cudaMemcpy(width == 4 ? static_cast<void*>(&v32) : &v64,
                             static_cast<const char*>(indices.raw_data()) + pos * width, width,
                             cudaMemcpyDeviceToHost));
    *position = static_cast<int64_t>(pos);
    *value = width == 4 ? v32 : v64;
    return true;
  }

  // Throws the reference kernel's message for the first bad index, if any.
  void check(const KernelCall& kc, const Tensor& indices, int64_t extent, IndexRange range,
             int axis) {
    int64_t pos = 0, value = 0;
    if (found(indices, &pos, &value))
      ops::throw_bad_index(kc.ctx, value, pos, axis, extent, range);
  }
};

void launch_n(int dev, const std::string& src, const char* name, int64_t n, void** args,
              const KernelCall& kc) {
  if (n == 0) return;
  launch(dev, get_kernel(dev, src, name), grid_for(n, dev), 256, args, 0, kc.ctx.op.name.c_str());
}

// index_select / embedding / take_along_axis: x [outer, extent, inner] -> out [outer, m, inner].
void gather(const KernelCall& kc, const Tensor& x, const Tensor& idx, AxisSplit xs, int64_t m,
            IndexRange range, int axis, const char* kernel) {
  Tensor& out = kc.outputs[0];
  if (out.numel() == 0) return;
  const int dev = call_device(kc);
  const size_t elem = dtype_size(x.dtype());
  // 16-byte moves when rows are whole uint4s (take_along_axis indexes single elements).
  const bool wide = std::string(kernel) == "ds_index_select" && (xs.inner * elem) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(x.raw_data()) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(out.raw_data()) % 16 == 0;
  long long inner = wide ? xs.inner * static_cast<int64_t>(elem) / 16 : xs.inner;
  long long outer = xs.outer, extent = xs.extent, mm = m;
  int neg = range == IndexRange::AllowNegative ? 1 : 0;
  BadIndex bad(dev);
  const void* xp = x.raw_data();
  const void* ip = idx.raw_data();
  void* op = out.raw_data();
  void* bp = bad.ptr();
  void* args[] = {&xp, &ip, &op, &outer, &extent, &mm, &inner, &neg, &bp};
  const std::string vec = wide ? "uint4" : copy_type(elem);
  launch_n(dev, gather_source(vec, idx.dtype()), kernel, outer * mm * inner, args, kc);
  bad.check(kc, idx, extent, range, axis);
}

// index_add / scatter_add_along_axis: upd [outer, m, inner] into out [outer, size, inner].
void scatter_add(const KernelCall& kc, bool per_element) {
  const Tensor &idx = kc.inputs[0], &upd = kc.inputs[1];
  Tensor& out = kc.outputs[0];
  if (out.numel() == 0) return;
  const int dev = call_device(kc);
  const int axis = normalize_axis(kc.ctx.i("axis"), upd.ndim(), kc.ctx.where());
  const AxisSplit us = ops::split_at(upd.shape(), axis);
  long long outer = us.outer, m = us.extent, inner = us.inner, size = kc.ctx.i("size");
  const DType t = out.dtype();
  const bool direct = t == DType::Float32 || t == DType::Float64;
  const std::string src = scatter_source(t, idx.dtype());
  std::shared_ptr<void> scratch;
  void* acc = out.raw_data();
  if (!direct) {
    scratch = allocate(static_cast<size_t>(out.numel()) * sizeof(float), dev);
    acc = scratch.get();
  }
  set_device(dev);
  DS_CUDA_CHECK(cudaMemsetAsync(acc, 0, static_cast<size_t>(out.numel()) *
                                            (direct ? dtype_size(t) : sizeof(float)),
                                stream_of(dev)));
  BadIndex bad(dev);
  const void* ip = idx.raw_data();
  const void* up = upd.raw_data();
  void* bp = bad.ptr();
  int pe = per_element ? 1 : 0;
  void* args[] = {&ip, &up, &acc, &outer, &m, &inner, &size, &pe, &bp};
  launch_n(dev, src, "ds_scatter_add", outer * m * inner, args, kc);
  if (!direct) {
    const void* ap = acc;
    void* op = out.raw_data();
    long long n = out.numel();
    void* round_args[] = {&ap, &op, &n};
    launch_n(dev, src, "ds_round_to", n, round_args, kc);
  }
  bad.check(kc, idx, size, IndexRange::AllowNegative, axis);
}

void one_hot(const KernelCall& kc) {
  const Tensor& idx = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  if (out.numel() == 0) return;
  const int dev = call_device(kc);
  long long n = idx.numel(), classes = kc.ctx.i("num_classes");
  BadIndex bad(dev);
  const void* ip = idx.raw_data();
  void* op = out.raw_data();
  void* bp = bad.ptr();
  void* args[] = {&ip, &op, &n, &classes, &bp};
  launch_n(dev, scatter_source(out.dtype(), idx.dtype()), "ds_one_hot", n * classes, args, kc);
  int64_t pos = 0, value = 0;
  if (bad.found(idx, &pos, &value))
    throw ValueError(detail::cat(kc.ctx.where(), "index ", value, " at position ", pos,
                                 " is out of range for num_classes ", classes));
}

// Indices int32/int64; data of any dtype for gathers, float for the rest.
bool gather_ok(const OpContext& c, size_t idx_at) { return index_dtype(c.inputs[idx_at].dtype); }
bool scatter_ok(const OpContext& c) {
  return index_dtype(c.inputs[0].dtype) && nvrtc_float(c.inputs[1].dtype);
}

const OpRegistrar reg([] {
  register_kernel("embedding", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     const Tensor &idx = kc.inputs[0], &w = kc.inputs[1];
                     AxisSplit ws = ops::split_at(w.shape(), 0);
                     gather(kc, w, idx, ws, idx.numel(), IndexRange::NonNegative, 0,
                            "ds_index_select");
                   },
                   [](const OpContext& c) { return gather_ok(c, 0); }, "nvrtc", 10});
  register_kernel("index_select", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     const Tensor &x = kc.inputs[0], &idx = kc.inputs[1];
                     const int axis = normalize_axis(kc.ctx.i("axis"), x.ndim(), kc.ctx.where());
                     gather(kc, x, idx, ops::split_at(x.shape(), axis), idx.numel(),
                            IndexRange::AllowNegative, axis, "ds_index_select");
                   },
                   [](const OpContext& c) { return gather_ok(c, 1); }, "nvrtc", 10});
  register_kernel("take_along_axis", DeviceKind::CUDA,
                  {[](const KernelCall& kc) {
                     const Tensor &x = kc.inputs[0], &idx = kc.inputs[1];
                     const int axis = normalize_axis(kc.ctx.i("axis"), x.ndim(), kc.ctx.where());
                     AxisSplit xs = ops::split_at(x.shape(), axis);
                     const AxisSplit os = ops::split_at(kc.outputs[0].shape(), axis);
                     DS_CHECK(os.inner == xs.inner && os.outer == xs.outer, ShapeError,
                              kc.ctx.where(), "indices ", shape_str(idx.shape()),
                              " must match the input ", shape_str(x.shape()),
                              " on every axis except ", axis);
                     gather(kc, x, idx, xs, os.extent, IndexRange::AllowNegative, axis,
                            "ds_take_along");
                   },
                   [](const OpContext& c) { return gather_ok(c, 1); }, "nvrtc", 10});
  register_kernel("index_add", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { scatter_add(kc, false); }, scatter_ok, "nvrtc", 10});
  register_kernel("scatter_add_along_axis", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { scatter_add(kc, true); }, scatter_ok, "nvrtc", 10});
  register_kernel("one_hot", DeviceKind::CUDA,
                  {one_hot,
                   [](const OpContext& c) {
                     return index_dtype(c.inputs[0].dtype) && nvrtc_float(c.dtype("dtype"));
                   },
                   "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
