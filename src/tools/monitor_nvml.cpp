// NVML through dlopen: no build dependency on the CUDA toolkit or the driver.
// Every call goes through NvmlApi so tests run against a fake table.
#include <dlfcn.h>

#include "ds/monitor.h"

namespace ds {

namespace {

constexpr int kNvmlSuccess = 0;
constexpr unsigned int kNameLength = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE

// The library stays loaded for the process: NVML handles outlive any one reader.
void* nvml_library() {
  static void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  return lib;
}

template <typename Fn>
Fn* symbol(void* lib, const char* name) {
  return reinterpret_cast<Fn*>(dlsym(lib, name));
}

}  // namespace

std::optional<NvmlApi> load_nvml() {
  void* lib = nvml_library();
  if (!lib) return std::nullopt;
  using Handle = void*;
  auto init = symbol<int()>(lib, "nvmlInit_v2");
  auto shutdown = symbol<int()>(lib, "nvmlShutdown");
  auto count = symbol<int(unsigned int*)>(lib, "nvmlDeviceGetCount_v2");
  auto handle = symbol<int(unsigned int, Handle*)>(lib, "nvmlDeviceGetHandleByIndex_v2");
  auto util = symbol<int(Handle, NvmlUtilization*)>(lib, "nvmlDeviceGetUtilizationRates");
  auto memory = symbol<int(Handle, NvmlMemory*)>(lib, "nvmlDeviceGetMemoryInfo");
  auto power = symbol<int(Handle, unsigned int*)>(lib, "nvmlDeviceGetPowerUsage");
  auto temp = symbol<int(Handle, int, unsigned int*)>(lib, "nvmlDeviceGetTemperature");
  auto name = symbol<int(Handle, char*, unsigned int)>(lib, "nvmlDeviceGetName");
  if (!init || !shutdown || !count || !handle || !util || !memory || !power || !temp || !name)
    return std::nullopt;
  return NvmlApi{init, shutdown, count, handle, util, memory, power, temp, name};
}

GpuReader::GpuReader(NvmlApi api) : api_(std::move(api)) {
  if (!api_.init || api_.init() != kNvmlSuccess) return;
  initialized_ = true;
  unsigned int count = 0;
  if (!api_.device_count || api_.device_count(&count) != kNvmlSuccess) return;
  for (unsigned int i = 0; i < count; ++i) {
    void* h = nullptr;
    if (!api_.device_handle || api_.device_handle(i, &h) != kNvmlSuccess) continue;
    devices_.emplace_back(i, h);
    char buf[kNameLength] = {};
    names_.push_back(api_.name && api_.name(h, buf, kNameLength) == kNvmlSuccess
                         ? std::string(buf)
                         : "GPU " + std::to_string(i));
  }
}

GpuReader::~GpuReader() {
  if (initialized_ && api_.shutdown) api_.shutdown();
}

std::vector<GpuSample> GpuReader::read() const {
  std::vector<GpuSample> out;
  for (size_t d = 0; d < devices_.size(); ++d) {
    auto [index, h] = devices_[d];
    GpuSample s;
    s.index = static_cast<int>(index);
    s.name = names_[d];
    NvmlUtilization u{};
    if (api_.utilization && api_.utilization(h, &u) == kNvmlSuccess) {
      s.utilization_pct = u.gpu;
      s.memory_utilization_pct = u.memory;
    }
    NvmlMemory m{};
    if (api_.memory && api_.memory(h, &m) == kNvmlSuccess) {
      s.memory_used_bytes = static_cast<int64_t>(m.used);
      s.memory_total_bytes = static_cast<int64_t>(m.total);
    }
    unsigned int milliwatts = 0;
    if (api_.power_mw && api_.power_mw(h, &milliwatts) == kNvmlSuccess)
      s.power_watts = milliwatts / 1000.0;
    unsigned int celsius = 0;
    if (api_.temperature && api_.temperature(h, 0, &celsius) == kNvmlSuccess)
      s.temperature_c = celsius;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace ds
