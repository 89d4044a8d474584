// Many device-to-device copies in one launch. A CUDA graph's replay copies each
// feed into the graph's own buffer and each result out of it: for a training
// step that is every parameter and optimizer state tensor (GPT-2: ~450 tensors,
// 1.5 GB each way). One cudaMemcpyAsync each left the GPU waiting on the host's
// ~900 calls; one kernel per 128 tensors moves them at copy bandwidth.
#include <algorithm>
#include <cstdint>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/device_allocator.h"
#include "backends/cuda/kernel_support.h"
#include "backends/cuda/nvrtc_module.h"
#include "ds/cuda.h"

namespace ds::cuda {
namespace {

constexpr int kTable = 128;  // copies per launch: the table is a 3 KB kernel parameter

// The table: 16-byte words; end[i] is the running total of words through copy i.
// Each thread walks its grid-stride words in order, so its copy index only grows.
const char* const kCopyBatch = R"(
struct CopyTable {
  const uint4* src[128];
  uint4* dst[128];
  unsigned long long end[128];
  int n;
};
extern "C" __global__ void ds_copy_batch(const __grid_constant__ CopyTable t) {
  const unsigned long long total = t.end[t.n - 1];
  const unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
  int e = 0;
  for (unsigned long long g = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
       g < total; g += step) {
    while (g >= t.end[e]) ++e;
    const unsigned long long i = g - (e ? t.end[e - 1] : 0);
    t.dst[e][i] = t.src[e][i];
  }
}
)";

struct CopyTable {
  const void* src[kTable];
  void* dst[kTable];
  unsigned long long end[kTable];
  int n = 0;
};

void launch_table(int device, CopyTable& t) {
  void* args[] = {&t};
  const int64_t words = static_cast<int64_t>(t.end[t.n - 1]);
  launch(device, get_kernel(device, kCopyBatch, "ds_copy_batch"), grid_for(words, device), 256,
         args, 0, "batched copy");
  t.n = 0;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void copy_batch(const std::vector<Tensor>& src, std::vector<Tensor>& dst) {
  DS_CHECK(src.size() == dst.size(), ValueError, "batched copy: ", src.size(), " sources for ",
           dst.size(), " destinations");
  int device = -1;
  CopyTable table;
  for (size_t i = 0; i < src.size(); ++i) {
    const Tensor& s = src[i];
    Tensor& d = dst[i];
    const size_t n = s.nbytes();
    const bool batched = s.device().kind == DeviceKind::CUDA && s.device() == d.device() &&
                         s.is_contiguous() && d.is_contiguous() && s.shape() == d.shape() &&
                         s.dtype() == d.dtype() && n % 16 == 0 && aligned16(s.raw_data()) &&
                         aligned16(d.raw_data()) && (device < 0 || s.device().index == device);
    if (!batched) {  // checks and copies any other pair (host, views, odd sizes)
      copy_tensor(s, d);
      continue;
    }
    if (n == 0) continue;
    device = s.device().index;
    table.src[table.n] = s.raw_data();
    table.dst[table.n] = d.raw_data();
    table.end[table.n] = (table.n ? table.end[table.n - 1] : 0) + n / 16;
    if (++table.n == kTable) launch_table(device, table);
  }
  if (table.n) launch_table(device, table);
}

}  // namespace ds::cuda
