// Row kernels: sum/mean/max over trailing axes, softmax/log_softmax over the last
// axis, layer_norm/rms_norm over the normalized trailing shape.
//
// Rows up to kMaxResident elements take a kernel compiled for that row length: the
// row is read once, in 16-byte vectors, into registers (at most 32 values a
// thread), reduced by a warp (short rows, several rows a block) or a block, and
// written once, so softmax and the norms move the fewest bytes: one read, one
// write. Longer rows take the generic kernels below them: one block per row,
// threads striding over it, which read the row two or three times.
#include <cstdint>

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

constexpr unsigned kThreads = 256;

std::string header(DType in, DType out) {
  return "typedef " + device_type(in) + " T;\ntypedef " + device_type(out) +
         " O;\ntypedef ds_io<T>::acc A;\ntypedef ds_io<O> OUT;\n"
         "struct ds_add { __device__ A operator()(A a, A b) const { return a + b; } };\n"
         "struct ds_max { __device__ A operator()(A a, A b) const {"
         " return (a != a || b != b) ? a + b : (a > b ? a : b); } };\n";
}

const char* const kReduce = R"(
extern "C" __global__ void ds_reduce(const T* __restrict__ x, O* __restrict__ o, long long len, int kind) {
  const T* row = x + blockIdx.x * len;
  const bool maxing = kind == 2 || kind == 3;
  A acc = maxing ? A(-DS_INF) : A(0);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) {
    const A v = ds_io<T>::load(row[j]);
    acc = maxing ? ds_max()(acc, v) : acc + v;
  }
  acc = maxing ? ds_block_reduce(acc, ds_max(), A(-DS_INF)) : ds_block_reduce(acc, ds_add(), A(0));
  if (kind == 1) acc = acc / A(len);
  if (kind == 3) {  // logsumexp: the max (acc), then the sum of exp(x - max) in a second pass
    const A m = acc;
    A e = A(0);
    for (long long j = threadIdx.x; j < len; j += blockDim.x) e += exp(ds_io<T>::load(row[j]) - m);
    e = ds_block_reduce(e, ds_add(), A(0));
    acc = (m != m || isinf(m)) ? m : m + log(e);
  }
  if (threadIdx.x == 0) o[blockIdx.x] = OUT::store(acc);
}
)";

const char* const kSoftmax = R"(
extern "C" __global__ void ds_softmax(const T* __restrict__ x, O* __restrict__ o, long long len, int log_form) {
  const T* row = x + blockIdx.x * len;
  O* out = o + blockIdx.x * len;
  A m = A(-DS_INF);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) m = ds_max()(m, ds_io<T>::load(row[j]));
  m = ds_block_reduce(m, ds_max(), A(-DS_INF));
  A s = A(0);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) s += exp(ds_io<T>::load(row[j]) - m);
  s = ds_block_reduce(s, ds_add(), A(0));
  const A log_s = log(s);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) {
    const A z = ds_io<T>::load(row[j]) - m;
    out[j] = OUT::store(log_form ? z - log_s : exp(z) / s);
  }
}
)";

// centered: layer_norm (x - mean); otherwise rms_norm. w/b may be null.
const char* const kNorm = R"(
extern "C" __global__ void ds_norm(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                   O* __restrict__ o, long long len, double eps, int centered) {
  const T* row = x + blockIdx.x * len;
  O* out = o + blockIdx.x * len;
  A mean = A(0);
  if (centered) {
    for (long long j = threadIdx.x; j < len; j += blockDim.x) mean += ds_io<T>::load(row[j]);
    mean = ds_block_reduce(mean, ds_add(), A(0)) / A(len);
  }
  A ss = A(0);
  for (long long j = threadIdx.x; j < len; j += blockDim.x) {
    const A d = ds_io<T>::load(row[j]) - mean;
    ss += d * d;
  }
  ss = ds_block_reduce(ss, ds_add(), A(0));
  const A rstd = A(1) / sqrt(ss / A(len) + A(eps));
  for (long long j = threadIdx.x; j < len; j += blockDim.x) {
    A v = (ds_io<T>::load(row[j]) - mean) * rstd;
    if (w) v = v * ds_io<T>::load(w[j]);
    if (b) v = v + ds_io<T>::load(b[j]);
    out[j] = OUT::store(v);
  }
}
)";

