#include "codegen/cuda/emit_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "codegen/cuda/emit_cuda_parts.h"
#include "ds/error.h"
#include "ds/op.h"

namespace ds::codegen::cuda {
namespace detail {

bool is_float(DType t) {
  return t == DType::Float32 || t == DType::Float64;
}

std::string reg_type(DType t) {
  switch (t) {
    case DType::Float32:
    case DType::Float16:
    case DType::BFloat16: return "float";
    case DType::Float64: return "double";
    case DType::Bool: return "bool";
    default: throw Error("kernel IR: no CUDA type for " + std::string(dtype_name(t)));
  }
}
std::string mem_type(DType t) {
  switch (t) {
    case DType::Bool: return "unsigned char";
    case DType::Float16: return "ds_half";
    case DType::BFloat16: return "ds_bf16";
    default: return reg_type(t);
  }
}
int mem_size(DType t) {
  return static_cast<int>(dtype_size(t));
}

// A literal of float type `t` holding `v` rounded once to `t`.
std::string lit(double v, DType t) {
  const std::string ty = reg_type(t);
  if (std::isnan(v)) return "ds_nan<" + ty + ">()";
  if (std::isinf(v)) return std::string(v < 0 ? "(-" : "(") + ty + ")(DS_INF)";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return ty + "(" + s + ")";
}

// `v` of register type `from` as a `to` value. To float16/bfloat16 it rounds
// once from float (a float64 goes through float first, as the CPU's Half and
// BFloat16 convert).
std::string convert(const std::string& v, DType from, DType to) {
  if (from == to) return v;
  if (to == DType::Bool) return "(" + v + " != " + lit(0, from) + ")";  // NaN is true
  if (to == DType::BFloat16) return "ds_round_bf16((float)(" + v + "))";
  if (to == DType::Float16) return "ds_round_half((float)(" + v + "))";
  return "((" + reg_type(to) + ")(" + v + "))";
}

bool is_compare(const std::string& op) {
  return op == "eq" || op == "ne" || op == "lt" || op == "le" || op == "gt" || op == "ge";
}

// The body of a unary op over `x` of float type `c`, as the LLVM emitter computes it.
std::string unary_expr(const KernelInst& in, const AttrMap& attrs, DType c) {
  const std::string& op = in.op;
  auto L = [&](double v) { return lit(v, c); };
  auto attr = [&](const char* name) { return std::get<double>(attrs.at(name)); };
  const std::string logistic = "(" + L(1) + " / (" + L(1) + " + exp(-x)))";
  if (op == "neg") return "-x";
  if (op == "abs") return "fabs(x)";
  if (op == "exp" || op == "log" || op == "log1p" || op == "expm1" || op == "sqrt" ||
      op == "sin" || op == "cos" || op == "tanh" || op == "erf" || op == "floor" || op == "ceil")
    return op + "(x)";
  if (op == "round") return "rint(x)";  // half to even, like nearbyint
  if (op == "rsqrt") return L(1) + " / sqrt(x)";
  if (op == "reciprocal") return L(1) + " / x";
  if (op == "square") return "x * x";
  if (op == "sigmoid") return logistic;
  if (op == "silu") return "x * " + logistic;
  if (op == "relu") return "(x > " + L(0) + " || x != x) ? x : " + L(0);
  if (op == "leaky_relu") return "x > " + L(0) + " ? x : x * " + L(attr("negative_slope"));
  if (op == "elu") return "x > " + L(0) + " ? x : " + L(attr("alpha")) + " * expm1(x)";
  if (op == "softplus") {
    const std::string bx = "(x * " + L(attr("beta")) + ")";
    return bx + " > " + L(attr("threshold")) + " ? x : log1p(exp(" + bx + ")) / " +
           L(attr("beta"));
  }
  if (op == "gelu") {
    if (std::get<std::string>(attrs.at("approximate")) == "tanh")
      return "x / (" + L(1) + " + exp(" + L(-2.0 * std::sqrt(2.0 / M_PI)) + " * (x + " +
             L(0.044715) + " * (x * x * x))))";
    // x/2 (1 + erf(x / sqrt 2)), the CUDA gelu kernel's (and PyTorch's) form: in the
    // far negative tail the error is absolute (a few ulps of 1 times |x|/2), where
    // erfc's stays relative, but erfc and a division cost more than the memory
    // time of a float32 chain. float: ds_gelu_erf (below).
    if (c == DType::Float32) return "ds_gelu_erf(x)";
    return L(0.5) + " * x * (" + L(1) + " + erf(x * " + L(std::sqrt(0.5)) + "))";
  }
  if (op == "sign")
    return "x > " + L(0) + " ? " + L(1) + " : (x < " + L(0) + " ? " + L(-1) + " : (x != x ? x : " +
           L(0) + "))";
  throw Error("kernel IR: the CUDA emitter has no rule for unary op '" + op + "'");
}

std::string binary_expr(const std::string& op, DType c) {
  if (op == "add") return "a + b";
  if (op == "sub") return "a - b";
  if (op == "mul") return "a * b";
  if (op == "div") return "a / b";
  if (op == "pow") return "pow(a, b)";
  const std::string nan = "ds_nan<" + reg_type(c) + ">()";
  if (op == "maximum") return "(a != a || b != b) ? " + nan + " : (a < b ? b : a)";
  if (op == "minimum") return "(a != a || b != b) ? " + nan + " : (b < a ? b : a)";
  if (op == "mod") return "ds_mod(a, b)";
  if (op == "eq") return "a == b";
  if (op == "ne") return "a != b";
  if (op == "lt") return "a < b";
  if (op == "le") return "a <= b";
  if (op == "gt") return "a > b";
  if (op == "ge") return "a >= b";
  throw Error("kernel IR: the CUDA emitter has no rule for binary op '" + op + "'");
}

// One instruction as a statement writing register `r`.
std::string inst_code(const KernelIR& ir, const KernelInst& in, int r) {
  std::vector<std::string> a;
  std::vector<DType> at;
  for (int x : in.args) {
    a.push_back("r" + std::to_string(x));
    at.push_back(ir.register_dtype(x));
  }
  const DType dt = in.dtype;
  const std::string out = "r" + std::to_string(r);
  std::string rhs;
  if (in.op == "cast") {
    rhs = convert(a[0], at[0], dt);
  } else if (in.op == "where") {
    rhs = "(" + convert(a[0], at[0], DType::Bool) + " ? " + convert(a[1], at[1], dt) + " : " +
          convert(a[2], at[2], dt) + ")";
  } else if (in.op == "logical_not") {
    rhs = "!" + convert(a[0], at[0], DType::Bool);
  } else if (in.op == "logical_and" || in.op == "logical_or") {
    rhs = convert(a[0], at[0], DType::Bool) + (in.op == "logical_and" ? " && " : " || ") +
          convert(a[1], at[1], DType::Bool);
  } else if (a.size() == 1) {
    const DType c = is_float(dt) ? dt : is_float(at[0]) ? at[0] : DType::Float32;
    const std::string x = "const " + reg_type(c) + " x = " + convert(a[0], at[0], c) + "; ";
    if (in.op == "isnan") return "  bool " + out + ";\n  { " + x + out + " = x != x; }\n";
    const AttrMap attrs = complete_attrs(get_op(in.op), in.attrs, "kernel IR op " + in.op);
    return "  " + reg_type(dt) + " " + out + ";\n  { " + x + out + " = " +
           convert("(" + unary_expr(in, attrs, c) + ")", c, dt) + "; }\n";
  } else {
    const DType promoted = promote_types(at[0], at[1]);
    const bool compare = is_compare(in.op);
    const DType c = compare ? (is_float(promoted) ? promoted : DType::Float32)
                            : (is_float(dt) ? dt : DType::Float32);
    const std::string ct = reg_type(c);
    const std::string e = "(" + binary_expr(in.op, c) + ")";
    return "  " + reg_type(dt) + " " + out + ";\n  { const " + ct + " a = " +
           convert(a[0], at[0], c) + "; const " + ct + " b = " + convert(a[1], at[1], c) + "; " +
           out + " = " + (compare ? e : convert(e, c, dt)) + "; }\n";
  }
  return "  const " + reg_type(dt) + " " + out + " = " + rhs + ";\n";
}

// ds_eval(inputs by value, outputs by reference): an elementwise region's body.
std::string eval_function(const Plan& p) {
  const KernelIR& ir = p.ir;
  std::ostringstream os;
  os << "__device__ __forceinline__ void ds_eval(";
  std::vector<std::string> params;
  for (size_t i = 0; i < ir.inputs.size(); ++i)
    params.push_back("const " + reg_type(ir.inputs[i].dtype) + " r" + std::to_string(i));
  for (size_t o = 0; o < ir.outputs.size(); ++o)
    params.push_back(reg_type(ir.register_dtype(ir.outputs[o])) + "& o" + std::to_string(o));
  for (size_t i = 0; i < params.size(); ++i) os << (i ? ", " : "") << params[i];
  os << ") {\n";
  int r = static_cast<int>(ir.inputs.size());
  for (const KernelInst& in : ir.insts) os << inst_code(ir, in, r++);
  for (size_t o = 0; o < ir.outputs.size(); ++o) os << "  o" << o << " = r" << ir.outputs[o] << ";\n";
  os << "}\n";
  return os.str();
}

// Coordinates c_d of flat index `idx` over `dims` (row-major), only those in
// `used` (no unused variables in the generated code).
std::string coords(const std::string& idx, const Shape& dims, const std::string& it,
                   const std::vector<bool>& used) {
  const int k = static_cast<int>(dims.size());
  const int lowest = static_cast<int>(std::find(used.begin(), used.end(), true) - used.begin());
  if (lowest == k) return "";
  if (k == 1) return "    const " + it + " c0 = " + idx + ";\n";
  std::ostringstream os;
  os << "    " << it << " rest = " << idx << ";\n";
  for (int d = k - 1; d >= std::max(lowest, 1); --d) {
    if (used[d]) os << "    const " << it << " c" << d << " = rest % " << dims[d] << ";\n";
    if (d > lowest) os << "    rest /= " << dims[d] << ";\n";
  }
  if (lowest == 0) os << "    const " << it << " c0 = rest;\n";
  return os.str();
}

// Element offset of input `i` from the coordinates over dims [0, upto).
std::string offset(const LoopLayout& l, size_t i, int upto) {
  std::string s;
  for (int d = 0; d < upto; ++d)
    if (l.strides[i][d] != 0)
      s += (s.empty() ? "" : " + ") + std::string("c") + std::to_string(d) + " * " +
           std::to_string(l.strides[i][d]);
  return s.empty() ? "0" : s;
}

// Input `i` walks the iteration space exactly (its offset is the flat index).
bool full_shape(const LoopLayout& l, size_t i) {
  int64_t step = 1;
  for (size_t d = l.dims.size(); d-- > 0;) {
    if (l.strides[i][d] != step) return false;
    step *= l.dims[d];
  }
  return true;
}

std::string params(const KernelIR& ir, const std::string& it, const std::string& count) {
  std::string s;
  for (size_t i = 0; i < ir.inputs.size(); ++i)
    s += "const " + mem_type(ir.inputs[i].dtype) + "* __restrict__ p" + std::to_string(i) + ", ";
  for (size_t o = 0; o < ir.outputs.size(); ++o)
    s += mem_type(ir.register_dtype(ir.outputs[o])) + "* __restrict__ q" + std::to_string(o) + ", ";
  if (ir.reduce) s += mem_type(ir.register_dtype(ir.reduce->reg)) + "* __restrict__ qr, ";
  return s + it + " " + count;
}

std::string load(DType t, const std::string& mem) {
  if (is_low_precision(t)) return "ds_io<" + mem_type(t) + ">::load(" + mem + ")";
  return t == DType::Bool ? "(" + mem + " != 0)" : mem;
}
// A register's value in its memory type. float16/bfloat16 registers hold
// values of their type already, so a bfloat16 store only takes the upper half.
std::string store_value(DType t, const std::string& v) {
  if (t == DType::BFloat16) return "ds_bf16_of_exact(" + v + ")";
  if (t == DType::Float16) return "ds_io<ds_half>::store(" + v + ")";
  return t == DType::Bool ? "(" + v + " ? 1 : 0)" : v;
}

std::string grid_stride(const std::string& var, const std::string& it, const std::string& count) {
  return "  for (" + it + " " + var + " = (" + it + ")blockIdx.x * blockDim.x + threadIdx.x; " + var +
         " < " + count + "; " + var + " += (" + it + ")gridDim.x * blockDim.x) {\n";
}

std::string out_decls(const KernelIR& ir) {
  std::string s;
  for (size_t o = 0; o < ir.outputs.size(); ++o)
    s += "    " + reg_type(ir.register_dtype(ir.outputs[o])) + " o" + std::to_string(o) + ";\n";
  return s;
}

std::string eval_call(const KernelIR& ir, const std::vector<std::string>& in_values) {
  std::string s = "ds_eval(";
  for (size_t i = 0; i < in_values.size(); ++i) s += (i ? ", " : "") + in_values[i];
  for (size_t o = 0; o < ir.outputs.size(); ++o)
    s += (s.back() == '(' ? "" : ", ") + std::string("o") + std::to_string(o);
  return s + ");\n";
}

// The dims over [0, upto) that some input indexing by coordinates steps along
// (full-shape inputs index by the flat index instead when `flat_full`).
std::vector<bool> used_dims(const LoopLayout& l, int upto, bool flat_full) {
  std::vector<bool> used(upto, false);
  for (size_t i = 0; i < l.strides.size(); ++i) {
    if (flat_full && full_shape(l, i)) continue;
    for (int d = 0; d < upto; ++d) used[d] = used[d] || l.strides[i][d] != 0;
  }
  return used;
}

std::string scalar_kernel(const Plan& p, const std::string& name) {
  const KernelIR& ir = p.ir;
  const LoopLayout& l = p.layout;
  const int k = static_cast<int>(l.dims.size());
  const std::vector<bool> used = used_dims(l, k, true);
  std::ostringstream os;
  os << "extern \"C\" __global__ void __launch_bounds__(" << kThreadsPerBlock << ") " << name
     << "(" << params(ir, p.index, "n") << ") {\n"
     << grid_stride("i", p.index, "n");
  os << coords("i", l.dims, p.index, used);
  std::vector<std::string> values;
  for (size_t i = 0; i < ir.inputs.size(); ++i) {
    const std::string at = full_shape(l, i) ? "i" : offset(l, i, k);
    values.push_back(load(ir.inputs[i].dtype, "p" + std::to_string(i) + "[" + at + "]"));
  }
  os << out_decls(ir) << "    " << eval_call(ir, values);
  for (size_t o = 0; o < ir.outputs.size(); ++o)
    os << "    q" << o << "[i] = "
       << store_value(ir.register_dtype(ir.outputs[o]), "o" + std::to_string(o)) << ";\n";
  os << "  }\n}\n";
  return os.str();
}

// Lanes of a 16-byte access to `t` (fewer when a whole step is narrower).
int chunk_lanes(DType t, int lanes) {
  return std::min(lanes, 16 / mem_size(t));
}

// The vectorized kernel: step v covers elements [v*V, v*V + V) of one row of the
// innermost dim (its extent is a multiple of V). Each vector operand moves in
// 16-byte chunks (a float32 operand of an 8-lane bfloat16 step takes two), so
// narrow and wide operands both use full-width accesses. Each thread issues the
// loads of kVectorUnroll steps before computing any, so several are in flight.
std::string vector_kernel(const Plan& p, const std::string& name, int lanes,
                          const std::vector<bool>& vec_in) {
  const KernelIR& ir = p.ir;
  const LoopLayout& l = p.layout;
  const int k = static_cast<int>(l.dims.size());
  const std::string V = std::to_string(lanes), U = std::to_string(kVectorUnroll);
  const std::string it = p.index;
  // ds_vec<type, C> and the chunk count of an operand of dtype t.
  auto chunk = [&](DType t) {
    const int c = chunk_lanes(t, lanes);
    return std::make_pair("ds_vec<" + mem_type(t) + ", " + std::to_string(c) + ">",
                          std::to_string(c));
  };
  auto lane = [&](DType t) {  // the chunk and the element of lane k
    const std::string c = chunk(t).second;
    return "[k / " + c + "].v[k % " + c + "]";
  };
  std::ostringstream os;
  os << "extern \"C\" __global__ void __launch_bounds__(" << kThreadsPerBlock << ") " << name
     << "(" << params(ir, it, "nvec") << ") {\n"
     << "  const " << it << " stride = (" << it << ")gridDim.x * blockDim.x;\n"
     << "  for (" << it << " v0 = (" << it << ")blockIdx.x * blockDim.x + threadIdx.x; v0 < nvec; v0 += "
     << U << " * stride) {\n";
  const std::string step_head = "#pragma unroll\n    for (int u = 0; u < " + U + "; ++u) {\n      const " +
                                it + " v = v0 + u * stride;\n      if (v >= nvec) break;\n      const " +
                                it + " i = v * " + V + ";\n";
  for (size_t i = 0; i < ir.inputs.size(); ++i) {
    const std::string s = std::to_string(i);
    const DType t = ir.inputs[i].dtype;
    if (vec_in[i])
      os << "    " << chunk(t).first << " l" << s << "[" << U << "]["
         << lanes / std::stoi(chunk(t).second) << "];\n";
    else  // broadcast along the row: one value for the whole vector
      os << "    " << reg_type(t) << " l" << s << "[" << U << "];\n";
  }
  os << step_head << coords("i", l.dims, it, used_dims(l, k, true));
  std::vector<std::string> values;
  for (size_t i = 0; i < ir.inputs.size(); ++i) {
    const DType t = ir.inputs[i].dtype;
    const std::string s = std::to_string(i);
    const std::string at = full_shape(l, i) ? "i" : offset(l, i, k);
    if (vec_in[i]) {
      const auto [type, c] = chunk(t);
      os << "#pragma unroll\n      for (int j = 0; j < " << lanes / std::stoi(c) << "; ++j) l" << s
         << "[u][j] = *reinterpret_cast<const " << type << "*>(p" << s << " + " << at << " + j * "
         << c << ");\n";
      values.push_back(load(t, "l" + s + "[u]" + lane(t)));
    } else {
      os << "      l" << s << "[u] = " << load(t, "p" + s + "[" + at + "]") << ";\n";
      values.push_back("l" + s + "[u]");
    }
  }
  os << "    }\n" << step_head;
  for (size_t o = 0; o < ir.outputs.size(); ++o) {
    const DType t = ir.register_dtype(ir.outputs[o]);
    os << "      " << chunk(t).first << " s" << o << "[" << lanes / std::stoi(chunk(t).second)
       << "];\n";
  }
  os << "#pragma unroll\n      for (int k = 0; k < " << V << "; ++k) {\n"
     << out_decls(ir) << "    " << eval_call(ir, values);
  for (size_t o = 0; o < ir.outputs.size(); ++o) {
    const DType t = ir.register_dtype(ir.outputs[o]);
    os << "        s" << o << lane(t) << " = " << store_value(t, "o" + std::to_string(o)) << ";\n";
  }
  os << "      }\n";
  for (size_t o = 0; o < ir.outputs.size(); ++o) {
    const auto [type, c] = chunk(ir.register_dtype(ir.outputs[o]));
    os << "#pragma unroll\n      for (int j = 0; j < " << lanes / std::stoi(c)
       << "; ++j) *reinterpret_cast<" << type << "*>(q" << o << " + i + j * " << c << ") = s" << o
       << "[j];\n";
  }
  os << "    }\n  }\n}\n";
  return os.str();
}

const char* const kHelpers = R"(template <typename T> __device__ __forceinline__ T ds_nan();
template <> __device__ __forceinline__ float ds_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double ds_nan<double>() { return __longlong_as_double(0x7ff8000000000000LL); }
// Python's modulo: the result takes the divisor's sign.
template <typename T> __device__ __forceinline__ T ds_mod(T a, T b) {
  const T r = fmod(a, b);
  return (r != T(0) && ((r < T(0)) != (b < T(0)))) ? r + b : r;
}
// A float rounded to bfloat16 / float16 and back, as the prelude's conversions
// round. sm_80+ rounds to bfloat16 in one cvt (nearest even, like ds_f2b) but
// gives every NaN one pattern, so a NaN keeps ds_f2b's: its upper half, quiet.
__device__ __forceinline__ float ds_round_bf16(float x) {
#if __CUDA_ARCH__ >= 800
  unsigned short b;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b) : "f"(x));
  return x != x ? __uint_as_float((__float_as_uint(x) & 0xffff0000u) | 0x400000u) : ds_b2f(b);
#else
  return ds_b2f(ds_f2b(x));
#endif
}
__device__ __forceinline__ float ds_round_half(float x) { return ds_h2f(ds_f2h(x)); }
// gelu(x) = x/2 (1 + erf(x / sqrt 2)) with erf(t) = 1 - 2^(-t Q(t)) for t = |x| / sqrt 2
// up to 3.92 (erf is 1 in float past it), Q of degree 7 fitted to -log2(erfc(t)) / t
// weighted by erfc(t), i.e. by erf's absolute error: at most 1.1e-7, on par with
// erff's; gelu within a few ulps for x >= 0 (2.6 on the host with an exact exp2),
// 1e-7 |x| absolute below. ~18 instructions where erff computes both of its
// branches (~31), which a bf16 chain (4 bytes per element) cannot afford.
__device__ __forceinline__ float ds_gelu_erf(float x) {
  const float t = fminf(fabsf(x * 0.70710678f), 3.92f);
  float q = 3.536040609e-05f;
  q = fmaf(q, t, -3.652497921e-04f);
  q = fmaf(q, t, 1.235474082e-03f);
  q = fmaf(q, t, 1.180010429e-03f);
  q = fmaf(q, t, -2.860011309e-02f);
  q = fmaf(q, t, 1.486363049e-01f);
  q = fmaf(q, t, 9.183841695e-01f);
  q = fmaf(q, t, 1.627910869e+00f);
  const float erf_abs = 1.0f - exp2f(-(t * q));
  return 0.5f * x * (1.0f + copysignf(erf_abs, x));
}
// A float that is a bfloat16 value (NaN included: ds_f2b's) as that bfloat16.
__device__ __forceinline__ ds_bf16 ds_bf16_of_exact(float x) {
  ds_bf16 r; r.bits = static_cast<unsigned short>(__float_as_uint(x) >> 16); return r;
}
template <typename T, int N> struct __align__(sizeof(T) * N) ds_vec { T v[N]; };
struct ds_add_op { template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; } };
// NaN-propagating max (a + b carries the NaN).
struct ds_max_op { template <typename T> __device__ __forceinline__ T operator()(T a, T b) const {
  return (a != a || b != b) ? a + b : (a > b ? a : b); } };
