// Shared by the CUDA kernel benchmarks (bench_cuda*.cpp): CUDA-event timing, and
// one op run through the CUDA kernel the executor would pick, on device copies of
// its inputs (no host copies in the timed region).
#pragma once

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ds/cuda.h"
#include "ds/ds.h"
#include "ds/op.h"

namespace ds_bench {

// Whether device 0 is there; if not, prints why ("no CUDA device: <reason>").
inline bool has_device() {
  if (ds::cuda::device_count() > 0) return true;
  std::printf("no CUDA device: %s\n", ds::cuda::unavailable_reason().c_str());
  return false;
}

// Median of `runs` timings on device 0's stream, after 3 warm-ups (NVRTC compiles,
// cuBLASLt heuristics, cuDNN algorithm searches and the allocator stay out).
inline double median_ms(const std::function<void()>& fn, int runs) {
  for (int i = 0; i < 3; ++i) fn();
  ds::cuda::Stream& s = ds::cuda::Stream::default_for(0);
  std::vector<float> ms;
  for (int i = 0; i < runs; ++i) {
    ds::cuda::Event start, stop;
    start.record(s);
    fn();
    stop.record(s);
    stop.synchronize();
    ms.push_back(stop.elapsed_ms(start));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// An op ready to run on the GPU. Held by pointer: the context refers to `attrs`.
struct CudaOp {
  const ds::OpDef& def;
  ds::AttrMap attrs;
  std::unique_ptr<ds::OpContext> ctx;
  const ds::KernelEntry* kernel = nullptr;  // nullptr: no CUDA kernel takes these inputs
  std::vector<ds::TensorType> out_types;
  std::vector<ds::Tensor> inputs, outputs;  // on the device

  double time_ms(int runs) {
    return median_ms([&] { kernel->fn(ds::KernelCall{*ctx, inputs, outputs}); }, runs);
  }
};

inline std::unique_ptr<CudaOp> cuda_op(const std::string& label, const std::string& op,
                                       const std::vector<ds::Tensor>& inputs,
                                       const ds::AttrMap& attrs) {
  const ds::OpDef& def = ds::get_op(op);
  auto c = std::unique_ptr<CudaOp>(new CudaOp{def, ds::complete_attrs(def, attrs, op + ": "), {}, {}, {}, {}, {}});
  std::vector<ds::TensorType> types;
  for (const ds::Tensor& t : inputs) {
    types.push_back({t.dtype(), t.shape()});
    c->inputs.push_back(t.to(ds::Device::cuda()));
  }
  c->ctx = std::make_unique<ds::OpContext>(ds::OpContext{def, c->attrs, types, label});
  const ds::KernelEntry& k = ds::select_kernel(*c->ctx, ds::DeviceKind::CUDA);
  if (k.impl == "reference") return c;
  c->kernel = &k;
  c->out_types = def.infer(*c->ctx);
  for (const ds::TensorType& t : c->out_types)
    c->outputs.push_back(ds::Tensor::empty(t.shape, t.dtype, ds::Device::cuda()));
  return c;
}

}  // namespace ds_bench
