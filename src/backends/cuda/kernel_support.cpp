#include "backends/cuda/kernel_support.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>

#include "ds/cuda.h"

namespace ds::cuda {

bool nvrtc_float(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Float16 ||
         t == DType::BFloat16;
}

std::string device_type(DType t) {
  switch (t) {
    case DType::Float32: return "float";
    case DType::Float64: return "double";
    case DType::Float16: return "ds_half";
    case DType::BFloat16: return "ds_bf16";
    case DType::Bool: return "unsigned char";
    default:
      throw TypeError(detail::cat("CUDA kernels: no device type for dtype ", dtype_name(t)));
  }
}

int call_device(const KernelCall& kc) {
  const Tensor& first = kc.outputs.empty() ? kc.inputs.at(0) : kc.outputs[0];
  const Device d = first.device();
  auto check = [&](const Tensor& t, const char* kind, size_t i) {
    DS_CHECK(t.device() == d && d.kind == DeviceKind::CUDA, ValueError, kc.ctx.where(), kind, " ",
             i, " is on ", t.device().str(), ", expected ", d.str(),
             " (CUDA kernels take tensors on one CUDA device)");
  };
  for (size_t i = 0; i < kc.inputs.size(); ++i) check(kc.inputs[i], "input", i);
  for (size_t i = 0; i < kc.outputs.size(); ++i) check(kc.outputs[i], "output", i);
  return d.index;
}

Shape broadcast_strides(const Shape& in, const Shape& out) {
  const Shape st = contiguous_strides(in);
  Shape r(out.size(), 0);
  const size_t extra = out.size() - in.size();
  for (size_t d = 0; d < in.size(); ++d) r[d + extra] = in[d] == 1 ? 0 : st[d];
  return r;
}

int sm_count(int device) {
  static std::mutex mu;
  static std::map<int, int> sms;
  std::lock_guard<std::mutex> lock(mu);
  auto it = sms.find(device);
  if (it == sms.end()) it = sms.emplace(device, device_info(device).sm_count).first;
  return it->second;
}

unsigned grid_for(int64_t n, int device) {
  // Enough blocks to fill every SM several times; the loops stride over the rest.
  const int64_t want = (n + 255) / 256;
  return static_cast<unsigned>(std::clamp<int64_t>(want, 1, int64_t{sm_count(device)} * 16));
}

int pack_width(int64_t extent, size_t elem, std::initializer_list<const void*> ptrs) {
  for (int v = static_cast<int>(16 / elem); v > 1; v /= 2) {
    bool ok = extent % v == 0;
    for (const void* p : ptrs) ok = ok && reinterpret_cast<uintptr_t>(p) % (v * elem) == 0;
    if (ok) return v;
  }
  return 1;
}

}  // namespace ds::cuda
