// ds::models: parameter counts and names against torchvision / nanoGPT, forward
// shapes, causality, checkpoint loading and a training step that learns.
// On a GPU (CudaModels.*): compiled for CUDA against the same model on the CPU.
// (Outputs against PyTorch with the same weights: tests/python/test_models.py.)
#include <gtest/gtest.h>

#include <cmath>

#include "ds/cuda.h"
#include "ds/models.h"
#include "ds/optim.h"

using namespace ds;

namespace {

// Built once: the big models take seconds to initialize.
const models::ResNet& shared_resnet18() {
  static const auto m = models::resnet18();
  return *m;
}
const models::ResNet& shared_resnet50() {
  static const auto m = models::resnet50();
  return *m;
}

int64_t count_params(const nn::Module& m) {
  int64_t n = 0;
  for (const Tensor& p : m.parameters()) n += p.numel();
  return n;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return max(abs(cast(a, DType::Float64) - cast(b, DType::Float64))).item<double>();
}

// Token ids [b, t] in [0, vocab), from a fixed seed.
Tensor tokens(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  return cast(floor(random_uniform({b, t}, seed, 0.0, double(vocab) - 1e-3)), DType::Int64);
}

models::GPTConfig tiny_gpt() {
  return {.block_size = 16, .vocab_size = 50, .n_layer = 2, .n_head = 2, .n_embd = 16};
}

}  // namespace

// The figures torchvision and nanoGPT print for these models.
TEST(Models, ResNetParameterCountsMatchTorchvision) {
  EXPECT_EQ(count_params(shared_resnet18()), 11'689'512);
  EXPECT_EQ(count_params(*models::resnet34()), 21'797'672);
  EXPECT_EQ(count_params(shared_resnet50()), 25'557'032);
}

TEST(Models, ResNetStateDictNamesAndShapesMatchTorchvision) {
  const auto r18 = shared_resnet18().state_dict();
  // torchvision's resnet18 state dict has 122 entries, 20 of them num_batches_tracked.
  EXPECT_EQ(r18.size(), 102u);
  EXPECT_EQ(r18.at("conv1.weight").shape(), (Shape{64, 3, 7, 7}));
  EXPECT_EQ(r18.at("layer1.0.conv1.weight").shape(), (Shape{64, 64, 3, 3}));
  EXPECT_EQ(r18.at("layer2.0.downsample.0.weight").shape(), (Shape{128, 64, 1, 1}));
  EXPECT_EQ(r18.at("layer2.0.downsample.1.running_var").shape(), (Shape{128}));
  EXPECT_EQ(r18.at("fc.weight").shape(), (Shape{1000, 512}));
  EXPECT_FALSE(r18.count("layer1.0.downsample.0.weight"));  // no shortcut conv in stage 1

  const auto r50 = shared_resnet50().state_dict();
  EXPECT_EQ(r50.size(), 267u);  // 320 in torchvision, 53 of them num_batches_tracked
  EXPECT_EQ(r50.at("layer1.0.downsample.0.weight").shape(), (Shape{256, 64, 1, 1}));
  EXPECT_EQ(r50.at("layer3.5.conv2.weight").shape(), (Shape{256, 256, 3, 3}));
  EXPECT_EQ(r50.at("layer4.2.bn3.running_mean").shape(), (Shape{2048}));
  EXPECT_EQ(r50.at("fc.weight").shape(), (Shape{1000, 2048}));
  EXPECT_EQ(r50.at("fc.bias").shape(), (Shape{1000}));
}

TEST(Models, ResNetInitializationFollowsTorchvision) {
  const models::ResNet* r = &shared_resnet50();
  // kaiming_normal_(fan_out, relu): std = sqrt(2 / (out * kh * kw)).
  const Tensor w = r->layer3->operator[](0).state_dict().at("conv2.weight");  // [256, 256, 3, 3]
  const double want = std::sqrt(2.0 / (256.0 * 9.0));
  EXPECT_NEAR(ds::std(w).item<double>(), want, 0.02 * want);
  EXPECT_NEAR(mean(w).item<double>(), 0.0, 0.02 * want);
  EXPECT_EQ(max_abs_diff(r->bn1->weight, ones({64})), 0.0);
  EXPECT_EQ(max_abs_diff(r->bn1->bias, zeros({64})), 0.0);
}

