// batch_norm_train and batch_norm_train_backward: the float64 reference against
// the composed formula it replaces, the fast CPU kernels against the reference,
// gradients against central finite differences, bad inputs, and BatchNorm2d /
// a compiled conv + batch-norm training step built on the op.
#include <gtest/gtest.h>

#include <cmath>

#include "ds/autodiff.h"
#include "ds/channels_last.h"
#include "ds/ds.h"
#include "ds/nn.h"
#include "ds/optim.h"
#include "gradcheck.h"
#include "ir/ops/batch_norm_train.h"
#include "op_check.h"
#include "passes/pass_manager.h"

namespace {

using ds::DType;
using ds::Shape;
using ds::Tensor;
using ds::test::random_tensor;
using ds::test::rel_diff;
using ds::test::values;
namespace nn = ds::nn;

// Odd extents, a single value per channel (N*H*W = 1), one channel, rank 2 and 3.
// [rows, C] shapes take the column kernels (more rows than a block of them, more
// channels than a block of them).
const Shape kShapes[] = {{3, 5, 4, 3}, {1, 4, 1, 1}, {6, 1, 5, 7},     {2, 3, 17, 19}, {7, 6},
                         {4, 3, 9},    {1, 1, 1, 1}, {600, 37, 1, 1}, {300, 131}};

Tensor axis_channel(const Tensor& t, int rank) {
  Shape s(static_cast<size_t>(rank), 1);
  s[1] = t.shape()[0];
  return ds::reshape(t, s);
}

ds::Axes all_but_channel(int rank) {
  ds::Axes a = {0};
  for (int d = 2; d < rank; ++d) a.push_back(d);
  return a;
}

std::vector<Tensor> reference_outputs(const std::string& op, const std::vector<Tensor>& in,
                                      double eps) {
  const ds::OpDef& def = ds::get_op(op);
  const ds::AttrMap attrs = ds::complete_attrs(def, {{"eps", eps}}, op);
  ds::OpContext ctx{def, attrs, ds::test::types_of(in), ""};
  std::vector<Tensor> outs;
  for (const auto& t : def.infer(ctx)) outs.push_back(Tensor::empty(t.shape, t.dtype));
  def.reference(ds::KernelCall{ctx, in, outs});
  return outs;
}

TEST(BatchNormTrain, ReferenceEqualsComposedFormula) {
  for (const Shape& s : kShapes) {
    const int rank = static_cast<int>(s.size());
    const Tensor x = random_tensor(s, 1) * 3.0 + 2.0;
    const Tensor w = random_tensor({s[1]}, 2), b = random_tensor({s[1]}, 3);
    const auto out = reference_outputs("batch_norm_train", {x, w, b}, 1e-3);
    const Tensor mu = ds::mean(x, all_but_channel(rank), true);
    const Tensor v = ds::var(x, all_but_channel(rank), true);
    const Tensor y = (x - mu) * ds::rsqrt(v + 1e-3) * axis_channel(w, rank) + axis_channel(b, rank);
    EXPECT_LT(rel_diff(out[0], values(y)), 1e-12) << ds::shape_str(s);
    EXPECT_LT(rel_diff(out[1], values(mu)), 1e-12) << ds::shape_str(s);
    EXPECT_LT(rel_diff(out[2], values(v)), 1e-12) << ds::shape_str(s);
  }
}

TEST(BatchNormTrain, EmptyBatchGivesNanStatistics) {
  const auto out = reference_outputs("batch_norm_train", {Tensor::zeros({0, 3, 2, 2}, DType::Float64)}, 1e-5);
  EXPECT_EQ(out[0].numel(), 0);
  EXPECT_TRUE(std::isnan(ds::element_as_double(out[1], 0)));
  const auto fast = ds::batch_norm_train(Tensor::zeros({0, 3, 2, 2}));
  EXPECT_TRUE(std::isnan(ds::element_as_double(fast.mean, 2)));
  EXPECT_TRUE(std::isnan(ds::element_as_double(fast.var, 2)));
}

// Per dtype: the float32 accumulation of the fast kernel, then one rounding of y.
double forward_tol(DType t) {
  return t == DType::Float64 ? 1e-12 : t == DType::BFloat16 ? 1.6e-2 : t == DType::Float16 ? 2e-3 : 2e-5;
}

TEST(BatchNormTrain, FastCpuKernelMatchesReference) {
  const DType stats_of[] = {DType::Float32, DType::Float64, DType::Float32, DType::Float32};
  const DType types[] = {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16};
  for (int ti = 0; ti < 4; ++ti) {
    const DType t = types[ti], st = stats_of[ti];
    for (const Shape& s : kShapes) {
      const std::string at = std::string(ds::dtype_name(t)) + " " + ds::shape_str(s);
      // A mean far from 0 against the spread checks the accumulation's cancellation.
      const Tensor x = (random_tensor(s, 4) * 2.0 + 5.0).to(t);
      const Tensor w = random_tensor({s[1]}, 5, st), b = random_tensor({s[1]}, 6, st);
      EXPECT_EQ(ds::test::kernel_impl("batch_norm_train", {x, w, b}), "vectorized");
      const auto want = reference_outputs("batch_norm_train", {x, w, b}, 1e-5);
      const auto got = ds::batch_norm_train(x, w, b, 1e-5);
      EXPECT_LT(rel_diff(got.y, values(want[0])), forward_tol(t)) << at;
      EXPECT_LT(rel_diff(got.mean, values(want[1])), forward_tol(st)) << at;
      EXPECT_LT(rel_diff(got.var, values(want[2])), 10 * forward_tol(st)) << at;
      EXPECT_EQ(got.mean.dtype(), st);

      const Tensor dy = random_tensor(s, 7).to(t);
      const std::vector<Tensor> in = {dy, x, want[1], want[2], w};
      const auto gwant = reference_outputs("batch_norm_train_backward", in, 1e-5);
      const auto ggot = ds::apply("batch_norm_train_backward", in, {{"eps", 1e-5}});
      const double m = static_cast<double>(x.numel() / s[1]);
      EXPECT_LT(rel_diff(ggot[0], values(gwant[0])), forward_tol(t) * 10) << at;
      EXPECT_LT(rel_diff(ggot[1], values(gwant[1])), forward_tol(st) * std::sqrt(m) * 10) << at;
      EXPECT_LT(rel_diff(ggot[2], values(gwant[2])), forward_tol(st) * std::sqrt(m) * 10) << at;
    }
  }
}

TEST(BatchNormTrain, WithoutWeightAndBias) {
  const Tensor x = random_tensor({3, 4, 5, 2}, 8);
  const auto plain = ds::batch_norm_train(x);
  const auto affine = ds::batch_norm_train(x, Tensor::full({4}, 1.0, DType::Float64),
                                           Tensor::zeros({4}, DType::Float64));
  EXPECT_LT(rel_diff(plain.y, values(affine.y)), 1e-12);
  const auto only_bias = ds::batch_norm_train(x, {}, Tensor::full({4}, 0.5, DType::Float64));
  EXPECT_LT(rel_diff(only_bias.y, values(affine.y + 0.5)), 1e-12);
}

// The objective sums y, mean and var against fixed cotangents, so all three
// outputs' gradients are checked (the stats' ones are composed, y's is the op).
TEST(BatchNormTrain, GradientsMatchFiniteDifferences) {
  for (const Shape& s : {Shape{3, 2, 3, 2}, Shape{5, 3}, Shape{1, 2, 1, 1}, Shape{2, 1, 3, 3}}) {
    const Tensor cy = ds::testing::lcg_tensor(s, 30);
    const Tensor cm = ds::testing::lcg_tensor({s[1]}, 31), cv = ds::testing::lcg_tensor({s[1]}, 32);
    auto fn = [&](const std::vector<Tensor>& a) {
      const auto r = ds::batch_norm_train(a[0], a[1], a[2], 1e-3);
      return ds::sum(r.y * cy) + ds::sum(r.mean * cm) + ds::sum(r.var * cv);
    };
    ds::testing::expect_gradients_match(
        fn, {ds::testing::lcg_tensor(s, 33, -2, 2), ds::testing::lcg_tensor({s[1]}, 34, 0.5, 1.5),
             ds::testing::lcg_tensor({s[1]}, 35)},
        {0, 1, 2}, 1e-5);
    auto y_only = [&](const std::vector<Tensor>& a) {
      return ds::sum(ds::batch_norm_train(a[0], {}, {}, 1e-3).y * cy);
    };
    ds::testing::expect_gradients_match(y_only, {ds::testing::lcg_tensor(s, 36, -2, 2)}, {0}, 1e-5);
  }
}

TEST(BatchNormTrain, BackwardReferenceMatchesFiniteDifferences) {
  const Tensor x = random_tensor({3, 2, 2, 3}, 40);
  const auto fwd = reference_outputs("batch_norm_train", {x}, 1e-3);
  // d/dx of sum(dy * y(x)) with y's statistics recomputed from x.
  const Tensor dy = random_tensor(x.shape(), 41), w = random_tensor({2}, 42);
  const auto g = reference_outputs("batch_norm_train_backward", {dy, x, fwd[1], fwd[2], w}, 1e-3);
  auto objective = [&](const Tensor& xv) {
    const auto y = reference_outputs("batch_norm_train", {xv, w, Tensor::zeros({2}, DType::Float64)}, 1e-3);
    return ds::sum(y[0] * dy).item<double>();
  };
  const auto gv = values(g[0]);
  for (int64_t i = 0; i < x.numel(); ++i) {
    Tensor plus = x.clone(), minus = x.clone();
    plus.data<double>()[i] += 1e-6;
    minus.data<double>()[i] -= 1e-6;
    const double fd = (objective(plus) - objective(minus)) / 2e-6;
    EXPECT_NEAR(gv[static_cast<size_t>(i)], fd, 1e-6 * (1 + std::abs(fd))) << "element " << i;
  }
}

TEST(BatchNormTrain, BadInputsNameOpAndInput) {
  using ds::test::expect_error;
  expect_error<ds::ShapeError>([] { ds::batch_norm_train(Tensor::zeros({4})); },
                               {"batch_norm_train", "[N, C, ...]", "[4]"});
  expect_error<ds::TypeError>([] { ds::batch_norm_train(Tensor::zeros({2, 3}, DType::Int32)); },
                              {"batch_norm_train", "input x", "floating"});
  expect_error<ds::ShapeError>([] { ds::batch_norm_train(Tensor::zeros({2, 3}), Tensor::zeros({4})); },
                               {"batch_norm_train", "weight", "[3]"});
  expect_error<ds::TypeError>(
      [] { ds::batch_norm_train(Tensor::zeros({2, 3}, DType::BFloat16), Tensor::zeros({3}, DType::BFloat16)); },
      {"batch_norm_train", "weight", "float32"});
  expect_error<ds::TypeError>(
      [] {
        ds::apply("batch_norm_train_backward", {Tensor::zeros({2, 3}, DType::Float64), Tensor::zeros({2, 3}),
                                                Tensor::zeros({3}), Tensor::zeros({3})});
      },
      {"batch_norm_train_backward", "dy", "float32"});
}

TEST(BatchNormTrain, SecondDerivativeIsAClearError) {
  ds::Graph g;
  const Tensor x = g.placeholder("x", {2, 2, 2, 2}, DType::Float64);
  const Tensor loss = ds::sum(ds::square(ds::batch_norm_train(x, {}, {}, 1e-3).y * x));
  const Tensor gx = ds::grad(g, loss, {x})[0];
  ds::test::expect_error<ds::ValueError>([&] { ds::grad(g, ds::sum(gx), {x}); },
                                         {"batch_norm_train_backward", "not differentiable"});
}

// The formula BatchNorm2d composed before it used batch_norm_train.
struct Composed {
  Tensor y, running_mean, running_var;
};
Composed composed_step(const Tensor& x, const nn::BatchNorm2d& bn) {
  const int64_t c = x.shape()[1];
  const Tensor mu = ds::mean(x, {0, 2, 3}, true), v = ds::var(x, {0, 2, 3}, true);
  Tensor y = (x - mu) * ds::rsqrt(v + bn.eps) * ds::reshape(bn.weight, {1, c, 1, 1}) +
             ds::reshape(bn.bias, {1, c, 1, 1});
  const double n = static_cast<double>(x.numel() / c), unbias = n > 1 ? n / (n - 1) : 1.0;
  return {y, bn.running_mean * (1 - bn.momentum) + ds::reshape(mu, {c}) * bn.momentum,
          bn.running_var * (1 - bn.momentum) + ds::reshape(v, {c}) * (bn.momentum * unbias)};
}

TEST(BatchNormTrain, BatchNorm2dEqualsComposedFormula) {
  nn::BatchNorm2d bn(5, 1e-4, 0.3);
  bn.weight = random_tensor({5}, 60, DType::Float32);
  bn.bias = random_tensor({5}, 61, DType::Float32);
  for (int step = 0; step < 3; ++step) {
    const Tensor x = (random_tensor({4, 5, 6, 7}, 62 + step) * 1.5 + 0.5).to(DType::Float32);
    const Composed want = composed_step(x, bn);
    const Tensor y = bn(x);
    EXPECT_LT(rel_diff(y, values(want.y)), 2e-5) << "step " << step;
    EXPECT_LT(rel_diff(bn.running_mean, values(want.running_mean)), 1e-6) << "step " << step;
    EXPECT_LT(rel_diff(bn.running_var, values(want.running_var)), 1e-6) << "step " << step;
  }
}

// A conv + batch norm + ReLU + linear model: the compiled training step (SGD)
// against eager gradients through the same layers.
struct ConvBn {
  std::shared_ptr<nn::BatchNorm2d> bn = std::make_shared<nn::BatchNorm2d>(4);
  std::shared_ptr<nn::Sequential> model;
  ConvBn() {
    nn::manual_seed(17);
    model = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
        std::make_shared<nn::Conv2d>(2, 4, ds::Pair{3}, ds::Pair{1}, ds::Pair{1}), bn, nn::ReLU(),
        nn::Flatten(), std::make_shared<nn::Linear>(4 * 5 * 5, 3)});
  }
};

