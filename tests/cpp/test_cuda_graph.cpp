// CUDA graphs of compiled executables: the second run captures, later runs
// replay with new feeds and give the step-by-step results; a capture that meets
// a host synchronization falls back; CPU steps and symbolic shapes keep graphs off.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backends/cuda/device_allocator.h"
#include "codegen/kernel_ir.h"
#include "ds/cuda.h"
#include "ds/ds.h"
#include "ds/nn.h"
#include "ds/optim.h"
#include "ir/ops/attention.h"
#include "op_check.h"

using ds::DType;
using ds::Tensor;

#define DS_REQUIRE_GPU()             \
  if (ds::cuda::device_count() == 0) \
  GTEST_SKIP() << "no CUDA device: " << ds::cuda::unavailable_reason()

namespace {

// matmul -> fused gelu(x + b) * s region -> attention -> softmax -> sum: cuBLASLt,
// generated, flash and row kernels in one launch sequence.
ds::Graph model() {
  ds::Graph g;
  Tensor x = g.placeholder("x", {2, 4, 32, 16});
  Tensor w = g.placeholder("w", {16, 16});
  Tensor b = g.placeholder("b", {16});
  Tensor h = ds::matmul(x, w);
  ds::codegen::KernelIR ir;
  ir.shape = {2, 4, 32, 16};
  ir.inputs = {{DType::Float32, {2, 4, 32, 16}}, {DType::Float32, {16}}};
  ir.insts = {{"add", {}, {0, 1}, DType::Float32},
              {"gelu", {}, {2}, DType::Float32},
              {"mul", {}, {3, 3}, DType::Float32}};
  ir.outputs = {4};
  Tensor act = g.add("fused", {h, b}, {{"region", ir.str()}})[0];
  Tensor att = ds::scaled_dot_product_attention(act, h, x, true);
  g.output(ds::softmax(att, -1), "p");
  g.output(ds::sum(att, {-1}), "s");
  return g;
}

std::vector<Tensor> feeds(uint32_t seed) {
  return {ds::test::random_tensor({2, 4, 32, 16}, seed).to(DType::Float32),
          ds::test::random_tensor({16, 16}, seed + 1).to(DType::Float32) * 0.5,
          ds::test::random_tensor({16}, seed + 2).to(DType::Float32)};
}

void expect_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t o = 0; o < want.size(); ++o) {
    ASSERT_EQ(got[o].shape(), want[o].shape()) << what;
    const auto g = ds::test::values(got[o]), w = ds::test::values(want[o]);
    for (size_t i = 0; i < w.size(); ++i)
      ASSERT_LE(std::abs(g[i] - w[i]), tol * (1 + std::abs(w[i])))
          << what << " output " << o << " element " << i << ": got " << g[i] << ", want " << w[i];
  }
}

// Compiles for cuda with DS_CUDA_GRAPHS set to `graphs` ("0" turns them off).
ds::Executable compile_cuda(const ds::Graph& g, const char* graphs) {
  const char* old = std::getenv("DS_CUDA_GRAPHS");
  const std::string saved = old ? old : "";
  ::setenv("DS_CUDA_GRAPHS", graphs, 1);
  ds::Executable exe = ds::compile(g, "cuda", {.opt_level = 0});
  if (old) ::setenv("DS_CUDA_GRAPHS", saved.c_str(), 1); else ::unsetenv("DS_CUDA_GRAPHS");
  return exe;
}

}  // namespace

