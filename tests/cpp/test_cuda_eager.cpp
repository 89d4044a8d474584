// Eager ops on CUDA tensors: each runs its CUDA kernel (or the CPU's, with copies
// both ways) and its results stay on the device; strided device views are
// compacted on the device.
#include <gtest/gtest.h>

#include <algorithm>

#include "ds/cuda.h"
#include "ds/ds.h"
#include "ds/profile.h"

using ds::Device;
using ds::DType;
using ds::Tensor;

#define DS_REQUIRE_GPU()                                                               \
  do {                                                                                  \
    if (ds::cuda::device_count() == 0)                                                  \
      GTEST_SKIP() << "no CUDA device here: " << ds::cuda::unavailable_reason();        \
  } while (0)

namespace {

void expect_same(const Tensor& gpu, const Tensor& cpu, double tol, const std::string& what) {
  ASSERT_EQ(gpu.device().kind, ds::DeviceKind::CUDA) << what << ": result left the device";
  const Tensor got = gpu.to(Device::cpu()).to(DType::Float64);
  const Tensor want = cpu.to(DType::Float64);
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const double* g = got.data<double>();
  const double* w = want.data<double>();
  for (int64_t i = 0; i < got.numel(); ++i)
    ASSERT_NEAR(g[i], w[i], tol * (1 + std::abs(w[i]))) << what << " at " << i;
}

}  // namespace

TEST(CudaEager, OpsOnDeviceTensorsMatchTheCpuAndStayOnTheDevice) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  const Tensor a = ds::random_uniform({37, 64}, 1, -1, 1), b = ds::random_uniform({64}, 2, -1, 1);
  const Tensor w = ds::random_uniform({64, 24}, 3, -1, 1);
  const Tensor ga = a.to(gpu), gb = b.to(gpu), gw = w.to(gpu);
  expect_same(ds::add(ga, gb), ds::add(a, b), 1e-6, "add broadcast");
  expect_same(ds::softmax(ga, -1), ds::softmax(a, -1), 1e-5, "softmax");
  expect_same(ds::matmul(ga, gw), ds::matmul(a, gw.to(Device::cpu())), 1e-4, "matmul");
  // tril has no CUDA kernel: it runs on the CPU and its result comes back to the device.
  expect_same(ds::tril(ga), ds::tril(a), 0, "tril (CPU fallback)");
}

TEST(CudaEager, StridedViewsAreCompactedOnTheDevice) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  for (DType t : {DType::Float32, DType::Float64, DType::BFloat16, DType::Int64, DType::Bool}) {
    const Tensor x = ds::random_uniform({5, 7, 3}, 4, -2, 2).to(t);
    const Tensor view = x.to(gpu).transpose(0, 2);
    ASSERT_FALSE(view.is_contiguous());
    expect_same(view.contiguous(), x.transpose(0, 2).contiguous(), 0,
                std::string("transpose ") + ds::dtype_name(t));
    expect_same(ds::neg(view.to(DType::Float32)), ds::neg(x.transpose(0, 2).to(DType::Float32)), 0,
                "op on a strided view");
  }
}

