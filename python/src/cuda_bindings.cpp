// ds.cuda: devices, the caching allocator's statistics and budget, the NVRTC
// kernel cache and TF32. Exists in every build: without CUDA (or without a GPU)
// device_count() is 0 and is_available() says False.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "ds/cuda.h"

namespace ds::py {

void bind_cuda(nb::module_& root) {
  nb::module_ m = root.def_submodule("cuda", "CUDA devices, memory and kernel cache");
  m.def("is_available", [] { return cuda::device_count() > 0; },
        "True when a CUDA device can be used.");
  m.def("device_count", &cuda::device_count);
  m.def("unavailable_reason", &cuda::unavailable_reason,
        "Why no CUDA device can be used ('' when one can).");
  m.def("devices", [] {
    nb::list out;
    for (const auto& d : cuda::devices()) {
      nb::dict e;
      e["index"] = d.index;
      e["name"] = d.name;
      e["total_memory"] = d.total_memory;
      e["compute_capability"] = nb::make_tuple(d.major, d.minor);
      e["sm_count"] = d.sm_count;
      out.append(e);
    }
    return out;
  }, "One dict per device: index, name, total_memory, compute_capability, sm_count.");
  m.def("synchronize", &cuda::synchronize, nb::arg("device") = 0);
  m.def("memory_stats", [](int device) {
    const auto s = cuda::memory_stats(device);
    nb::dict d;
    d["allocated"] = s.allocated;
    d["reserved"] = s.reserved;
    d["peak"] = s.peak;
    d["allocations"] = s.allocations;
    d["cache_hits"] = s.cache_hits;
    d["budget"] = s.budget;
    return d;
  }, nb::arg("device") = 0, "The caching allocator's statistics (bytes and counts).");
  m.def("empty_cache", &cuda::empty_cache, "Returns cached device blocks to the driver.");
  m.def("reset_peak_memory", &cuda::reset_peak_memory, nb::arg("device") = 0);
  m.def("set_memory_budget", &cuda::set_memory_budget, nb::arg("bytes"), nb::arg("device") = 0,
        "Caps the device memory ds reserves; 0 restores the default.");
  m.def("kernel_cache_stats", [] {
    const auto s = cuda::kernel_cache_stats();
    nb::dict d;
    d["memory_hits"] = s.memory_hits;
    d["disk_hits"] = s.disk_hits;
    d["compiles"] = s.compiles;
    return d;
  });
  m.def("set_allow_tf32", &cuda::set_allow_tf32, nb::arg("allow"));
  m.def("allow_tf32", &cuda::allow_tf32);
}

}  // namespace ds::py
