// The CUDA runtime: devices, copies, the caching allocator and its out-of-memory
// behaviour, the NVRTC cache, and the executor's device choice. Without a GPU
// the device tests skip with the reason; the no-device behaviour is tested then.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "ds/cuda.h"
#include "ds/ds.h"

using ds::Device;
using ds::DType;
using ds::Tensor;

#define DS_REQUIRE_GPU()                   \
  if (ds::cuda::device_count() == 0)       \
  GTEST_SKIP() << "no CUDA device: " << ds::cuda::unavailable_reason()

namespace {

void expect_same_values(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.dtype(), b.dtype());
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(ds::element_as_double(a, i), ds::element_as_double(b, i)) << "element " << i;
}

}  // namespace

TEST(CudaNoDevice, GpuTargetsAndCopiesSayWhy) {
  if (ds::cuda::device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  const std::string reason = ds::cuda::unavailable_reason();
  EXPECT_FALSE(reason.empty());
  ds::Graph g;
  g.output(ds::relu(g.placeholder("x", {4})), "y");
  try {
    ds::compile(g, "gpu");
    FAIL() << "compile(gpu) without a device";
  } catch (const ds::UnavailableError& e) {
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
  }
  for (const auto& t : ds::available_targets()) EXPECT_EQ(t.find("cuda"), std::string::npos) << t;
  EXPECT_EQ(ds::compile(g, "auto").target(), "cpu");
  EXPECT_THROW(Tensor::full({3}, 1.0).to(Device::cuda()), ds::UnavailableError);
  EXPECT_TRUE(ds::cuda::devices().empty());
  EXPECT_NE(ds::info_text().find("gpus:      none"), std::string::npos);
}

TEST(CudaRuntime, DeviceInfoIsPlausible) {
  DS_REQUIRE_GPU();
  for (const auto& d : ds::cuda::devices()) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.total_memory, int64_t{1} << 30);
    EXPECT_GE(d.major, 5);
    EXPECT_GT(d.sm_count, 0);
    EXPECT_NE(ds::info_text().find("gpu " + std::to_string(d.index) + ":"), std::string::npos);
  }
  const auto targets = ds::available_targets();
  EXPECT_NE(std::find(targets.begin(), targets.end(), "cuda:0"), targets.end());
}

TEST(CudaRuntime, CopiesRoundTripEveryDtypeAndSize) {
  DS_REQUIRE_GPU();
  // 0, 1, odd, and more than two 8 MiB staging chunks (the double-buffered path).
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{1001}, int64_t{5'000'003}}) {
    for (DType t : {DType::Float32, DType::Float16, DType::BFloat16, DType::Float64}) {
      Tensor x = ds::random_uniform({n}, 11, -5, 5, t);
      Tensor d = x.to(Device::cuda());
      EXPECT_EQ(d.device(), Device::cuda());
      Tensor d2 = d.to(Device::cuda());  // same device: the same tensor
      EXPECT_TRUE(d2.same(d));
      expect_same_values(d.to(Device::cpu()), x);
    }
  }
  Tensor ints = Tensor::from_vector<int64_t>({1, -2, 3, 1LL << 40}, {2, 2});
  expect_same_values(ints.to(Device::cuda()).to(Device::cpu()), ints);
  // A strided source is made contiguous first: on the host, or on the device.
  Tensor m = ds::random_uniform({5, 7}, 3);
  expect_same_values(m.transpose(0, 1).to(Device::cuda()).to(Device::cpu()),
                     m.transpose(0, 1).contiguous());
  expect_same_values(m.to(Device::cuda()).transpose(0, 1).to(Device::cpu()),
                     m.transpose(0, 1).contiguous());
  // Device values are not read from the host: a summary prints, element reads throw.
  const Tensor on_gpu = m.to(Device::cuda());
  EXPECT_EQ(on_gpu.str(), "Tensor(shape=[5, 7], dtype=float32, device=cuda:0)");
  EXPECT_THROW(ds::element_as_double(on_gpu, 0), ds::UnavailableError);
}

