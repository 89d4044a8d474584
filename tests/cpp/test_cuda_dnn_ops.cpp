// The CUDA kernels of the remaining ops against the CPU float64 reference
// kernel (cuda_dnn_check.h): shape ops, casts, integer compares, activations;
// and a ResNet block and a GPT-2 block trained one step on the GPU without any
// op falling back to the CPU.
#include <algorithm>
#include <set>
#include <sstream>

#include "cuda_dnn_check.h"
#include "ds/autodiff.h"
#include "ds/nn/losses.h"
#include "ir/kernel_inventory.h"

using namespace cuda_dnn_test;

// stack, tril, triu and full are shape_kernels.cpp's; the other shape ops are
// layout_kernels.cpp's, checked here too as a training step uses them.
TEST(CudaDnnShape, ShapeOpsMatchTheReferenceForEveryDtype) {
  DS_REQUIRE_GPU();
  uint64_t seed = 13000;
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float64, DType::Int64, DType::Int32,
                  DType::Bool}) {
    const std::string w = at(t, {});
    const Tensor x = any_dtype({3, 4, 5}, ++seed, t);
    check_op("reshape", {x}, {{"shape", std::vector<int64_t>{12, 5}}}, "", 0, "reshape" + w);
    check_op("flatten", {x}, {}, "", 0, "flatten" + w);
    check_op("squeeze", {any_dtype({3, 1, 5}, ++seed, t)}, {{"axes", std::vector<int64_t>{1}}},
             "", 0, "squeeze" + w);
    check_op("permute", {x}, {{"axes", std::vector<int64_t>{2, 0, 1}}}, "", 0, "permute" + w);
    check_op("permute", {x}, {{"axes", std::vector<int64_t>{0, 2, 1}}}, "", 0,
             "permute last two" + w);
    check_op("broadcast_to", {any_dtype({3, 1, 5}, ++seed, t)},
             {{"shape", std::vector<int64_t>{2, 3, 4, 5}}}, "", 0, "broadcast_to" + w);
    check_op("slice", {x}, {{"axis", int64_t{1}}, {"start", int64_t{1}}, {"stop", int64_t{4}},
                            {"step", int64_t{2}}},
             "", 0, "slice step 2" + w);
    check_op("slice", {x}, {{"axis", int64_t{-1}}, {"start", int64_t{-3}}}, "", 0,
             "slice from the end" + w);
    const Tensor y = any_dtype({3, 2, 5}, ++seed, t);
    check_op("concat", {x, y}, {{"axis", int64_t{1}}}, "", 0, "concat" + w);
    check_op("stack", {x, x, any_dtype({3, 4, 5}, ++seed, t)}, {{"axis", int64_t{1}}}, "nvrtc", 0,
             "stack" + w);
    check_op("split", {x}, {{"sizes", std::vector<int64_t>{1, 0, 3}}, {"axis", int64_t{1}}},
             "", 0, "split" + w);
    check_op("pad", {x}, {{"pads", std::vector<int64_t>{1, 0, 0, 2}}, {"value", 1.0}}, "", 0,
             "pad" + w);
    for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{-2}}) {
      check_op("tril", {x}, {{"k", k}}, "nvrtc", 0, "tril k " + std::to_string(k) + w);
      check_op("triu", {x}, {{"k", k}}, "nvrtc", 0, "triu k " + std::to_string(k) + w);
    }
    if (t != DType::Bool)
      check_op("full", {}, {{"shape", std::vector<int64_t>{4, 3}}, {"value", 2.0}, {"dtype", t}},
               "nvrtc", 0, "full" + w);
  }
}