// LEN (row length), TPR (threads per row: 32, or the whole block), RPB (rows per
// block), V (elements per vector access), NV (vectors per thread) and BLOCK are
// defined before this source; OP selects the row operation.
const char* const kResident = R"(
typedef struct __align__(V * sizeof(T)) { T e[V]; } VT;
typedef struct __align__(V * sizeof(O)) { O e[V]; } VO;
enum { SUM = 0, MEAN = 1, MAX = 2, SOFTMAX = 3, LOG_SOFTMAX = 4, LAYER_NORM = 5, RMS_NORM = 6, LOGSUMEXP = 7 };
template <typename Op> __device__ __forceinline__ A row_reduce(A v, Op op, A identity) {
#if TPR == 32
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
#else
  return ds_block_reduce(v, op, identity);
#endif
}
__device__ __forceinline__ void load_row(const T* __restrict__ p, int t, A (&v)[NV][V], A fill) {
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int j = (i * TPR + t) * V;
    if (j < LEN) {
      const VT q = *reinterpret_cast<const VT*>(p + j);
#pragma unroll
      for (int k = 0; k < V; ++k) v[i][k] = ds_io<T>::load(q.e[k]);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) v[i][k] = fill;
    }
  }
}
extern "C" __global__ void __launch_bounds__(BLOCK) ds_row(const T* __restrict__ x, const T* __restrict__ w,
    const T* __restrict__ b, O* __restrict__ o, long long rows, double eps) {
  const long long row = (long long)blockIdx.x * RPB + threadIdx.x / TPR;
  const int t = threadIdx.x % TPR;
  if (row >= rows) return;  // only when RPB > 1: rows are then reduced within one warp
  A v[NV][V];
  const A fill = OP == MAX || OP == SOFTMAX || OP == LOG_SOFTMAX || OP == LOGSUMEXP ? A(-DS_INF) : A(0);
  load_row(x + row * LEN, t, v, fill);
  if (OP == SUM || OP == MEAN || OP == MAX) {
    A acc = fill;
#pragma unroll
    for (int i = 0; i < NV; ++i)
#pragma unroll
      for (int k = 0; k < V; ++k) acc = OP == MAX ? ds_max()(acc, v[i][k]) : acc + v[i][k];
    acc = OP == MAX ? row_reduce(acc, ds_max(), fill) : row_reduce(acc, ds_add(), fill);
    if (OP == MEAN) acc = acc / A(LEN);
    if (t == 0) o[row] = OUT::store(acc);
    return;
  }
  A shift = A(0), scale = A(1);
  if (OP == SOFTMAX || OP == LOG_SOFTMAX || OP == LOGSUMEXP) {
    A m = fill;
#pragma unroll
    for (int i = 0; i < NV; ++i)
#pragma unroll
      for (int k = 0; k < V; ++k) m = ds_max()(m, v[i][k]);
    m = row_reduce(m, ds_max(), fill);
    A s = A(0);
#pragma unroll
    for (int i = 0; i < NV; ++i)
#pragma unroll
      for (int k = 0; k < V; ++k) {
        v[i][k] = v[i][k] - m;
        if ((i * TPR + t) * V < LEN) s += exp(v[i][k]);
      }
    s = row_reduce(s, ds_add(), A(0));
    if (OP == LOGSUMEXP) {
      if (t == 0) o[row] = OUT::store((m != m || isinf(m)) ? m : m + log(s));
      return;
    }
    if (OP == SOFTMAX) scale = A(1) / s; else shift = -log(s);
  } else {
    A mean = A(0);
    if (OP == LAYER_NORM) {
#pragma unroll
      for (int i = 0; i < NV; ++i)
#pragma unroll
        for (int k = 0; k < V; ++k) mean += v[i][k];
      mean = row_reduce(mean, ds_add(), A(0)) / A(LEN);
    }
    A ss = A(0);
#pragma unroll
    for (int i = 0; i < NV; ++i)
#pragma unroll
      for (int k = 0; k < V; ++k) {
        v[i][k] = v[i][k] - mean;
        if ((i * TPR + t) * V < LEN) ss += v[i][k] * v[i][k];
      }
    scale = A(1) / sqrt(row_reduce(ss, ds_add(), A(0)) / A(LEN) + A(eps));
  }
  O* out = o + row * LEN;
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const int j = (i * TPR + t) * V;
    if (j >= LEN) continue;
    A wv[V], bv[V];
#pragma unroll
    for (int k = 0; k < V; ++k) { wv[k] = A(1); bv[k] = A(0); }
    if (OP == LAYER_NORM || OP == RMS_NORM) {
      if (w) { const VT q = *reinterpret_cast<const VT*>(w + j);
#pragma unroll
               for (int k = 0; k < V; ++k) wv[k] = ds_io<T>::load(q.e[k]); }
      if (b) { const VT q = *reinterpret_cast<const VT*>(b + j);
#pragma unroll
               for (int k = 0; k < V; ++k) bv[k] = ds_io<T>::load(q.e[k]); }
    }
    VO r;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const A z = v[i][k];
      const A y = OP == SOFTMAX ? exp(z) * scale : OP == LOG_SOFTMAX ? z + shift : z * scale * wv[k] + bv[k];
      r.e[k] = OUT::store(y);
    }
    *reinterpret_cast<VO*>(out + j) = r;
  }
}
)";