TEST(CudaEager, MixingDevicesNamesTheInputs) {
  DS_REQUIRE_GPU();
  const Tensor a = ds::random_uniform({4}, 1, -1, 1);
  try {
    ds::add(a.to(Device::parse("cuda:0")), a);
    FAIL() << "mixing cuda:0 and cpu did not throw";
  } catch (const ds::ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("input 1 is on cpu"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
  }
}

TEST(CudaLayout, DataMovementOpsMatchTheCpu) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  for (DType t : {DType::Float32, DType::BFloat16, DType::Int64, DType::Bool, DType::UInt8}) {
    const std::string at = std::string(" ") + ds::dtype_name(t);
    const Tensor x = ds::floor(ds::random_uniform({4, 1, 6, 5}, 11, 0, 9)).to(t);
    const Tensor g = x.to(gpu);
    expect_same(ds::reshape(g, {6, 20}), ds::reshape(x, {6, 20}), 0, "reshape" + at);
    expect_same(ds::flatten(g), ds::flatten(x), 0, "flatten" + at);
    expect_same(ds::squeeze(g, {1}), ds::squeeze(x, {1}), 0, "squeeze" + at);
    expect_same(ds::permute(g, {3, 0, 2, 1}), ds::permute(x, {3, 0, 2, 1}), 0, "permute" + at);
    expect_same(ds::broadcast_to(g, {2, 4, 3, 6, 5}), ds::broadcast_to(x, {2, 4, 3, 6, 5}), 0,
                "broadcast_to" + at);
    expect_same(ds::slice(g, 2, 1, 6, 2), ds::slice(x, 2, 1, 6, 2), 0, "slice step 2" + at);
    expect_same(ds::concat({g, ds::slice(g, 3, 0, 2)}, 3), ds::concat({x, ds::slice(x, 3, 0, 2)}, 3),
                0, "concat" + at);
    const auto gs = ds::split(g, {2, 3, 1}, 2), cs = ds::split(x, {2, 3, 1}, 2);
    for (size_t i = 0; i < gs.size(); ++i) expect_same(gs[i], cs[i], 0, "split" + at);
    expect_same(ds::pad(g, {1, 2, 0, 0, 3, 1}, "constant", 7), ds::pad(x, {1, 2, 0, 0, 3, 1}, "constant", 7),
                0, "pad" + at);
  }
}

// Inner runs contiguous on both sides move in words of up to 16 bytes
// (strided_copy.cpp): a head split, slices/concats along the last axis, and a run
// whose width allows only 4- or 8-byte words.
TEST(CudaLayout, WideWordCopiesMatchTheCpu) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  for (DType t : {DType::Float32, DType::BFloat16, DType::UInt8}) {
    const std::string at = std::string(" ") + ds::dtype_name(t);
    for (int64_t d : {64, 24, 6, 3}) {
      const Tensor x = ds::floor(ds::random_uniform({3, 5, 4, d}, 13, 0, 99)).to(t);
      const Tensor g = x.to(gpu);
      const std::string w = " d=" + std::to_string(d) + at;
      expect_same(ds::permute(g, {0, 2, 1, 3}), ds::permute(x, {0, 2, 1, 3}), 0, "heads" + w);
      expect_same(ds::slice(g, 2, 1, 3), ds::slice(x, 2, 1, 3), 0, "slice" + w);
      expect_same(ds::concat({g, ds::slice(g, 3, 0, d / 3 + 1)}, 3),
                  ds::concat({x, ds::slice(x, 3, 0, d / 3 + 1)}, 3), 0, "concat" + w);
      // An odd element offset: the source pointer is not 16-byte aligned.
      expect_same(ds::slice(g, 3, 1, d), ds::slice(x, 3, 1, d), 0, "offset slice" + w);
    }
    // Every extent 1: nothing left to merge (a single element moves).
    const Tensor one = ds::floor(ds::random_uniform({1, 1, 2}, 14, 0, 99)).to(t);
    expect_same(ds::slice(one.to(gpu), 2, 1, 2), ds::slice(one, 2, 1, 2), 0, "one element" + at);
  }
}

TEST(CudaLayout, CastBetweenEveryDtypePairFollowsTheCpuRules) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  // Non-negative values with exact zeros and fractions: every conversion is defined.
  const Tensor base = ds::mul(ds::floor(ds::random_uniform({1031}, 5, 0, 160)), ds::full({1}, 0.75));
  for (DType from : ds::kAllDTypes) {
    const Tensor x = base.to(from);
    for (DType to : ds::kAllDTypes)
      expect_same(ds::cast(x.to(gpu), to), ds::cast(x, to), 0,
                  std::string("cast ") + ds::dtype_name(from) + " -> " + ds::dtype_name(to));
  }
}

TEST(CudaLayout, WhereBroadcastsLikeTheCpu) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  const Tensor c = ds::gt(ds::random_uniform({3, 1, 7}, 1, -1, 1), ds::full({1}, 0.0));
  for (DType t : {DType::Float32, DType::Float16, DType::Int32}) {
    const Tensor a = ds::random_uniform({5, 7}, 2, -4, 4).to(t), b = ds::random_uniform({3, 5, 1}, 3, -4, 4).to(t);
    expect_same(ds::where(c.to(gpu), a.to(gpu), b.to(gpu)), ds::where(c, a, b), 0,
                std::string("where ") + ds::dtype_name(t));
  }
}