TEST(Models, ResNetForwardShapes) {
  nn::manual_seed(2);
  auto r18 = models::resnet18(7);
  r18->eval();
  EXPECT_EQ(r18->forward(random_normal({2, 3, 64, 48}, 5)).shape(), (Shape{2, 7}));
  auto r50 = models::resnet50(3);
  r50->eval();
  EXPECT_EQ(r50->forward(random_normal({1, 3, 32, 32}, 6)).shape(), (Shape{1, 3}));
  EXPECT_THROW(r18->forward(random_normal({2, 1, 32, 32}, 7)), ShapeError);
  EXPECT_THROW(models::ResNet(models::BlockKind::Basic, {2, 2, 2}), ValueError);
}

TEST(Models, Gpt2ParameterCountMatchesNanoGpt) {
  auto g = models::gpt2();
  EXPECT_EQ(count_params(*g), 124'439'808);    // lm_head tied to wte: counted once
  EXPECT_EQ(g->num_params(), 123'653'376);     // nanoGPT's "123.65M" (without wpe)
  const auto sd = g->state_dict();
  EXPECT_EQ(sd.size(), 2u + 12u * 12u + 2u);  // wte, wpe, 12 per block, ln_f
  EXPECT_FALSE(sd.count("lm_head.weight"));
  EXPECT_EQ(sd.at("transformer.wte.weight").shape(), (Shape{50257, 768}));
  EXPECT_EQ(sd.at("transformer.wpe.weight").shape(), (Shape{1024, 768}));
  EXPECT_EQ(sd.at("transformer.h.11.attn.c_attn.weight").shape(), (Shape{2304, 768}));
  EXPECT_EQ(sd.at("transformer.h.0.attn.c_proj.bias").shape(), (Shape{768}));
  EXPECT_EQ(sd.at("transformer.h.3.mlp.c_fc.weight").shape(), (Shape{3072, 768}));
  EXPECT_EQ(sd.at("transformer.h.3.mlp.c_proj.weight").shape(), (Shape{768, 3072}));
  EXPECT_EQ(sd.at("transformer.h.5.ln_2.weight").shape(), (Shape{768}));
  EXPECT_EQ(sd.at("transformer.ln_f.bias").shape(), (Shape{768}));
  // nanoGPT's init: N(0, 0.02); residual projections N(0, 0.02 / sqrt(2 * 12)).
  EXPECT_NEAR(ds::std(sd.at("transformer.h.0.mlp.c_fc.weight")).item<double>(), 0.02, 4e-4);
  EXPECT_NEAR(ds::std(sd.at("transformer.h.0.mlp.c_proj.weight")).item<double>(),
              0.02 / std::sqrt(24.0), 1e-4);
}

TEST(Models, GptForwardShapeAndErrors) {
  nn::manual_seed(3);
  auto g = models::gpt2(tiny_gpt());
  EXPECT_EQ(g->forward(tokens(3, 16, 50, 1)).shape(), (Shape{3, 16, 50}));
  EXPECT_EQ(g->forward(tokens(1, 1, 50, 2)).shape(), (Shape{1, 1, 50}));
  EXPECT_THROW(g->forward(tokens(1, 17, 50, 3)), ShapeError);  // longer than block_size
  EXPECT_THROW(g->forward(random_normal({1, 4}, 4)), TypeError);
  EXPECT_THROW(models::gpt2({.n_head = 5}), ValueError);  // 768 % 5 != 0
}