template <typename T, typename Op> __device__ __forceinline__ T ds_warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
)";

}  // namespace detail

CudaRegion emit_cuda_region(const KernelIR& ir) {
  using namespace detail;
  ir.verify();
  const int64_t n = numel(ir.shape);
  DS_CHECK(n > 0, ValueError, "CUDA fused region: the iteration shape ", shape_str(ir.shape),
           " is empty; empty regions launch nothing");
  Plan p{ir, loop_layout(ir)};
  CudaRegion r;
  r.wide_index = n >= (int64_t{1} << 31);
  p.index = r.wide_index ? "long long" : "unsigned int";
  const std::string tag = [&] {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(ir.hash()));
    return std::string(buf);
  }();
  std::ostringstream src;
  src << "// ds fused region " << tag << "\n/*\n" << ir.str() << "*/\n" << kHelpers;
  if (ir.reduce || ir.has_row_reductions()) {
    const int64_t len = p.layout.dims.back();
    r.rows = true;
    r.rows_per_block = len <= 1024 ? kThreadsPerBlock / 32 : 1;
    r.items = n / len;
    r.scalar_kernel = "ds_rows_" + tag;
    src << rows_kernel(p, r.scalar_kernel, r.rows_per_block, kThreadsPerBlock);
    // Rows past the register cache (32 elements a thread) whose inputs several
    // passes read: also a block-per-row kernel reading them once into shared memory.
    std::vector<int64_t> shared_offset;
    const int64_t shared_bytes = row_shared_layout(ir, p.layout, shared_offset);
    if (len > 32 * kThreadsPerBlock && shared_bytes > 0 && shared_bytes <= kMaxRowSharedBytes) {
      r.shared_kernel = "ds_rows_smem_" + tag;
      r.shared_bytes = shared_bytes;
      r.shared_threads = kSharedRowThreads;
      src << rows_kernel(p, r.shared_kernel, 1, kSharedRowThreads, shared_offset);
    }
  } else {
    r.items = n;
    r.scalar_kernel = "ds_fused_" + tag;
    src << eval_function(p) << scalar_kernel(p, r.scalar_kernel);
    // Vector accesses for operands that advance along the row. The narrowest sets
    // the lanes (16 bytes of it, at most 8), fewer when the rows do not split
    // into such steps, down to 16 bytes of the widest.
    int widest = 1, narrowest = 16;
    auto vector_operand = [&](DType t) {
      widest = std::max(widest, mem_size(t));
      narrowest = std::min(narrowest, mem_size(t));
    };
    r.vector_inputs.assign(ir.inputs.size(), false);
    for (size_t i = 0; i < ir.inputs.size(); ++i)
      if (p.layout.inner_contiguous(i)) {
        r.vector_inputs[i] = true;
        vector_operand(ir.inputs[i].dtype);
      }
    for (int o : ir.outputs) vector_operand(ir.register_dtype(o));
    int lanes = std::min(16 / narrowest, 8);
    while (lanes > 16 / widest && p.layout.inner() % lanes != 0) lanes /= 2;
    if (p.layout.inner() % lanes == 0) {
      r.vector_lanes = lanes;
      r.vector_items = n / lanes;
      r.vector_kernel = "ds_fused_vec_" + tag;
      src << vector_kernel(p, r.vector_kernel, lanes, r.vector_inputs);
    }
  }
  r.source = src.str();
  return r;
}

}  // namespace ds::codegen::cuda