TEST(CudaRuntime, EventsTimeStreamWork) {
  DS_REQUIRE_GPU();
  ds::cuda::Stream& s = ds::cuda::Stream::default_for(0);
  ds::cuda::Event start, stop;
  start.record(s);
  Tensor d = ds::random_uniform({1 << 22}, 5).to(Device::cuda());
  stop.record(s);
  stop.synchronize();
  EXPECT_GE(stop.elapsed_ms(start), 0.0f);
  ds::cuda::Stream own(0);
  own.synchronize();
  EXPECT_EQ(own.device(), 0);
}

TEST(CudaAllocator, StatsTrackLiveReservedPeakAndCacheHits) {
  DS_REQUIRE_GPU();
  ds::cuda::synchronize();
  const auto before = ds::cuda::memory_stats();
  const size_t bytes = size_t{3} << 20;
  {
    Tensor t = Tensor::empty({static_cast<int64_t>(bytes / 4)}, DType::Float32, Device::cuda());
    const auto live = ds::cuda::memory_stats();
    EXPECT_GE(live.allocated - before.allocated, static_cast<int64_t>(bytes));
    EXPECT_GE(live.reserved, live.allocated);
    EXPECT_GE(live.peak, live.allocated);
    EXPECT_EQ(live.allocations, before.allocations + 1);
  }
  const auto freed = ds::cuda::memory_stats();
  EXPECT_EQ(freed.allocated, before.allocated);
  {
    Tensor again = Tensor::empty({static_cast<int64_t>(bytes / 4)}, DType::Float32, Device::cuda());
    EXPECT_EQ(ds::cuda::memory_stats().cache_hits, freed.cache_hits + 1);
  }
  ds::cuda::empty_cache();
  const auto emptied = ds::cuda::memory_stats();
  EXPECT_LT(emptied.reserved, freed.reserved);
  EXPECT_EQ(emptied.allocated, before.allocated);
  ds::cuda::reset_peak_memory();
  EXPECT_EQ(ds::cuda::memory_stats().peak, emptied.allocated);
}

TEST(CudaAllocator, OutOfMemoryNamesSizeUseAndBudgetAndLeavesTheProcessWorking) {
  DS_REQUIRE_GPU();
  ds::cuda::empty_cache();
  const int64_t in_use = ds::cuda::memory_stats().allocated;
  ds::cuda::set_memory_budget(in_use + (int64_t{64} << 20));
  try {
    Tensor::empty({int64_t{128} << 20}, DType::Float32, Device::cuda());
    FAIL() << "allocation over the budget succeeded";
  } catch (const ds::OutOfMemoryError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("allocating " + std::to_string(int64_t{512} << 20) + " bytes"),
              std::string::npos) << m;
    EXPECT_NE(m.find("in use"), std::string::npos) << m;
    EXPECT_NE(m.find("budget"), std::string::npos) << m;
  }
  // A compiled run that fails frees what it took.
  ds::Graph g;
  Tensor x = g.placeholder("x", {4096, 4096});
  g.output(ds::exp(x) + ds::tanh(x) * x, "y");
  ds::Executable exe = ds::compile(g, "cuda");
  EXPECT_THROW(exe.run({ds::random_uniform({4096, 4096}, 1)}), ds::OutOfMemoryError);
  EXPECT_EQ(ds::cuda::memory_stats().allocated, in_use);
  // The driver's own limit: more than the device has, with no budget in the way.
  ds::cuda::set_memory_budget(int64_t{1} << 62);
  const int64_t total = ds::cuda::device_info(0).total_memory;
  EXPECT_THROW(Tensor::empty({total}, DType::Float32, Device::cuda()), ds::OutOfMemoryError);
  ds::cuda::set_memory_budget(0);
  // Still working: a small run on the device gives the CPU's numbers.
  Tensor small = ds::random_uniform({1000}, 2);
  ds::Graph g2;
  g2.output(ds::exp(g2.placeholder("x", {1000})), "y");
  Tensor got = ds::compile(g2, "cuda").run({small})[0];
  Tensor want = ds::exp(small);
  for (int64_t i = 0; i < 1000; ++i)
    EXPECT_NEAR(ds::element_as_double(got, i), ds::element_as_double(want, i), 1e-6);
  EXPECT_EQ(ds::cuda::memory_stats().allocated, in_use);
}