// Logits at position i depend on tokens 0..i only, and on every one of them.
TEST(Models, GptIsCausal) {
  nn::manual_seed(4);
  auto g = models::gpt2(tiny_gpt());
  const Tensor a = tokens(1, 10, 50, 7);
  Tensor b = a.clone();
  b.data<int64_t>()[6] = (a.data<int64_t>()[6] + 1) % 50;
  const Tensor la = g->forward(a), lb = g->forward(b);
  EXPECT_EQ(max_abs_diff(slice(la, 1, 0, 6), slice(lb, 1, 0, 6)), 0.0);
  for (int64_t t = 6; t < 10; ++t)
    EXPECT_GT(max_abs_diff(slice(la, 1, t, t + 1), slice(lb, 1, t, t + 1)), 1e-4) << t;
}

TEST(Models, GptTrainingStepsLowerTheLoss) {
  nn::manual_seed(5);
  auto g = models::gpt2(tiny_gpt());
  optim::AdamW adamw({.lr = 1e-2, .weight_decay = 0.0});
  optim::TrainStep step(*g, adamw, models::lm_loss);
  const Tensor seq = tokens(4, 13, 50, 8);
  const Tensor x = slice(seq, 1, 0, 12).contiguous(), y = slice(seq, 1, 1, 13).contiguous();
  const Tensor wte_before = g->transformer->wte->weight.clone();
  const double first = step.step(x, y).loss.item<double>();
  EXPECT_NEAR(first, std::log(50.0), 0.3);  // near-uniform predictions at init
  double last = first;
  for (int i = 0; i < 25; ++i) last = step.step(x, y).loss.item<double>();
  EXPECT_LT(last, 0.5 * first);
  EXPECT_GT(max_abs_diff(g->transformer->wte->weight, wte_before), 1e-3);
}

TEST(Models, ResNetTrainingStepsLowerTheLoss) {
  nn::manual_seed(6);
  auto r = models::resnet18(4);
  optim::SGD sgd({.lr = 0.05, .momentum = 0.9});
  optim::TrainStep step(*r, sgd, [](const Tensor& out, const Tensor& y) {
    return nn::cross_entropy(out, y);
  });
  const Tensor x = random_normal({8, 3, 32, 32}, 9);
  const Tensor y = Tensor::from_vector<int64_t>({0, 1, 2, 3, 0, 1, 2, 3}, {8});
  const Tensor bn_mean_before = r->bn1->running_mean.clone();
  const double first = step.step(x, y).loss.item<double>();
  double last = first;
  for (int i = 0; i < 8; ++i) last = step.step(x, y).loss.item<double>();
  EXPECT_LT(last, 0.5 * first);
  EXPECT_GT(max_abs_diff(r->bn1->running_mean, bn_mean_before), 0.0);  // train-mode BN
}

TEST(Models, LoadTorchStateDictDropsTorchOnlyEntries) {
  nn::manual_seed(7);
  auto src = models::resnet18(5);
  auto dst = models::resnet18(5);
  auto state = src->state_dict();
  state["bn1.num_batches_tracked"] = Tensor::scalar(3, DType::Int64);
  state["layer1.0.bn2.num_batches_tracked"] = Tensor::scalar(3, DType::Int64);
  models::load_torch_state_dict(*dst, state);
  src->eval();
  dst->eval();
  const Tensor x = random_normal({1, 3, 32, 32}, 10);
  EXPECT_EQ(max_abs_diff(src->forward(x), dst->forward(x)), 0.0);

  state["layer9.weight"] = Tensor::zeros({2});
  EXPECT_THROW(models::load_torch_state_dict(*dst, state), ValueError);
}