TEST(BatchNormTrain, CompiledConvBnStepMatchesEager) {
  ConvBn compiled, eager;
  const Tensor x = random_tensor({6, 2, 5, 5}, 70, DType::Float32);
  const Tensor t = random_tensor({6, 3}, 71, DType::Float32);
  auto loss_fn = [](const Tensor& o, const Tensor& target) { return nn::mse_loss(o, target); };
  ds::optim::SGD sgd_c({.lr = 0.1});
  ds::optim::TrainStep step(*compiled.model, sgd_c, loss_fn);
  ds::optim::SGD sgd_e({.lr = 0.1});
  auto slots = eager.model->parameter_slots();
  for (int s = 0; s < 2; ++s) {
    const double loss_c = step.step(x, t).loss.item<double>();
    (*eager.model)(x);  // the running statistics' update, on concrete tensors
    const Tensor mean0 = eager.bn->running_mean, var0 = eager.bn->running_var;
    auto [value, grads] = ds::value_and_grad(
        [&](const std::vector<Tensor>& p) {
          std::vector<Tensor> saved;
          for (size_t i = 0; i < slots.size(); ++i) {
            saved.push_back(*slots[i].second);
            *slots[i].second = p[i];
          }
          Tensor loss = loss_fn((*eager.model)(x), t);
          for (size_t i = 0; i < slots.size(); ++i) *slots[i].second = saved[i];
          eager.bn->running_mean = mean0;  // traced, not updated again
          eager.bn->running_var = var0;
          return loss;
        },
        {0, 1, 2, 3, 4, 5})(eager.model->parameters());
    EXPECT_NEAR(loss_c, value.item<double>(), 1e-5) << "step " << s;
    std::vector<Tensor*> ptrs;
    for (auto& [_, p] : slots) ptrs.push_back(p);
    sgd_e.step(ptrs, grads);
  }
  const auto pc = compiled.model->named_parameters(), pe = eager.model->named_parameters();
  for (size_t i = 0; i < pc.size(); ++i)
    EXPECT_LT(rel_diff(pc[i].second, values(pe[i].second)), 1e-5) << pc[i].first;
  const auto bc = compiled.model->named_buffers(), be = eager.model->named_buffers();
  ASSERT_EQ(bc.size(), be.size());
  for (size_t i = 0; i < bc.size(); ++i)
    EXPECT_LT(rel_diff(bc[i].second, values(be[i].second)), 1e-5) << bc[i].first;
}

