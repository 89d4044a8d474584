// Data-movement ops on CUDA: reshape/flatten/squeeze (a device memcpy), permute,
// broadcast_to, slice, concat, split and constant pad (views over the strided
// copy), cast (a conversion kernel with the CPU's rules) and where (a broadcast
// select). Without them every graph with a cast or a transpose bounced its
// tensors through the host.
#include <algorithm>

#include "backends/cuda/device_allocator.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "backends/cuda/strided_copy.h"
#include "ir/ops/op_helpers.h"

namespace ds::cuda {
namespace {

constexpr int kMaxDims = 8;

// Conversions as the CPU's copy_into: float16/bfloat16 through float, to bool as
// "!= 0", everything else a static_cast.
const char* const kBool = "struct ds_bool { unsigned char v; };\n";
const char* const kCast = R"(
template <typename D> struct ds_to {
  template <typename S> static __device__ D go(S s) { return static_cast<D>(s); }
  static __device__ D go(ds_half s) { return static_cast<D>(ds_h2f(s.bits)); }
  static __device__ D go(ds_bf16 s) { return static_cast<D>(ds_b2f(s.bits)); }
  static __device__ D go(ds_bool s) { return static_cast<D>(s.v); }
};
template <> struct ds_to<ds_bool> {
  template <typename S> static __device__ ds_bool go(S s) { ds_bool r; r.v = s != S(0); return r; }
  static __device__ ds_bool go(ds_half s) { return go(ds_h2f(s.bits)); }
  static __device__ ds_bool go(ds_bf16 s) { return go(ds_b2f(s.bits)); }
  static __device__ ds_bool go(ds_bool s) { return s; }
};
template <> struct ds_to<ds_half> {
  template <typename S> static __device__ ds_half go(S s) { ds_half r; r.bits = ds_f2h(static_cast<float>(s)); return r; }
  static __device__ ds_half go(ds_half s) { return s; }
  static __device__ ds_half go(ds_bf16 s) { return go(ds_b2f(s.bits)); }
  static __device__ ds_half go(ds_bool s) { return go(static_cast<float>(s.v)); }
};
template <> struct ds_to<ds_bf16> {
  template <typename S> static __device__ ds_bf16 go(S s) { ds_bf16 r; r.bits = ds_f2b(static_cast<float>(s)); return r; }
  static __device__ ds_bf16 go(ds_bf16 s) { return s; }
  static __device__ ds_bf16 go(ds_half s) { return go(ds_h2f(s.bits)); }
  static __device__ ds_bf16 go(ds_bool s) { return go(static_cast<float>(s.v)); }
};
extern "C" __global__ void ds_cast(const S* __restrict__ x, D* __restrict__ o, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    o[i] = ds_to<D>::go(x[i]);
}
)";

// out[i] = c[i] ? a[i] : b[i] with per-operand broadcast strides (0 on broadcast axes).
const char* const kWhere = R"(
struct ds_select { int ndim; long long size[8]; long long sc[8]; long long sa[8]; long long sb[8]; };
extern "C" __global__ void ds_where(const unsigned char* __restrict__ c, const W* __restrict__ a,
                                    const W* __restrict__ b, W* __restrict__ o, long long n, ds_select s) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long rest = i, oc = 0, oa = 0, ob = 0;
    for (int d = s.ndim - 1; d >= 0; --d) {
      const long long k = rest % s.size[d];
      rest /= s.size[d];
      oc += k * s.sc[d];
      oa += k * s.sa[d];
      ob += k * s.sb[d];
    }
    o[i] = c[oc] ? a[oa] : b[ob];
  }
}
)";

struct Select {
  int ndim;
  long long size[kMaxDims];
  long long sc[kMaxDims];
  long long sa[kMaxDims];
  long long sb[kMaxDims];
};

std::string cast_type(DType t) {
  switch (t) {
    case DType::Bool: return "ds_bool";
    case DType::UInt8: return "unsigned char";
    case DType::Int8: return "signed char";
    case DType::Int32: return "int";
    case DType::Int64: return "long long";
    default: return device_type(t);  // the float types
  }
}

void launch_grid(const KernelCall& kc, const std::string& src, const char* kernel, long long n,
                 void** args) {
  const int dev = call_device(kc);
  launch(dev, get_kernel(dev, src, kernel), grid_for(n, dev), 256, args, 0,
         kc.ctx.op.name.c_str());
}

void same_bytes(const KernelCall& kc) {  // reshape, flatten, squeeze: the data does not move
  Tensor& out = kc.outputs[0];
  copy_tensor(kc.inputs[0].reshape(out.shape()), out);
}

void permute_kernel(const KernelCall& kc) {
  strided_copy(kc.inputs[0].permute(kc.ctx.ints("axes")), kc.outputs[0], "permute");
}

void broadcast_kernel(const KernelCall& kc) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  strided_copy(out.device().index, x.raw_data(), out.shape(), broadcast_strides(x.shape(), out.shape()),
               out.raw_data(), out.strides(), dtype_size(x.dtype()), "broadcast_to");
}

