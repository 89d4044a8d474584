// TrainStep with memory_budget: a batch over the budget runs as micro-batches
// with gradient accumulation and one update; parameters after N steps equal
// the whole-batch run's (SGD with momentum, Adam; batch norm in eval mode).
#include <gtest/gtest.h>

#include <cmath>

#include "ds/ds.h"
#include "ds/nn.h"
#include "ds/optim.h"
#include "runtime/micro_batch.h"

namespace {

using ds::Tensor;
namespace nn = ds::nn;
namespace optim = ds::optim;

constexpr int64_t kBatch = 12;

std::shared_ptr<nn::Sequential> small_cnn() {
  nn::manual_seed(11);
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(2, 4, ds::Pair{3}, ds::Pair{1}, ds::Pair{1}),
      std::make_shared<nn::BatchNorm2d>(4), nn::ReLU(), nn::MaxPool2d({2}), nn::Flatten(),
      std::make_shared<nn::Linear>(4 * 4 * 4, 3)});
}

ds::Tensor images(uint64_t seed) { return ds::random_uniform({kBatch, 2, 8, 8}, seed, -1, 1); }
ds::Tensor labels(uint64_t seed) {
  return ds::cast(ds::floor(ds::random_uniform({kBatch}, seed, 0, 2.999)), ds::DType::Int64);
}

Tensor loss_fn(const Tensor& out, const Tensor& y) { return nn::cross_entropy(out, y); }

int64_t whole_batch_bytes() {
  auto model = small_cnn();
  optim::SGD opt({.lr = 0.1});
  optim::TrainStep step(*model, opt, loss_fn);
  return ds::planned_bytes(step.executable({ds::DType::Float32, {kBatch, 2, 8, 8}},
                                           {ds::DType::Int64, {kBatch}}));
}

void expect_same_state(nn::Module& want, nn::Module& got, double tol) {
  const auto w = want.state_dict(), g = got.state_dict();
  ASSERT_EQ(w.size(), g.size());
  for (const auto& [name, t] : w) {
    const Tensor& u = g.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double a = ds::element_as_double(t, i), b = ds::element_as_double(u, i);
      ASSERT_NEAR(a, b, tol * (1 + std::abs(a))) << name << " element " << i;
    }
  }
}

// Trains a whole-batch and a budgeted copy of the CNN for `steps` steps on the
// same batches; returns the micro-batch size the budget chose.
template <class Opt, class Options>
int64_t train_both(Options o, bool train_mode_bn, double tol, int steps = 4) {
  auto full = small_cnn(), split = small_cnn();
  if (!train_mode_bn) {
    full->eval();
    split->eval();
  }
  Opt opt_full(o), opt_split(o);
  optim::TrainStep budgeted(*split, opt_split, loss_fn,
                            {.clip_grad_norm = 0.5, .memory_budget = whole_batch_bytes() / 3});
  optim::TrainStep reference(*full, opt_full, loss_fn, {.clip_grad_norm = 0.5});
  for (int s = 0; s < steps; ++s) {
    const Tensor x = images(100 + s), y = labels(200 + s);
    const auto a = reference.step(x, y), b = budgeted.step(x, y);
    EXPECT_NEAR(a.loss.item<double>(), b.loss.item<double>(), 1e-5) << "step " << s;
    EXPECT_EQ(a.output.shape(), b.output.shape());
    for (int64_t i = 0; i < a.output.numel(); ++i)
      EXPECT_NEAR(ds::element_as_double(a.output, i), ds::element_as_double(b.output, i), 1e-4);
  }
  EXPECT_EQ(opt_split.steps(), steps);
  if (!train_mode_bn) expect_same_state(*full, *split, tol);
  return budgeted.micro_batch_size({ds::DType::Float32, {kBatch, 2, 8, 8}}, {ds::DType::Int64, {kBatch}});
}

}  // namespace

TEST(TrainMicroBatch, SgdMomentumMatchesTheWholeBatch) {
  const int64_t micro =
      train_both<optim::SGD>(optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3},
                             false, 2e-5);
  EXPECT_GT(micro, 0);
  EXPECT_LT(micro, kBatch);
  EXPECT_EQ(kBatch % micro, 0);
}

TEST(TrainMicroBatch, AdamMatchesTheWholeBatch) {
  const int64_t micro = train_both<optim::Adam>(optim::AdamOptions{.lr = 1e-2}, false, 1e-4);
  EXPECT_LT(micro, kBatch);
}

// Batch norm in train mode normalizes each micro-batch with its own statistics and
// moves the running mean once per micro-batch (PyTorch with gradient accumulation).
TEST(TrainMicroBatch, BatchNormInTrainModeUpdatesRunningStatsPerMicroBatch) {
  nn::manual_seed(3);
  auto bn = std::make_shared<nn::BatchNorm2d>(2);
  nn::Sequential model({bn, nn::Flatten(), std::make_shared<nn::Linear>(2 * 3 * 3, 2)});
  optim::SGD opt({.lr = 0.0});
  optim::TrainStep full_step(model, opt, loss_fn);
  const int64_t need = ds::planned_bytes(
      full_step.executable({ds::DType::Float32, {8, 2, 3, 3}}, {ds::DType::Int64, {8}}));
  optim::TrainStep step(model, opt, loss_fn, {.memory_budget = need * 3 / 4});
  const Tensor x = ds::random_uniform({8, 2, 3, 3}, 5, 0, 4);
  const Tensor y = ds::cast(ds::floor(ds::random_uniform({8}, 6, 0, 1.999)), ds::DType::Int64);
  step.step(x, y);
  const int64_t micro = step.micro_batch_size({ds::DType::Float32, {8, 2, 3, 3}}, {ds::DType::Int64, {8}});
  ASSERT_LT(micro, 8);
  for (int64_t c = 0; c < 2; ++c) {
    double running = 0;  // momentum 0.1 from 0, one update per micro-batch
    for (int64_t start = 0; start < 8; start += micro) {
      double s = 0;
      for (int64_t n = start; n < start + micro; ++n)
        for (int64_t i = 0; i < 9; ++i) s += ds::element_as_double(x, (n * 2 + c) * 9 + i);
      running = 0.9 * running + 0.1 * s / static_cast<double>(micro * 9);
    }
    EXPECT_NEAR(ds::element_as_double(bn->running_mean, c), running, 1e-5) << "channel " << c;
  }
}