TEST(BatchNormTrain, CompiledBf16StepTracksFp32) {
  ConvBn fp32, bf16;
  const Tensor x = random_tensor({6, 2, 5, 5}, 80, DType::Float32);
  const Tensor t = random_tensor({6, 3}, 81, DType::Float32);
  auto loss_fn = [](const Tensor& o, const Tensor& target) { return nn::mse_loss(o, target); };
  ds::optim::SGD sgd_a({.lr = 0.05}), sgd_b({.lr = 0.05});
  ds::optim::TrainStep step_a(*fp32.model, sgd_a, loss_fn);
  ds::optim::TrainStep step_b(*bf16.model, sgd_b, loss_fn, {.precision = "bf16"});
  for (int s = 0; s < 3; ++s) {
    const double a = step_a.step(x, t).loss.item<double>();
    const double b = step_b.step(x, t).loss.item<double>();
    ASSERT_TRUE(std::isfinite(b));
    EXPECT_NEAR(a, b, 0.03 * (1 + a)) << "step " << s;
  }
}

// The autocast graph `low` computes what the float32 graph `g` does, to bf16
// precision (relative RMS error of every output).
void expect_same_outputs_to_bf16(const ds::Graph& g, const ds::Graph& low,
                                 const std::map<std::string, Tensor>& feeds) {
  const auto want = ds::compile(g).run(feeds), got = ds::compile(low).run(feeds);
  for (const auto& [name, t] : want) {
    const auto tv = values(t), gv = values(got.at(name));
    double err = 0, scale = 0;
    for (size_t i = 0; i < tv.size(); ++i) {
      err += (gv[i] - tv[i]) * (gv[i] - tv[i]);
      scale += tv[i] * tv[i];
    }
    EXPECT_LT(std::sqrt(err / scale), 3e-2) << name;
  }
}