void slice_kernel(const KernelCall& kc) {
  const Tensor v = kc.inputs[0].slice(kc.ctx.i("axis"), kc.ctx.i("start"), kc.ctx.i("stop"),
                                      kc.ctx.i("step"));
  strided_copy(v, kc.outputs[0], "slice");
}

void concat_kernel(const KernelCall& kc) {
  Tensor& out = kc.outputs[0];
  const int axis = normalize_axis(kc.ctx.i("axis"), out.ndim(), kc.ctx.where());
  int64_t offset = 0;
  for (const Tensor& x : kc.inputs) {
    Tensor dst = out.slice(axis, offset, offset + x.shape()[axis]);
    strided_copy(x, dst, "concat");
    offset += x.shape()[axis];
  }
}

void split_kernel(const KernelCall& kc) {
  const int axis = normalize_axis(kc.ctx.i("axis"), kc.inputs[0].ndim(), kc.ctx.where());
  int64_t offset = 0;
  for (Tensor& out : kc.outputs) {
    const int64_t n = out.shape()[axis];
    strided_copy(kc.inputs[0].slice(axis, offset, offset + n), out, "split");
    offset += n;
  }
}

void pad_kernel(const KernelCall& kc) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  if (out.numel() == 0) return;
  fill(out, kc.ctx.f("value"), "pad");
  const auto& p = kc.ctx.ints("pads");
  Tensor interior = out;
  for (int d = 0; d < x.ndim() && 2 * d < static_cast<int>(p.size()); ++d)
    interior = interior.slice(d, p[2 * d], p[2 * d] + x.shape()[d]);
  strided_copy(x, interior, "pad");
}

void cast_kernel(const KernelCall& kc) {
  const Tensor& x = kc.inputs[0];
  Tensor& out = kc.outputs[0];
  long long n = out.numel();
  if (n == 0) return;
  const std::string src = std::string(kBool) + "typedef " + cast_type(x.dtype()) + " S;\ntypedef " +
                          cast_type(out.dtype()) + " D;\n" + kCast;
  const void* xp = x.raw_data();
  void* op = out.raw_data();
  void* args[] = {&xp, &op, &n};
  launch_grid(kc, src, "ds_cast", n, args);
}

void where_kernel(const KernelCall& kc) {
  Tensor& out = kc.outputs[0];
  long long n = out.numel();
  if (n == 0) return;
  Select s{out.ndim(), {}, {}, {}, {}};
  const Shape sc = broadcast_strides(kc.inputs[0].shape(), out.shape());
  const Shape sa = broadcast_strides(kc.inputs[1].shape(), out.shape());
  const Shape sb = broadcast_strides(kc.inputs[2].shape(), out.shape());
  for (int d = 0; d < out.ndim(); ++d) {
    s.size[d] = out.shape()[d];
    s.sc[d] = sc[d];
    s.sa[d] = sa[d];
    s.sb[d] = sb[d];
  }
  const std::string src =
      std::string("typedef ") + word_type(dtype_size(out.dtype())) + " W;\n" + kWhere;
  const void* cp = kc.inputs[0].raw_data();
  const void* ap = kc.inputs[1].raw_data();
  const void* bp = kc.inputs[2].raw_data();
  void* op = out.raw_data();
  void* args[] = {&cp, &ap, &bp, &op, &n, &s};
  launch_grid(kc, src, "ds_where", n, args);
}

bool rank_fits(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.shape.size() > kMaxDims) return false;
  return true;
}

bool one_dtype(const OpContext& c) {
  for (const auto& t : c.inputs)
    if (t.dtype != c.inputs[0].dtype) return false;
  return rank_fits(c);
}

const OpRegistrar reg([] {
  auto add = [](const char* op, KernelFn fn, std::function<bool(const OpContext&)> supports) {
    register_kernel(op, DeviceKind::CUDA, {std::move(fn), std::move(supports), "cuda-layout", 10});
  };
  for (const char* op : {"reshape", "flatten", "squeeze"}) add(op, same_bytes, nullptr);
  add("permute", permute_kernel, rank_fits);
  add("broadcast_to", broadcast_kernel, [](const OpContext& c) {
    return rank_fits(c) && static_cast<int>(c.ints("shape").size()) <= kMaxDims;
  });
  add("slice", slice_kernel, rank_fits);
  add("concat", concat_kernel, one_dtype);
  add("split", split_kernel, rank_fits);
  add("pad", pad_kernel, [](const OpContext& c) {
    if (c.s("mode") != "constant" || !rank_fits(c)) return false;
    for (int64_t p : c.ints("pads"))
      if (p < 0) return false;
    return true;
  });
  add("cast", cast_kernel, nullptr);
  add("where", where_kernel, [](const OpContext& c) {
    return c.inputs[0].dtype == DType::Bool && c.inputs[1].dtype == c.inputs[2].dtype &&
           rank_fits(c) &&
           std::max({c.inputs[0].shape.size(), c.inputs[1].shape.size(), c.inputs[2].shape.size()}) <=
               static_cast<size_t>(kMaxDims);
  });
});

}  // namespace
}  // namespace ds::cuda
