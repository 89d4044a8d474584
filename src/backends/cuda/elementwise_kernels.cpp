// Unary and binary elementwise ops as NVRTC kernels, one program per (op,
// dtypes). Contiguous same-shape operands with 16-byte aligned pointers take
// the vectorized path (one 16-byte load/store per operand and step); broadcasts
// index through per-operand strides (0 on broadcast axes).
#include <algorithm>
#include <cstddef>
#include <map>

#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;

// Device expressions over the accumulator x (unary) or a, b (binary): float,
// or double for float64.
const std::map<std::string, std::string>& unary_exprs() {
  static const std::map<std::string, std::string> m = {
      {"neg", "-x"},
      {"abs", "fabs(x)"},
      {"exp", "exp(x)"},
      {"log", "log(x)"},
      {"log1p", "log1p(x)"},
      {"expm1", "expm1(x)"},
      {"sqrt", "sqrt(x)"},
      {"rsqrt", "A(1) / sqrt(x)"},
      {"sin", "sin(x)"},
      {"cos", "cos(x)"},
      {"tanh", "tanh(x)"},
      {"erf", "erf(x)"},
      {"sigmoid", "A(1) / (A(1) + exp(-x))"},
      {"silu", "x / (A(1) + exp(-x))"},
      {"relu", "(x > A(0) || x != x) ? x : A(0)"},
      {"floor", "floor(x)"},
      {"ceil", "ceil(x)"},
      {"round", "rint(x)"},
      {"reciprocal", "A(1) / x"},
      {"square", "x * x"},
  };
  return m;
}

std::string gelu_expr(const std::string& approximate) {
  return approximate == "tanh"
             ? "A(0.5) * x * (A(1) + tanh(A(0.7978845608028654) * (x + A(0.044715) * x * x * x)))"
             : "A(0.5) * x * (A(1) + erf(x * A(0.7071067811865476)))";
}

struct BinaryExpr {
  std::string expr;
  bool compare;  // bool output
};
const std::map<std::string, BinaryExpr>& binary_exprs() {
  static const std::map<std::string, BinaryExpr> m = {
      {"add", {"a + b", false}},
      {"sub", {"a - b", false}},
      {"mul", {"a * b", false}},
      {"div", {"a / b", false}},
      {"pow", {"pow(a, b)", false}},
      // NaN in either operand gives NaN (a + b carries it), as the CPU kernels.
      {"maximum", {"(a != a || b != b) ? a + b : (a > b ? a : b)", false}},
      {"minimum", {"(a != a || b != b) ? a + b : (a < b ? a : b)", false}},
      {"eq", {"a == b", true}},
      {"ne", {"a != b", true}},
      {"lt", {"a < b", true}},
      {"le", {"a <= b", true}},
      {"gt", {"a > b", true}},
      {"ge", {"a >= b", true}},
  };
  return m;
}

// Integer operands compute in their own type (the prelude's default accumulator
// is float, which would round int64 values past 2^24).
const char* const kIntegerIo = R"(
template <> struct ds_io<int> {
  typedef int acc;
  static __device__ __forceinline__ int load(int v) { return v; }
  static __device__ __forceinline__ int store(int v) { return v; }
};
template <> struct ds_io<long long> {
  typedef long long acc;
  static __device__ __forceinline__ long long load(long long v) { return v; }
  static __device__ __forceinline__ long long store(long long v) { return v; }
};
)";

std::string io_type(DType t) {
  if (t == DType::Int32) return "int";
  if (t == DType::Int64) return "long long";
  return device_type(t);
}

bool integer(DType t) { return t == DType::Int32 || t == DType::Int64; }

std::string out_store(DType out) {
  return out == DType::Bool ? "static_cast<unsigned char>(ds_op(X) ? 1 : 0)" : "ds_io<O>::store(ds_op(X))";
}