TEST(TrainMicroBatch, ABatchWhoseSingleSampleDoesNotFitFailsAtCompileTime) {
  auto model = small_cnn();
  optim::SGD opt({.lr = 0.1});
  optim::TrainStep step(*model, opt, loss_fn, {.memory_budget = 1000});
  try {
    step.step(images(1), labels(2));
    FAIL() << "expected a ValueError";
  } catch (const ds::ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("TrainStep: the training step for input float32[12, 2, 8, 8] needs"),
              std::string::npos) << msg;
    EXPECT_NE(msg.find("over the memory_budget of 1000 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("even a micro-batch of 1 sample needs"), std::string::npos) << msg;
  }
  EXPECT_EQ(opt.steps(), 0);
  EXPECT_THROW(optim::TrainStep(*model, opt, loss_fn, {.memory_budget = -1}), ds::ValueError);
}

TEST(TrainMicroBatch, ABudgetTheBatchFitsRunsItWhole) {
  auto model = small_cnn();
  optim::SGD opt({.lr = 0.1});
  optim::TrainStep step(*model, opt, loss_fn, {.memory_budget = whole_batch_bytes()});
  EXPECT_EQ(step.micro_batch_size({ds::DType::Float32, {kBatch, 2, 8, 8}}, {ds::DType::Int64, {kBatch}}),
            kBatch);
}

// fp16: the micro-batches' gradients of the scaled loss are summed, then unscaled
// and checked for Inf/NaN once, so the loss scale evolves as for the whole batch.
TEST(TrainMicroBatch, Fp16LossScalingMatchesTheWholeBatch) {
  auto full = small_cnn(), split = small_cnn();
  full->eval();
  split->eval();
  optim::SGD opt_full({.lr = 0.1}), opt_split({.lr = 0.1});
  optim::TrainStepOptions o{.precision = "fp16", .initial_loss_scale = 1024,
                            .loss_scale_growth_interval = 2};
  optim::TrainStep whole(*full, opt_full, loss_fn, o);
  o.memory_budget = whole_batch_bytes() / 3;
  optim::TrainStep budgeted(*split, opt_split, loss_fn, o);
  EXPECT_LT(budgeted.micro_batch_size({ds::DType::Float32, {kBatch, 2, 8, 8}}, {ds::DType::Int64, {kBatch}}),
            kBatch);
  for (int s = 0; s < 3; ++s) {
    const Tensor x = images(300 + s), y = labels(400 + s);
    const auto a = whole.step(x, y), b = budgeted.step(x, y);
    EXPECT_EQ(a.skipped, b.skipped);
    EXPECT_NEAR(a.loss.item<double>(), b.loss.item<double>(), 1e-2) << "step " << s;
    EXPECT_EQ(whole.loss_scale(), budgeted.loss_scale()) << "step " << s;
  }
  EXPECT_EQ(budgeted.loss_scale(), 2048);
  expect_same_state(*full, *split, 2e-3);
}

// return_output=false: the same training, no model output in the step's graph or
// its result (whole batch and micro-batches).
TEST(TrainStepOutput, WithoutTheOutputTheStepTrainsTheSame) {
  for (int64_t budget : {int64_t{0}, whole_batch_bytes() * 3 / 4}) {
    auto want = small_cnn(), got = small_cnn();
    optim::SGD opt_want({.lr = 0.1, .momentum = 0.9}), opt_got({.lr = 0.1, .momentum = 0.9});
    optim::TrainStepOptions keep, drop;
    keep.memory_budget = drop.memory_budget = budget;
    drop.return_output = false;
    optim::TrainStep a(*want, opt_want, loss_fn, keep), b(*got, opt_got, loss_fn, drop);
    for (uint64_t s = 0; s < 3; ++s) {
      const optim::StepResult ra = a.step(images(40 + s), labels(50 + s));
      const optim::StepResult rb = b.step(images(40 + s), labels(50 + s));
      EXPECT_EQ(ra.output.shape(), (ds::Shape{kBatch, 3}));
      EXPECT_FALSE(rb.output.defined());
      EXPECT_EQ(ds::element_as_double(ra.loss, 0), ds::element_as_double(rb.loss, 0));
    }
    expect_same_state(*want, *got, 0);
    if (budget == 0) {
      const auto& outs = b.executable({ds::DType::Float32, {kBatch, 2, 8, 8}},
                                      {ds::DType::Int64, {kBatch}}).outputs();
      for (const ds::IOSpec& o : outs) EXPECT_NE(o.name, "output");
    }
  }
}