TEST(CudaGraph, ReplaysGiveTheStepByStepResultsForNewFeeds) {
  DS_REQUIRE_GPU();
  const ds::Graph g = model();
  const ds::Executable graphed = compile_cuda(g, "1");
  const ds::Executable plain = compile_cuda(g, "0");
  EXPECT_NE(graphed.explain().find("cuda graph: on"), std::string::npos) << graphed.explain();
  EXPECT_NE(plain.explain().find("cuda graph: off: DS_CUDA_GRAPHS=0"), std::string::npos)
      << plain.explain();
  const ds::Executable cpu = ds::compile(g, "cpu", {.opt_level = 0});
  for (uint32_t run = 0; run < 5; ++run) {
    const auto f = feeds(10 * run + 1);
    const auto got = graphed.run(f);
    const std::string what = "run " + std::to_string(run);
    // The same kernels in the same order: the graph changes nothing in the numbers.
    expect_close(got, plain.run(f), 1e-6, what + " vs step by step");
    expect_close(got, cpu.run(f), 1e-4, what + " vs the CPU");
  }
  const ds::ExecutableStats s = graphed.stats();
  EXPECT_EQ(s.cuda_graph_captures, 1);
  EXPECT_EQ(s.cuda_graph_replays, 4);  // runs 2..5; run 1 went step by step
  EXPECT_EQ(plain.stats().cuda_graph_replays, 0);
  EXPECT_NE(graphed.explain().find("cuda graph: on: captured"), std::string::npos);
}

TEST(CudaGraph, AHostSynchronizationInsideFallsBackToStepByStep) {
  DS_REQUIRE_GPU();
  // The seed input lives on the device: the random kernel reads it back with a
  // stream synchronization, which a capture cannot hold.
  ds::Graph g;
  Tensor seed = g.placeholder("seed", {}, DType::Int64);
  Tensor x = g.placeholder("x", {1000});
  Tensor r = g.add("random_uniform", {seed},
                   {{"shape", std::vector<int64_t>{1000}}, {"low", 0.0}, {"high", 1.0}})[0];
  g.output(r * x, "y");
  const ds::Executable exe = compile_cuda(g, "1");
  const ds::Executable cpu = ds::compile(g, "cpu", {.opt_level = 0});
  for (int64_t run = 0; run < 3; ++run) {
    const std::vector<Tensor> f = {Tensor::from_vector<int64_t>({run + 7}, {}),
                                   ds::test::random_tensor({1000}, 3).to(DType::Float32)};
    expect_close(exe.run(f), cpu.run(f), 1e-6, "run " + std::to_string(run));
  }
  EXPECT_EQ(exe.stats().cuda_graph_captures, 0);
  EXPECT_EQ(exe.stats().cuda_graph_replays, 0);
  EXPECT_NE(exe.explain().find("cuda graph: off: the capture failed"), std::string::npos)
      << exe.explain();
}

TEST(CudaGraph, CpuStepsAndSymbolicShapesKeepGraphsOff) {
  DS_REQUIRE_GPU();
  ds::Graph g;  // float64 linear with a bias runs on the CPU (no cuBLASLt epilogue)
  Tensor x = g.placeholder("x", {5, 8}, DType::Float64), w = g.placeholder("w", {3, 8}, DType::Float64);
  g.output(ds::linear(x, w, g.placeholder("b", {3}, DType::Float64)), "y");
  const std::string plan = compile_cuda(g, "1").explain();
  EXPECT_NE(plan.find("cuda graph: off:"), std::string::npos) << plan;
  EXPECT_NE(plan.find("runs on the CPU"), std::string::npos) << plan;
  ds::Graph d;
  d.output(ds::exp(d.placeholder("x", {ds::dyn, 4})), "y");
  const std::string dyn_plan = compile_cuda(d, "1").explain();
  EXPECT_NE(dyn_plan.find("cuda graph: off: symbolic shapes"), std::string::npos) << dyn_plan;
}

TEST(CudaGraph, UnloadedKernelsAreCapturedAgain) {
  DS_REQUIRE_GPU();
  const ds::Graph g = model();
  const ds::Executable exe = compile_cuda(g, "1");
  const ds::Executable cpu = ds::compile(g, "cpu", {.opt_level = 0});
  exe.run(feeds(1));
  exe.run(feeds(2));
  ASSERT_EQ(exe.stats().cuda_graph_captures, 1);
  ds::cuda::clear_kernel_memory_cache();  // the captured graph's kernels are gone
  for (uint32_t run = 3; run < 6; ++run)
    expect_close(exe.run(feeds(run)), cpu.run(feeds(run)), 1e-4, "after the reload");
  EXPECT_EQ(exe.stats().cuda_graph_captures, 2);
}