TEST(CudaNvrtc, KernelCacheMissThenMemoryThenDiskHit) {
  DS_REQUIRE_GPU();
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ds_cuda_cache_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const char* old = std::getenv("DS_CACHE_DIR");
  const std::string saved = old ? old : "";
  ::setenv("DS_CACHE_DIR", dir.c_str(), 1);
  ds::cuda::clear_kernel_memory_cache();
  ds::Graph g;
  g.output(ds::sigmoid(g.placeholder("x", {33}, DType::Float64)), "y");
  ds::Executable exe = ds::compile(g, "cuda", {.opt_level = 0});
  Tensor x = ds::random_uniform({33}, 4, -1, 1, DType::Float64);
  const auto s0 = ds::cuda::kernel_cache_stats();
  exe.run({x});
  const auto s1 = ds::cuda::kernel_cache_stats();
  EXPECT_EQ(s1.compiles, s0.compiles + 1);  // a fresh cache directory: compiled
  exe.run({x});
  const auto s2 = ds::cuda::kernel_cache_stats();
  EXPECT_EQ(s2.compiles, s1.compiles);
  EXPECT_GT(s2.memory_hits, s1.memory_hits);
  ds::cuda::clear_kernel_memory_cache();
  exe.run({x});
  const auto s3 = ds::cuda::kernel_cache_stats();
  EXPECT_EQ(s3.compiles, s2.compiles);
  EXPECT_EQ(s3.disk_hits, s2.disk_hits + 1);
  EXPECT_FALSE(std::filesystem::is_empty(dir));
  if (old) ::setenv("DS_CACHE_DIR", saved.c_str(), 1); else ::unsetenv("DS_CACHE_DIR");
  std::filesystem::remove_all(dir);
}

TEST(CudaExecutor, AutoPicksTheGpuOnlyForLargeGraphsAndSaysWhy) {
  DS_REQUIRE_GPU();
  ds::Graph tiny;
  tiny.output(ds::relu(tiny.placeholder("x", {8})), "y");
  const ds::Executable small = ds::compile(tiny, "auto");
  EXPECT_EQ(small.target(), "cpu");
  EXPECT_NE(small.explain().find("FLOPs per run <"), std::string::npos) << small.explain();
  ds::Graph big;
  Tensor a = big.placeholder("a", {1024, 1024}), b = big.placeholder("b", {1024, 1024});
  big.output(ds::matmul(a, b), "c");
  const ds::Executable large = ds::compile(big, "auto");
  EXPECT_EQ(large.target(), "cuda:0");
  EXPECT_NE(large.explain().find("[cuda]"), std::string::npos) << large.explain();
}

TEST(CudaExecutor, OpsWithoutACudaKernelFallBackToTheCpu) {
  DS_REQUIRE_GPU();
  ds::Graph g;
  Tensor x = g.placeholder("x", {6, 9});
  g.output(ds::prod(ds::exp(x), {1}), "p");  // prod has no CUDA kernel
  const ds::Executable exe = ds::compile(g, "cuda", {.opt_level = 0});
  EXPECT_NE(exe.explain().find("[cpu fallback"), std::string::npos) << exe.explain();
  EXPECT_NE(exe.explain().find("[cuda]"), std::string::npos) << exe.explain();
  Tensor feed = ds::random_uniform({6, 9}, 8, -3, 3);
  const Tensor got = exe.run({feed})[0], want = ds::compile(g, "cpu").run({feed})[0];
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < got.numel(); ++i)  // exp on the GPU and the CPU: a few ulps apart
    EXPECT_NEAR(ds::element_as_double(got, i), ds::element_as_double(want, i),
                1e-5 * std::abs(ds::element_as_double(want, i)))
        << "element " << i;
}