enum class RowOp {
  Sum = 0, Mean = 1, Max = 2, Softmax = 3, LogSoftmax = 4, LayerNorm = 5, RmsNorm = 6, LogSumExp = 7
};
constexpr int64_t kMaxResident = 32 * 1024;  // 1024 threads x 32 values

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Launches the register-resident kernel when the row fits; false: take the generic one.
bool launch_resident(const KernelCall& kc, RowOp op, const Tensor& x, Tensor& out, int64_t len,
                     const void* w, const void* b, double eps) {
  if (len <= 0 || len > kMaxResident || x.dtype() != out.dtype()) return false;
  const int64_t rows = x.numel() / len;
  const int size = static_cast<int>(dtype_size(x.dtype()));
  const bool reduce = op == RowOp::Sum || op == RowOp::Mean || op == RowOp::Max || op == RowOp::LogSumExp;
  // 16-byte vectors when every row starts 16-byte aligned; else one element a time.
  int vec = 16 / size;
  if (len % vec != 0 || !aligned16(x.raw_data()) || (!reduce && !aligned16(out.raw_data())) ||
      !aligned16(w) || !aligned16(b))
    vec = 1;
  int tpr = 32;
  while (tpr < 1024 && (len + int64_t{tpr} * vec - 1) / (int64_t{tpr} * vec) * vec > 32) tpr *= 2;
  if (tpr == 64) tpr = 128;  // threads per row: one warp, or a whole block of >= 4 warps
  const int64_t nv = (len + int64_t{tpr} * vec - 1) / (int64_t{tpr} * vec);
  if (nv * vec > 32) return false;
  const int rpb = tpr == 32 ? 4 : 1;
  const int block = tpr * rpb;
  const std::string defs = detail::cat("#define LEN ", len, "\n#define TPR ", tpr, "\n#define RPB ", rpb,
                                       "\n#define V ", vec, "\n#define NV ", nv, "\n#define BLOCK ",
                                       block, "\n#define OP ", static_cast<int>(op), "\n");
  const int dev = call_device(kc);
  const int64_t blocks = (rows + rpb - 1) / rpb;
  DS_CHECK(blocks <= 0x7fffffff, ShapeError, kc.ctx.where(), rows, " rows exceed the CUDA grid");
  if (blocks == 0) return true;
  const void* xp = x.raw_data();
  void* yp = out.raw_data();
  long long n_rows = rows;
  void* args[] = {&xp, &w, &b, &yp, &n_rows, &eps};
  launch(dev, get_kernel(dev, header(x.dtype(), out.dtype()) + defs + kResident, "ds_row"),
         dim3(static_cast<unsigned>(blocks)), block, args, 0, kc.ctx.op.name.c_str());
  return true;
}

bool float_io(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  return nvrtc_float(c.inputs[0].dtype);
}