// The program: typedefs, ds_op, a scalar kernel over a range, a vectorized one
// (same-size input and output types), and a strided one for broadcasts.
std::string program(const std::string& op_decl, int arity, DType in, DType out) {
  const std::string args = arity == 1 ? "ds_io<T>::load(x[i])" : "ds_io<T>::load(x[i]), ds_io<T>::load(y[i])";
  std::string store = out_store(out);
  auto with = [&](const std::string& a) {
    std::string s = store;
    s.replace(s.find('X'), 1, a);
    return s;
  };
  std::string src = std::string(kIntegerIo) + "typedef " + io_type(in) + " T;\ntypedef " + io_type(out) +
                    " O;\ntypedef ds_io<T>::acc A;\n" + op_decl;
  src += R"(struct ds_strides { int ndim; long long size[8]; long long sx[8]; long long sy[8]; };
extern "C" __global__ void ds_scalar(const T* __restrict__ x, const T* __restrict__ y, O* __restrict__ o, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    o[i] = )" + with(args) + R"(;
}
__device__ __forceinline__ uint4 ds_vec_op(uint4 xr, uint4 yr) {
  const int L = 16 / sizeof(T);
  uint4 orr;
  const T* x = reinterpret_cast<const T*>(&xr);
  const T* y = reinterpret_cast<const T*>(&yr);
  O* o = reinterpret_cast<O*>(&orr);
  (void)y;
#pragma unroll
  for (int i = 0; i < L; ++i) o[i] = )" + with(args) + R"(;
  return orr;
}
// Four independent 16-byte loads in flight per thread before the first use.
extern "C" __global__ void ds_vector(const T* __restrict__ xv, const T* __restrict__ yv, O* __restrict__ ov, long long nvec) {
  const uint4* X = reinterpret_cast<const uint4*>(xv);
  const uint4* Y = reinterpret_cast<const uint4*>()" + std::string(arity == 2 ? "yv" : "xv") + R"();
  uint4* Z = reinterpret_cast<uint4*>(ov);
  (void)Y;
  const long long stride = (long long)gridDim.x * blockDim.x;
  long long v = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (; v + 3 * stride < nvec; v += 4 * stride) {
    uint4 xr[4], yr[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      xr[u] = X[v + u * stride];
      )" + std::string(arity == 2 ? "yr[u] = Y[v + u * stride];" : "yr[u] = xr[u];") + R"(
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) Z[v + u * stride] = ds_vec_op(xr[u], yr[u]);
  }
  for (; v < nvec; v += stride) Z[v] = ds_vec_op(X[v], )" + std::string(arity == 2 ? "Y[v]" : "X[v]") + R"();
}
// y repeats along the leading dims (a bias over the last ones): y's vector v % yvec.
extern "C" __global__ void ds_vector_rows(const T* __restrict__ xv, const T* __restrict__ yv, O* __restrict__ ov, long long nvec, long long yvec) {
  const uint4* X = reinterpret_cast<const uint4*>(xv);
  const uint4* Y = reinterpret_cast<const uint4*>(yv);
  uint4* Z = reinterpret_cast<uint4*>(ov);
  for (long long v = blockIdx.x * (long long)blockDim.x + threadIdx.x; v < nvec; v += (long long)gridDim.x * blockDim.x)
    Z[v] = ds_vec_op(X[v], Y[v % yvec]);
}
extern "C" __global__ void ds_strided(const T* __restrict__ xs, const T* __restrict__ ys, O* __restrict__ o, long long n, ds_strides s) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long rest = i, ox = 0, oy = 0;
    for (int d = s.ndim - 1; d >= 0; --d) {
      const long long c = rest % s.size[d];
      rest /= s.size[d];
      ox += c * s.sx[d];
      oy += c * s.sy[d];
    }
    const T* x = xs + ox;
    const T* y = ys + oy;
    (void)y;
    const long long k = 0;
    o[i] = )" + with(arity == 1 ? "ds_io<T>::load(x[k])" : "ds_io<T>::load(x[k]), ds_io<T>::load(y[k])") + R"(;
  }
}
)";
  return src;
}

struct Strides {
  int ndim;
  long long size[kMaxDims];
  long long sx[kMaxDims];
  long long sy[kMaxDims];
};

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// `in` equals the trailing dims of `out` (leading 1s aside): it repeats along the rest.
bool repeats_along_leading_dims(const Shape& in, const Shape& out) {
  size_t first = 0;
  while (first < in.size() && in[first] == 1) ++first;
  const size_t k = in.size() - first;
  if (k == 0 || k > out.size()) return false;
  return std::equal(in.begin() + static_cast<std::ptrdiff_t>(first), in.end(),
                    out.end() - static_cast<std::ptrdiff_t>(k));
}

