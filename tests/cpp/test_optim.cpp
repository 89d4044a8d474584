#include <gtest/gtest.h>

#include <cmath>

#include "ds/autodiff.h"
#include "ds/ds.h"
#include "ds/nn.h"
#include "ds/optim.h"

namespace {

using ds::Tensor;
namespace nn = ds::nn;
namespace optim = ds::optim;

double at(const Tensor& t, int64_t i) { return ds::element_as_double(t, i); }

// Two steps of an optimizer on p = [1, -2] with gradients g1 then g2 (float64).
std::vector<double> two_steps(optim::Optimizer& opt) {
  Tensor p = Tensor::from_vector<double>({1.0, -2.0}, {2});
  opt.step({&p}, {Tensor::from_vector<double>({0.5, 0.25}, {2})});
  opt.step({&p}, {Tensor::from_vector<double>({-1.0, 2.0}, {2})});
  return {at(p, 0), at(p, 1)};
}

TEST(Optim, SgdMatchesHandComputedUpdates) {
  optim::SGD plain({.lr = 0.1});
  auto p = two_steps(plain);
  EXPECT_NEAR(p[0], 1 - 0.1 * 0.5 - 0.1 * -1.0, 1e-12);
  EXPECT_NEAR(p[1], -2 - 0.1 * 0.25 - 0.1 * 2.0, 1e-12);

  optim::SGD mom({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
  p = two_steps(mom);
  {
    double x = 1, buf = 0;
    for (double g : {0.5, -1.0}) {
      const double d = g + 0.01 * x;
      buf = 0.9 * buf + d;
      x -= 0.1 * buf;
    }
    EXPECT_NEAR(p[0], x, 1e-12);
  }
  optim::SGD nes({.lr = 0.1, .momentum = 0.9, .nesterov = true});
  p = two_steps(nes);
  {
    double x = -2, buf = 0;
    for (double g : {0.25, 2.0}) {
      buf = 0.9 * buf + g;
      x -= 0.1 * (g + 0.9 * buf);
    }
    EXPECT_NEAR(p[1], x, 1e-12);
  }
  EXPECT_THROW(optim::SGD({.lr = 0.1, .nesterov = true}), ds::ValueError);
}

double adam_reference(double x, const std::vector<double>& grads, double lr, double wd,
                      bool decoupled) {
  double m = 0, v = 0;
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  int t = 0;
  for (double g : grads) {
    ++t;
    if (decoupled)
      x *= 1 - lr * wd;
    else
      g += wd * x;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double mhat = m / (1 - std::pow(b1, t)), vhat = v / (1 - std::pow(b2, t));
    x -= lr * mhat / (std::sqrt(vhat) + eps);
  }
  return x;
}

TEST(Optim, AdamAndAdamWMatchHandComputedUpdates) {
  optim::Adam adam({.lr = 0.01, .weight_decay = 0.1});
  auto p = two_steps(adam);
  EXPECT_NEAR(p[0], adam_reference(1.0, {0.5, -1.0}, 0.01, 0.1, false), 1e-12);
  EXPECT_NEAR(p[1], adam_reference(-2.0, {0.25, 2.0}, 0.01, 0.1, false), 1e-12);
  EXPECT_EQ(adam.steps(), 2);

  optim::AdamW adamw({.lr = 0.01, .weight_decay = 0.1});
  p = two_steps(adamw);
  EXPECT_NEAR(p[0], adam_reference(1.0, {0.5, -1.0}, 0.01, 0.1, true), 1e-12);
  EXPECT_NEAR(p[1], adam_reference(-2.0, {0.25, 2.0}, 0.01, 0.1, true), 1e-12);
  EXPECT_THROW(optim::Adam({.beta1 = 1.0}), ds::ValueError);
}

TEST(Optim, ClipGradNormScalesToMaxNorm) {
  auto [clipped, norm] = optim::clip_grad_norm({Tensor{3, 0}, Tensor{4}}, 1.0);
  EXPECT_NEAR(norm.item<double>(), 5.0, 1e-6);
  EXPECT_NEAR(at(clipped[0], 0), 3.0 / (5 + 1e-6), 1e-6);
  EXPECT_NEAR(at(clipped[1], 0), 4.0 / (5 + 1e-6), 1e-6);
  auto [kept, _] = optim::clip_grad_norm({Tensor{0.3f, 0.4f}}, 1.0);
  EXPECT_FLOAT_EQ(at(kept[0], 1), 0.4f);
}

TEST(Optim, SchedulesMatchPyTorchFormulas) {
  optim::StepLR step(0.1, 3, 0.5);
  EXPECT_DOUBLE_EQ(step.lr(2), 0.1);
  EXPECT_DOUBLE_EQ(step.lr(3), 0.05);
  EXPECT_DOUBLE_EQ(step.lr(7), 0.025);
  optim::CosineAnnealingLR cos(0.1, 10, 0.001);
  EXPECT_DOUBLE_EQ(cos.lr(0), 0.1);
  EXPECT_NEAR(cos.lr(5), 0.001 + 0.099 / 2, 1e-15);
  EXPECT_DOUBLE_EQ(cos.lr(10), 0.001);
  optim::LinearWarmup warm(std::make_shared<optim::StepLR>(0.1, 100), 4, 0.0);
  EXPECT_DOUBLE_EQ(warm.lr(0), 0.0);
  EXPECT_DOUBLE_EQ(warm.lr(2), 0.05);
  EXPECT_DOUBLE_EQ(warm.lr(4), 0.1);
  // OneCycleLR(max_lr=0.1, total_steps=100): PyTorch gives 0.004 at 0, the peak at
  // step 29, and max_lr / 25 / 1e4 at the last step.
  optim::OneCycleLR one(0.1, 100);
  EXPECT_NEAR(one.lr(0), 0.004, 1e-15);
  EXPECT_NEAR(one.lr(29), 0.1, 1e-15);
  EXPECT_NEAR(one.lr(99), 4e-7, 1e-15);
  EXPECT_GT(one.lr(50), one.lr(80));
  EXPECT_THROW(one.lr(100), ds::ValueError);
  optim::SGD opt({.lr = 1.0});
  step.apply(opt, 3);
  EXPECT_DOUBLE_EQ(opt.lr(), 0.05);
}

// Four Gaussian blobs in 2-D, labels 0..3.
std::pair<Tensor, Tensor> blobs() {
  Tensor x = ds::random_normal({64, 2}, 11, 0.0, 0.3);
  Tensor y = Tensor::empty({64}, ds::DType::Int64);
  for (int64_t i = 0; i < 64; ++i) {
    const int64_t c = i % 4;
    y.data<int64_t>()[i] = c;
    x.data<float>()[2 * i] += c % 2 ? 1.5f : -1.5f;
    x.data<float>()[2 * i + 1] += c / 2 ? 1.5f : -1.5f;
  }
  return {x, y};
}

TEST(TrainStep, TinyModelLossDecreases) {
  nn::manual_seed(3);
  nn::Sequential model({std::make_shared<nn::Linear>(2, 16), nn::Tanh(),
                        std::make_shared<nn::Linear>(16, 4)});
  optim::Adam adam({.lr = 0.05});
  optim::TrainStep step(model, adam, [](const Tensor& out, const Tensor& y) {
    return nn::cross_entropy(out, y);
  });
  auto [x, y] = blobs();
  const double first = step.step(x, y).loss.item<double>();
  double last = first;
  for (int i = 0; i < 60; ++i) last = step.step(x, y).loss.item<double>();
  EXPECT_LT(last, 0.2 * first);
  EXPECT_EQ(adam.steps(), 61);
  // One executable per input signature, reused by every step.
  const ds::TensorType xt{x.dtype(), x.shape()}, yt{y.dtype(), y.shape()};
  EXPECT_EQ(&step.executable(xt, yt), &step.executable(xt, yt));
  EXPECT_GT(step.executable(xt, yt).stats().kernels, 10);
  optim::EvalStep eval(model);
  EXPECT_NEAR(nn::cross_entropy(eval.run(x), y).item<double>(), last, 0.05);
}

TEST(TrainStep, CompiledStepEqualsEagerGradAndOptimizerStep) {
  auto make = [] {
    nn::manual_seed(9);
    return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
        std::make_shared<nn::Linear>(2, 5), nn::ReLU(), std::make_shared<nn::Linear>(5, 4)});
  };
  auto [x, y] = blobs();
  auto compiled = make(), eager = make();

  optim::SGD sgd_c({.lr = 0.1, .momentum = 0.9});
  optim::TrainStep step(*compiled, sgd_c, [](const Tensor& o, const Tensor& t) {
    return nn::cross_entropy(o, t);
  }, {.clip_grad_norm = 0.5});
  step.step(x, y);
  step.step(x, y);

  optim::SGD sgd_e({.lr = 0.1, .momentum = 0.9});
  auto slots = eager->parameter_slots();
  for (int s = 0; s < 2; ++s) {
    auto grads = ds::grad([&](const std::vector<Tensor>& p) {
      std::vector<Tensor> saved;
      for (size_t i = 0; i < slots.size(); ++i) {
        saved.push_back(*slots[i].second);
        *slots[i].second = p[i];
      }
      Tensor loss = nn::cross_entropy((*eager)(x), y);
      for (size_t i = 0; i < slots.size(); ++i) *slots[i].second = saved[i];
      return loss;
    }, {0, 1, 2, 3})(eager->parameters());
    grads = optim::clip_grad_norm(grads, 0.5).first;
    std::vector<Tensor*> ptrs;
    for (auto& [_, p] : slots) ptrs.push_back(p);
    sgd_e.step(ptrs, grads);
  }
  auto pc = compiled->named_parameters(), pe = eager->named_parameters();
  for (size_t i = 0; i < pc.size(); ++i)
    for (int64_t k = 0; k < pc[i].second.numel(); ++k)
      EXPECT_NEAR(at(pc[i].second, k), at(pe[i].second, k), 1e-6) << pc[i].first;
}

TEST(TrainStep, BuffersUpdateEachStep) {
  nn::manual_seed(4);
  auto bn = std::make_shared<nn::BatchNorm2d>(2);
  auto drop = std::make_shared<nn::Dropout>(0.5, 77);
  nn::Sequential model({std::make_shared<nn::Conv2d>(1, 2, ds::Pair{1}), bn, drop, nn::Flatten()});
  optim::SGD sgd({.lr = 0.01});
  optim::TrainStep step(model, sgd, [](const Tensor& o, const Tensor& t) {
    return nn::mse_loss(o, t);
  });
  Tensor x = ds::random_normal({4, 1, 3, 3}, 5, 2.0, 1.0);
  Tensor t = Tensor::zeros({4, 18});
  const int64_t seed0 = drop->seed.item<int64_t>();
  Tensor out1 = step.step(x, t).output;
  EXPECT_FALSE(bn->running_mean.is_symbolic());
  EXPECT_NE(at(bn->running_mean, 0), 0.0);
  EXPECT_EQ(drop->seed.item<int64_t>(), seed0 + 1);
  Tensor out2 = step.step(x, t).output;
  EXPECT_EQ(drop->seed.item<int64_t>(), seed0 + 2);
  int64_t differ = 0;  // a fresh dropout mask each step
  for (int64_t i = 0; i < out1.numel(); ++i) differ += (at(out1, i) == 0) != (at(out2, i) == 0);
  EXPECT_GT(differ, 0);
}

}  // namespace