TEST(CudaDnnShape, CastWhereIntegerComparesAndArangeMatchTheReference) {
  DS_REQUIRE_GPU();
  const DType all[] = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16,
                       DType::Int32,   DType::Int64,   DType::Int8,    DType::UInt8, DType::Bool};
  uint64_t seed = 14000;
  for (DType from : all)
    for (DType to : all) {
      // Values in [0, 100) with fractions: every dtype holds them (int8 up to 100).
      const Tensor x = from == DType::Bool ? any_dtype({7, 9}, ++seed, from)
                                           : ds::cast(uniform({7, 9}, ++seed, DType::Float64, 0, 100),
                                                      from);
      check_op("cast", {x}, {{"dtype", to}}, "", ds::is_floating(to) ? tol(to) : 0,
               std::string("cast ") + ds::dtype_name(from) + " -> " + ds::dtype_name(to));
    }
  for (DType t : {DType::Float32, DType::BFloat16, DType::Int64, DType::Bool}) {
    const Tensor cond = any_dtype({3, 1, 5}, ++seed, DType::Bool);
    check_op("where", {cond, any_dtype({3, 4, 5}, ++seed, t), any_dtype({5}, ++seed, t)}, {},
             "", 0, "where" + at(t, {}));
  }
  for (DType t : {DType::Int64, DType::Int32, DType::Bool, DType::UInt8}) {
    const Tensor a = any_dtype({4, 5}, ++seed, t), b = any_dtype({5}, ++seed, t);
    for (const char* op : {"eq", "ne", "lt", "le", "gt", "ge"})
      // int32/int64 go to the elementwise kernels ("nvrtc"), bool and 8/16-bit to "nvrtc-int".
      check_op(op, {a, b}, {}, ds::is_integral(t) && ds::dtype_size(t) >= 4 ? "nvrtc" : "nvrtc-int",
               0, op + at(t, {4, 5}));
  }
  for (DType t : {DType::Float32, DType::Int64, DType::BFloat16})
    check_op("arange", {}, {{"start", 2.0}, {"stop", 9.0}, {"step", 0.5}, {"dtype", t}}, "nvrtc",
             tol(t), "arange" + at(t, {}));
}

TEST(CudaDnnElementwise, RemainingUnaryAndLogicalOpsMatchTheReference) {
  DS_REQUIRE_GPU();
  uint64_t seed = 15000;
  for (DType t : kFloats) {
    const std::string w = at(t, {5, 7});
    Tensor x = uniform({5, 7}, ++seed, t, -3, 3);
    x = ds::where(ds::gt(x, Tensor::scalar(2.5, t)), Tensor::scalar(NAN, t), x);  // some NaNs
    check_op("leaky_relu", {x}, {{"negative_slope", 0.2}}, "nvrtc", tol(t), "leaky_relu" + w);
    check_op("elu", {x}, {{"alpha", 1.5}}, "nvrtc", tol(t), "elu" + w);
    check_op("softplus", {x}, {{"beta", 2.0}, {"threshold", 3.0}}, "nvrtc", tol(t), "softplus" + w);
    check_op("sign", {x}, {}, "nvrtc", 0, "sign" + w);
    check_op("isnan", {x}, {}, "nvrtc", 0, "isnan" + w);
    check_op("logical_not", {ds::round(x)}, {}, "nvrtc", 0, "logical_not" + w);
    const Tensor a = ds::round(x), b = ds::round(uniform({7}, ++seed, t, -1, 1));
    check_op("logical_and", {a, b}, {}, "nvrtc", 0, "logical_and" + w);
    check_op("logical_or", {a, b}, {}, "nvrtc", 0, "logical_or" + w);
  }
  for (DType t : {DType::Int64, DType::Bool}) {
    const Tensor a = any_dtype({4, 6}, ++seed, t), b = any_dtype({6}, ++seed, t);
    check_op("isnan", {a}, {}, "nvrtc", 0, std::string("isnan ") + ds::dtype_name(t));
    check_op("logical_not", {a}, {}, "nvrtc", 0, std::string("logical_not ") + ds::dtype_name(t));
    check_op("logical_and", {a, b}, {}, "nvrtc", 0, std::string("logical_and ") + ds::dtype_name(t));
    check_op("logical_or", {a, b}, {}, "nvrtc", 0, std::string("logical_or ") + ds::dtype_name(t));
  }
}