// Runs the program over contiguous x (and y) into out.
void run(const KernelCall& kc, const std::string& src) {
  const int dev = call_device(kc);
  const Tensor& x = kc.inputs[0];
  const Tensor& y = kc.inputs.size() > 1 ? kc.inputs[1] : kc.inputs[0];
  Tensor& out = kc.outputs[0];
  const long long n = out.numel();
  if (n == 0) return;
  const void* xp = x.raw_data();
  const void* yp = y.raw_data();
  void* op = out.raw_data();
  const bool same_shapes = x.shape() == out.shape() && y.shape() == out.shape();
  const size_t esize = dtype_size(x.dtype());
  const bool vectors = esize == dtype_size(out.dtype()) && aligned16(xp) && aligned16(yp) && aligned16(op);
  const long long lanes = static_cast<long long>(16 / esize);
  if (!same_shapes && vectors && kc.inputs.size() > 1 && x.shape() == out.shape() &&
      y.numel() % lanes == 0 && repeats_along_leading_dims(y.shape(), out.shape())) {
    long long nvec = n / lanes, yvec = y.numel() / lanes;
    void* args[] = {&xp, &yp, &op, &nvec, &yvec};
    launch(dev, get_kernel(dev, src, "ds_vector_rows"), grid_for(nvec, dev), 256, args, 0,
           kc.ctx.op.name.c_str());
    return;
  }
  if (!same_shapes) {
    DS_CHECK(out.ndim() <= kMaxDims, ShapeError, kc.ctx.where(), "CUDA broadcast supports at most ",
             kMaxDims, " dims, got ", out.ndim());
    Strides s{};
    s.ndim = out.ndim();
    for (int d = 0; d < out.ndim(); ++d) s.size[d] = out.shape()[d];
    const Shape sx = broadcast_strides(x.shape(), out.shape());
    const Shape sy = broadcast_strides(y.shape(), out.shape());
    std::copy(sx.begin(), sx.end(), s.sx);
    std::copy(sy.begin(), sy.end(), s.sy);
    void* args[] = {&xp, &yp, &op, const_cast<long long*>(&n), &s};
    launch(dev, get_kernel(dev, src, "ds_strided"), grid_for(n, dev), 256, args, 0, kc.ctx.op.name.c_str());
    return;
  }
  long long done = 0;
  if (vectors) {
    const long long nvec = n / lanes;
    if (nvec > 0) {
      void* args[] = {&xp, &yp, &op, const_cast<long long*>(&nvec)};
      launch(dev, get_kernel(dev, src, "ds_vector"), grid_for(nvec, dev), 256, args, 0,
             kc.ctx.op.name.c_str());
      done = nvec * lanes;
    }
  }
  if (done < n) {  // the tail (or everything, when not aligned)
    const void* xt = static_cast<const char*>(xp) + done * esize;
    const void* yt = static_cast<const char*>(yp) + done * esize;
    void* ot = static_cast<char*>(op) + done * dtype_size(out.dtype());
    long long rest = n - done;
    void* args[] = {&xt, &yt, &ot, &rest};
    launch(dev, get_kernel(dev, src, "ds_scalar"), grid_for(rest, dev), 256, args, 0,
           kc.ctx.op.name.c_str());
  }
}

std::string unary_expr(const KernelCall& kc) {
  const std::string& name = kc.ctx.op.name;
  if (name == "gelu") return gelu_expr(kc.ctx.s("approximate"));
  return unary_exprs().at(name);
}

bool unary_supported(const OpContext& c) {
  // Same float dtype in and out (the ops whose result type is the input's).
  return nvrtc_float(c.inputs[0].dtype);
}

bool binary_supported(const OpContext& c) {
  const DType t = c.inputs[0].dtype;
  // Integers: exact arithmetic and comparisons (division and pow keep the CPU's rules there).
  const bool int_ok = integer(t) && c.op.name != "div" && c.op.name != "pow";
  return c.inputs[1].dtype == t && (nvrtc_float(t) || int_ok) &&
         std::max(c.inputs[0].shape.size(), c.inputs[1].shape.size()) <= kMaxDims;
}

const OpRegistrar reg([] {
  std::vector<std::string> unary;
  for (const auto& [name, _] : unary_exprs()) unary.push_back(name);
  unary.push_back("gelu");
  for (const std::string& name : unary) {
    register_kernel(name, DeviceKind::CUDA,
                    {[](const KernelCall& kc) {
                       const std::string decl = "__device__ __forceinline__ A ds_op(A x) { return " +
                                                unary_expr(kc) + "; }\n";
                       run(kc, program(decl, 1, kc.inputs[0].dtype(), kc.outputs[0].dtype()));
                     },
                     unary_supported, "nvrtc", 10});
  }
  for (const auto& [name, b] : binary_exprs()) {
    const std::string ret = b.compare ? "bool" : "A";
    const std::string decl = "__device__ __forceinline__ " + ret + " ds_op(A a, A b) { return " +
                             b.expr + "; }\n";
    register_kernel(name, DeviceKind::CUDA,
                    {[decl](const KernelCall& kc) {
                       run(kc, program(decl, 2, kc.inputs[0].dtype(), kc.outputs[0].dtype()));
                     },
                     binary_supported, "nvrtc", 10});
  }
});

}  // namespace
}  // namespace ds::cuda