// Under bf16 autocast the convolution's output reaches batch norm as a cast up to
// float32; the pass hands batch_norm_train (and its backward) the bf16 value.
TEST(BatchNormTrain, AutocastFeedsTheConvolutionsBf16Output) {
  ds::Graph g;
  const Tensor x = g.placeholder("x", {4, 2, 5, 5}), w = g.placeholder("w", {3, 2, 3, 3});
  const Tensor gamma = g.placeholder("gamma", {3}), beta = g.placeholder("beta", {3});
  const auto bn = ds::batch_norm_train(ds::conv2d(x, w), gamma, beta);
  const Tensor loss = ds::sum(ds::square(ds::relu(bn.y)));
  const auto grads = ds::grad(g, loss, {x, w, gamma, beta});
  g.output(loss, "loss");
  for (size_t i = 0; i < grads.size(); ++i) g.output(grads[i], "g" + std::to_string(i));
  const ds::Graph low = ds::passes::autocast(g, DType::BFloat16);
  int forward = 0, backward = 0;
  for (const auto& n : low.nodes()) {
    if (n.op->name == "batch_norm_train") {
      EXPECT_EQ(low.type(n.inputs[0]).dtype, DType::BFloat16);
      EXPECT_EQ(n.outputs[1].dtype, DType::Float32);
      ++forward;
    }
    if (n.op->name == "batch_norm_train_backward") {
      EXPECT_EQ(low.type(n.inputs[0]).dtype, DType::BFloat16);
      EXPECT_EQ(low.type(n.inputs[1]).dtype, DType::BFloat16);
      ++backward;
    }
  }
  EXPECT_EQ(forward, 1);
  EXPECT_EQ(backward, 1);
  // The rewritten graph computes what the float32 one does, to bf16 precision.
  const std::map<std::string, Tensor> feeds = {
      {"x", random_tensor({4, 2, 5, 5}, 90, DType::Float32)},
      {"w", random_tensor({3, 2, 3, 3}, 91, DType::Float32)},
      {"gamma", random_tensor({3}, 92, DType::Float32) + 1.5},
      {"beta", random_tensor({3}, 93, DType::Float32)}};
  expect_same_outputs_to_bf16(g, low, feeds);
}