TEST(CudaLayout, IntegerArithmeticAndComparisonsAreExact) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  // Past 2^24 and 2^53: a float accumulator would round these.
  const Tensor a = Tensor::from_vector<int64_t>({(1LL << 40) + 1, -7, 3, (1LL << 60) + 3}, {4});
  const Tensor b = Tensor::from_vector<int64_t>({(1LL << 40), -7, 5, 1}, {4});
  expect_same(ds::add(a.to(gpu), b.to(gpu)), ds::add(a, b), 0, "add int64");
  expect_same(ds::sub(a.to(gpu), b.to(gpu)), ds::sub(a, b), 0, "sub int64");
  expect_same(ds::ne(a.to(gpu), b.to(gpu)), ds::ne(a, b), 0, "ne int64");
  expect_same(ds::maximum(a.to(gpu), b.to(gpu)), ds::maximum(a, b), 0, "maximum int64");
  const Tensor i = Tensor::from_vector<int32_t>({2147483000, -5, 9}, {3});
  const Tensor j = Tensor::from_vector<int32_t>({600, -5, 1}, {3});
  expect_same(ds::lt(i.to(gpu), j.to(gpu)), ds::lt(i, j), 0, "lt int32");
  const Tensor k = Tensor::from_vector<int32_t>({46340, -5, 9}, {3});  // products within int32
  expect_same(ds::mul(k.to(gpu), k.to(gpu)), ds::mul(k, k), 0, "mul int32");
}

TEST(CudaExecutable, OutputsStayOnTheDeviceWhenEveryFeedIsThere) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  ds::Graph g;
  Tensor x = g.placeholder("x", {4, 8});
  g.output(ds::softmax(ds::add(x, x), -1), "y");
  const ds::Executable exe = ds::compile(g, "cuda");
  const Tensor feed = ds::random_uniform({4, 8}, 3, -1, 1);
  const Tensor want = ds::compile(g, "cpu").run({feed})[0];
  for (int run = 0; run < 4; ++run) {  // runs 2+ replay a CUDA graph: each result is its own copy
    const Tensor on_host = exe.run({feed})[0];
    EXPECT_EQ(on_host.device().kind, ds::DeviceKind::CPU);
    const Tensor on_gpu = exe.run({feed.to(gpu)})[0];
    expect_same(on_gpu, want, 1e-6, "device feeds, run " + std::to_string(run));
  }
}

// reshape/flatten in a CUDA executable are views of their input: no kernel runs for
// them (the profiler sees only the computing ops) and the results are unchanged.
TEST(CudaExecutable, ReshapesAreViewsNotCopies) {
  DS_REQUIRE_GPU();
  const Device gpu = Device::parse("cuda:0");
  ds::Graph g;
  Tensor x = g.placeholder("x", {4, 6, 8});
  Tensor h = ds::reshape(ds::add(x, x), {24, 8});
  g.output(ds::flatten(ds::mul(ds::reshape(h, {4, 48}), ds::reshape(x, {4, 48})), 0), "y");
  const ds::Executable exe = ds::compile(g, "cuda", {.opt_level = 0});
  const Tensor feed = ds::random_uniform({4, 6, 8}, 5, -1, 1);
  const Tensor want = ds::compile(g, "cpu", {.opt_level = 0}).run({feed})[0];
  std::vector<std::string> ran;
  {
    ds::Profiler prof;
    expect_same(exe.run({feed.to(gpu)})[0], want, 1e-6, "reshape chain");
    prof.stop();
    const ds::KeyAverages averages = prof.key_averages();
    for (const auto& r : averages.rows()) ran.push_back(r.name);
  }
  EXPECT_EQ(std::count(ran.begin(), ran.end(), "reshape"), 0);
  EXPECT_EQ(std::count(ran.begin(), ran.end(), "flatten"), 0);
  EXPECT_EQ(std::count(ran.begin(), ran.end(), "mul"), 1);
  for (int run = 0; run < 3; ++run)  // step by step, capture, replay
    expect_same(exe.run({feed.to(gpu)})[0], want, 1e-6, "run " + std::to_string(run));
}