namespace {

// The op names of the steps `exe` runs on the CPU (explain's "[cpu fallback" lines).
std::set<std::string> cpu_fallbacks(const ds::Executable& exe) {
  std::set<std::string> ops;
  std::istringstream lines(exe.explain());
  for (std::string line; std::getline(lines, line);) {
    if (line.find("[cpu fallback") == std::string::npos) continue;
    std::istringstream words(line);
    std::string id, op;
    words >> id >> op;
    ops.insert(op);
  }
  return ops;
}

// Forward, loss and gradients of every weight, compiled for the GPU and the CPU;
// every gradient must agree.
void check_training_step(const std::string& what, ds::Graph g, const Tensor& loss,
                         const std::vector<Tensor>& weights, const std::vector<Tensor>& feeds,
                         double t) {
  const std::vector<Tensor> grads = ds::grad(g, loss, weights);
  g.output(loss, "loss");
  for (size_t i = 0; i < grads.size(); ++i) g.output(grads[i], "grad" + std::to_string(i));
  const ds::Executable gpu = ds::compile(g, "cuda", {.opt_level = 0});
  std::string fallbacks;
  for (const auto& op : cpu_fallbacks(gpu)) fallbacks += " " + op;
  EXPECT_TRUE(fallbacks.empty()) << what << " runs these ops on the CPU:" << fallbacks;
  const auto want = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds);
  const auto got = gpu.run(feeds);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    expect_close(got[i], want[i], t, what + " output " + std::to_string(i));
}

}  // namespace

// A ResNet basic block with training-mode batch norm and a GPT-2 block's
// embedding + layer norm + cross-entropy: forward and backward on the GPU.
TEST(CudaDnnTraining, ResNetAndGptStepsRunOnTheGpu) {
  DS_REQUIRE_GPU();
  const auto conv = ds::kernel_impls("conv2d", ds::DeviceKind::CUDA);
  if (std::find(conv.begin(), conv.end(), "cudnn") == conv.end())
    GTEST_SKIP() << "built without cuDNN: conv2d has no cuDNN kernel";
  {
    ds::Graph g;
    const Tensor x = g.placeholder("x", {4, 3, 12, 12});
    const Tensor w1 = g.placeholder("w1", {8, 3, 3, 3}), gamma = g.placeholder("gamma", {1, 8, 1, 1});
    const Tensor beta = g.placeholder("beta", {1, 8, 1, 1}), fc = g.placeholder("fc", {5, 8});
    const Tensor target = g.placeholder("target", {4}, DType::Int64);
    Tensor h = ds::conv2d(x, w1, {}, {1}, {1});
    const Tensor mu = ds::mean(h, {0, 2, 3}, true), v = ds::var(h, {0, 2, 3}, true);
    h = ds::relu((h - mu) * ds::rsqrt(v + 1e-5) * gamma + beta);
    h = ds::max_pool2d(h, {3}, {2}, {1});
    h = ds::reshape(ds::global_avg_pool2d(h), {4, 8});
    const Tensor loss = ds::nn::cross_entropy(ds::linear(h, fc), target);
    check_training_step("resnet block", g, loss, {w1, gamma, beta, fc},
                        {uniform({4, 3, 12, 12}, 1, DType::Float32),
                         uniform({8, 3, 3, 3}, 2, DType::Float32),
                         uniform({1, 8, 1, 1}, 3, DType::Float32, 0.5, 1.5),
                         uniform({1, 8, 1, 1}, 4, DType::Float32),
                         uniform({5, 8}, 5, DType::Float32),
                         Tensor::from_vector<int64_t>({0, 4, 2, 2}, {4})},
                        1e-4);
  }
  {
    ds::Graph g;
    const Tensor tokens = g.placeholder("tokens", {6}, DType::Int64);
    const Tensor wte = g.placeholder("wte", {11, 16}), ln_w = g.placeholder("ln_w", {16});
    const Tensor ln_b = g.placeholder("ln_b", {16}), head = g.placeholder("head", {11, 16});
    const Tensor target = g.placeholder("target", {6}, DType::Int64);
    Tensor h = ds::layer_norm(ds::embedding(tokens, wte), {16}, ln_w, ln_b);
    h = ds::gelu(h, "tanh");
    const Tensor loss = ds::nn::cross_entropy(ds::linear(h, head), target);
    check_training_step("gpt block", g, loss, {wte, ln_w, ln_b, head},
                        {Tensor::from_vector<int64_t>({3, 1, 4, 1, 5, 9}, {6}),
                         uniform({11, 16}, 6, DType::Float32),
                         uniform({16}, 7, DType::Float32, 0.5, 1.5),
                         uniform({16}, 8, DType::Float32), uniform({11, 16}, 9, DType::Float32),
                         Tensor::from_vector<int64_t>({2, 7, 1, 8, 2, 8}, {6})},
                        1e-4);
  }
}