// Channels-last BatchNorm2d views the convolution's output as [N*H*W, C, 1, 1]:
// the reshape between the cast up and batch norm does not hide the bf16 value.
TEST(BatchNormTrain, AutocastSeesThroughAReshapeAfterTheCast) {
  ds::Graph g;
  const Tensor x = g.placeholder("x", {4, 5, 5, 2}), w = g.placeholder("w", {3, 2, 3, 3});
  const Tensor gamma = g.placeholder("gamma", {3}), beta = g.placeholder("beta", {3});
  const Tensor y = ds::conv2d_channels_last(x, w);  // [4, 3, 3, 3] (N, H, W, C)
  const auto bn = ds::batch_norm_train(ds::reshape(y, {-1, 3, 1, 1}), gamma, beta);
  const Tensor loss = ds::sum(ds::square(ds::relu(ds::reshape(bn.y, {4, 3, 3, 3}))));
  const auto grads = ds::grad(g, loss, {x, w, gamma, beta});
  g.output(loss, "loss");
  for (size_t i = 0; i < grads.size(); ++i) g.output(grads[i], "g" + std::to_string(i));
  const ds::Graph low = ds::passes::autocast(g, DType::BFloat16);
  int seen = 0;
  for (const auto& n : low.nodes())
    if (n.op->name == "batch_norm_train" || n.op->name == "batch_norm_train_backward") {
      EXPECT_EQ(low.type(n.inputs[n.op->name == "batch_norm_train" ? 0 : 1]).dtype, DType::BFloat16)
          << n.op->name;
      ++seen;
    }
  EXPECT_EQ(seen, 2);
  const std::map<std::string, Tensor> feeds = {
      {"x", random_tensor({4, 5, 5, 2}, 94, DType::Float32)},
      {"w", random_tensor({3, 2, 3, 3}, 95, DType::Float32)},
      {"gamma", random_tensor({3}, 96, DType::Float32) + 1.5},
      {"beta", random_tensor({3}, 97, DType::Float32)}};
  expect_same_outputs_to_bf16(g, low, feeds);
}

}  // namespace