// The batched copy under the replays: more tensors than one launch's table,
// sizes that are not 16-byte multiples, empty and host tensors (copied one by one).
TEST(CudaGraph, BatchedCopyCopiesEveryPairExactly) {
  DS_REQUIRE_GPU();
  const ds::Device gpu = ds::Device::cuda(0);
  std::vector<Tensor> src, dst, want;
  for (int i = 0; i < 300; ++i) {
    const int64_t n = i % 7 == 0 ? 0 : (i * 37) % 1000 + 1;  // odd byte counts too
    const DType t = i % 3 == 0 ? DType::BFloat16 : DType::Float32;
    const Tensor host = ds::random_uniform({n}, 100 + i, -1, 1).to(t);
    want.push_back(host);
    src.push_back(i % 50 == 1 ? host : host.to(gpu));  // a few come from the host
    dst.push_back(Tensor::empty({n}, t, gpu));
  }
  ds::cuda::copy_batch(src, dst);
  for (size_t i = 0; i < src.size(); ++i) {
    const Tensor back = dst[i].to(ds::Device::cpu());
    ASSERT_EQ(back.nbytes(), want[i].nbytes()) << "copy " << i;
    EXPECT_EQ(std::memcmp(back.raw_data(), want[i].raw_data(), back.nbytes()), 0) << "copy " << i;
  }
}

// A training step replayed as a graph (parameters and AdamW state copied in and
// out by the batched copies) trains exactly as the step-by-step runs do.
TEST(CudaGraph, ReplayedTrainingStepsMatchStepByStepOnes) {
  DS_REQUIRE_GPU();
  auto make = [] {
    auto m = std::make_shared<ds::nn::Sequential>(std::vector<ds::nn::ModulePtr>{
        std::make_shared<ds::nn::Linear>(12, 33), ds::nn::ReLU(),
        std::make_shared<ds::nn::Linear>(33, 5)});
    uint64_t seed = 70;
    for (auto& [_, p] : m->parameter_slots())
      *p = ds::random_normal(p->shape(), seed++, 0.0, 0.3);
    return m;
  };
  auto mse = [](const Tensor& out, const Tensor& y) { return ds::nn::mse_loss(out, y); };
  std::vector<std::vector<double>> losses(2);
  std::vector<std::shared_ptr<ds::nn::Sequential>> models;
  for (const char* graphs : {"1", "0"}) {
    auto model = make();
    models.push_back(model);
    ds::optim::AdamW opt;
    ds::optim::TrainStep step(*model, opt, mse, {.target = "cuda"});
    const char* old = std::getenv("DS_CUDA_GRAPHS");
    const std::string saved = old ? old : "";
    ::setenv("DS_CUDA_GRAPHS", graphs, 1);
    for (int i = 0; i < 6; ++i) {  // step 1 compiles; 2 captures; 3.. replay
      const Tensor x = ds::random_normal({8, 12}, 80 + i), y = ds::random_normal({8, 5}, 90 + i);
      losses[graphs[0] == '1' ? 0 : 1].push_back(
          step.step(x, y).loss.to(ds::Device::cpu()).item<double>());
    }
    if (old) ::setenv("DS_CUDA_GRAPHS", saved.c_str(), 1); else ::unsetenv("DS_CUDA_GRAPHS");
  }
  for (size_t i = 0; i < losses[0].size(); ++i)
    EXPECT_NEAR(losses[0][i], losses[1][i], 1e-6 * (1 + std::abs(losses[1][i]))) << "step " << i;
  const auto a = models[0]->parameter_slots(), b = models[1]->parameter_slots();
  for (size_t i = 0; i < a.size(); ++i) {
    const auto va = ds::test::values(a[i].second->to(ds::Device::cpu()));
    const auto vb = ds::test::values(b[i].second->to(ds::Device::cpu()));
    for (size_t j = 0; j < va.size(); ++j)
      ASSERT_NEAR(va[j], vb[j], 1e-6) << a[i].first << " element " << j;
  }
}