TEST(Models, LoadNanoGptStateDictWithTiedHead) {
  nn::manual_seed(8);
  auto src = models::gpt2(tiny_gpt());
  auto dst = models::gpt2(tiny_gpt());
  auto state = src->state_dict();
  state["lm_head.weight"] = state.at("transformer.wte.weight");
  for (int i = 0; i < 2; ++i)  // nanoGPT's mask buffers without flash attention
    state["transformer.h." + std::to_string(i) + ".attn.bias"] = tril(ones({1, 1, 16, 16}));
  models::load_torch_state_dict(*dst, state);
  const Tensor idx = tokens(2, 9, 50, 11);
  EXPECT_EQ(max_abs_diff(src->forward(idx), dst->forward(idx)), 0.0);

  state["lm_head.weight"] = state.at("transformer.wte.weight") * 2.0;
  EXPECT_THROW(models::load_torch_state_dict(*dst, state), ValueError);
}

// ---- the models compiled for CUDA (steps without a CUDA kernel fall back to the CPU)

class CudaModels : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  }
};

TEST_F(CudaModels, ResNet18EvalMatchesCpu) {
  nn::manual_seed(20);
  auto r = models::resnet18(10);
  // Eval-mode BN with non-trivial statistics, so a misplaced one shows.
  for (auto& [name, slot] : r->buffer_slots())
    *slot = name.find("running_var") != std::string::npos
                ? random_uniform(slot->shape(), 22, 0.5, 1.5)
                : random_normal(slot->shape(), 23, 0.0, 0.2);
  r->eval();
  const Tensor x = random_normal({2, 3, 64, 64}, 21);
  optim::EvalStep cpu(*r, "cpu"), gpu(*r, "cuda");
  const Tensor want = cpu.run(x), got = gpu.run(x).to(Device::cpu());
  // cuDNN may pick TF32 convolutions: 1e-2 of the largest logit still catches a wrong layer.
  EXPECT_LT(max_abs_diff(got, want), 1e-2 * max(abs(want)).item<double>());
}

namespace {

// Three optimizer steps on both targets; `tol` bounds the loss (relative) and
// parameter (absolute) differences.
template <typename Opt, typename Options>
void expect_gpt_steps_match_cpu(const std::string& precision, Options opts, double tol) {
  auto make = [] {
    nn::manual_seed(24);
    return models::gpt2(tiny_gpt());
  };
  auto on_cpu = make(), on_gpu = make();
  Opt opt_cpu(opts), opt_gpu(opts);
  optim::TrainStep cpu(*on_cpu, opt_cpu, models::lm_loss, {.target = "cpu", .precision = precision});
  optim::TrainStep gpu(*on_gpu, opt_gpu, models::lm_loss, {.target = "cuda", .precision = precision});
  const Tensor seq = tokens(3, 17, 50, 25);
  const Tensor x = slice(seq, 1, 0, 16).contiguous(), y = slice(seq, 1, 1, 17).contiguous();
  for (int i = 0; i < 3; ++i) {
    const double want = cpu.step(x, y).loss.item<double>();
    EXPECT_NEAR(gpu.step(x, y).loss.to(Device::cpu()).item<double>(), want, tol * want)
        << "step " << i;
  }
  const auto want = on_cpu->state_dict(), got = on_gpu->state_dict();
  for (const auto& [name, w] : want)
    EXPECT_LT(max_abs_diff(got.at(name).to(Device::cpu()), w), tol) << name;
}

}  // namespace

TEST_F(CudaModels, GptTrainingStepsMatchCpu) {
  expect_gpt_steps_match_cpu<optim::AdamW>("fp32", optim::AdamOptions{.lr = 1e-2, .weight_decay = 0.1},
                                           1e-4);
}

// bf16 products on both sides (CPU: float32 kernels on bf16-rounded inputs; CUDA:
// tensor cores with float32 accumulation), so only rounding and summation order
// differ. SGD, because Adam turns a rounding-sized gradient into a full lr step.
TEST_F(CudaModels, GptBf16TrainingStepsMatchCpu) {
  expect_gpt_steps_match_cpu<optim::SGD>("bf16", optim::SGDOptions{.lr = 0.5, .momentum = 0.9},
                                         2e-2);
}