// The reduced axes are a trailing run of the input's dims: rows of a contiguous tensor.
bool trailing_reduction(const OpContext& c) {
  if (!float_io(c)) return false;
  const int rank = static_cast<int>(c.inputs[0].shape.size());
  const auto axes = ops::norm_axes(c.ints("axes"), rank, c.where());
  for (size_t i = 0; i < axes.size(); ++i)
    if (axes[i] != rank - static_cast<int>(axes.size()) + static_cast<int>(i)) return false;
  return true;
}

void launch_rows(const KernelCall& kc, const std::string& src, const char* kernel, int64_t rows,
                 void** args) {
  const int dev = call_device(kc);
  DS_CHECK(rows <= 0x7fffffff, ShapeError, kc.ctx.where(), rows, " rows exceed the CUDA grid");
  if (rows == 0) return;
  launch(dev, get_kernel(dev, src, kernel), dim3(static_cast<unsigned>(rows)), kThreads, args, 0,
         kc.ctx.op.name.c_str());
}

void reduce_kernel(const KernelCall& kc, int kind) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  const int64_t rows = out.numel();
  long long len = rows == 0 ? 0 : x.numel() / rows;  // 0: sum 0, mean NaN
  const RowOp row_op = kind == 3 ? RowOp::LogSumExp : static_cast<RowOp>(kind);
  if (len > 0 && launch_resident(kc, row_op, x, out, len, nullptr, nullptr, 0)) return;
  const void* xp = x.raw_data();
  void* op = out.raw_data();
  void* args[] = {&xp, &op, &len, &kind};
  launch_rows(kc, header(x.dtype(), out.dtype()) + kReduce, "ds_reduce", rows, args);
}

void softmax_kernel(const KernelCall& kc, int log_form) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  if (x.numel() == 0) return;
  long long len = x.shape().back();
  const RowOp row_op = log_form ? RowOp::LogSoftmax : RowOp::Softmax;
  if (launch_resident(kc, row_op, x, out, len, nullptr, nullptr, 0)) return;
  const void* xp = x.raw_data();
  void* op = out.raw_data();
  void* args[] = {&xp, &op, &len, &log_form};
  launch_rows(kc, header(x.dtype(), out.dtype()) + kSoftmax, "ds_softmax", x.numel() / len, args);
}

bool last_axis_softmax(const OpContext& c) {
  const int rank = static_cast<int>(c.inputs[0].shape.size());
  return float_io(c) && rank > 0 && (c.i("axis") == -1 || c.i("axis") == rank - 1);
}

void norm_kernel(const KernelCall& kc, int centered) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  long long len = numel(kc.ctx.ints("normalized_shape"));
  if (x.numel() == 0 || len == 0) return;
  const void* xp = x.raw_data();
  const void* wp = kc.inputs.size() > 1 ? kc.inputs[1].raw_data() : nullptr;
  const void* bp = kc.inputs.size() > 2 ? kc.inputs[2].raw_data() : nullptr;
  void* op = out.raw_data();
  double eps = kc.ctx.f("eps");
  if (launch_resident(kc, centered ? RowOp::LayerNorm : RowOp::RmsNorm, x, out, len, wp, bp, eps))
    return;
  void* args[] = {&xp, &wp, &bp, &op, &len, &eps, &centered};
  launch_rows(kc, header(x.dtype(), out.dtype()) + kNorm, "ds_norm", x.numel() / len, args);
}

const OpRegistrar reg([] {
  const char* names[] = {"sum", "mean", "max", "logsumexp"};
  for (int kind = 0; kind < 4; ++kind)
    register_kernel(names[kind], DeviceKind::CUDA,
                    {[kind](const KernelCall& kc) { reduce_kernel(kc, kind); }, trailing_reduction,
                     "nvrtc", 10});
  register_kernel("softmax", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { softmax_kernel(kc, 0); }, last_axis_softmax, "nvrtc", 10});
  register_kernel("log_softmax", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { softmax_kernel(kc, 1); }, last_axis_softmax, "nvrtc", 10});
  register_kernel("layer_norm", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { norm_kernel(kc, 1); }, float_io, "nvrtc", 10});
  register_kernel("rms_norm", DeviceKind::CUDA,
                  {[](const KernelCall& kc) { norm_kernel(kc, 0); }, float_io, "nvrtc", 10});
});

}  // namespace
}  // namespace ds::cuda
