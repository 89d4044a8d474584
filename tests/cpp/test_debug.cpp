#include <gtest/gtest.h>

#include <cmath>

#include "ds/debug.h"
#include "ds/ds.h"
#include "ds/nn.h"
#include "ds/optim.h"

namespace {

using ds::Tensor;
namespace nn = ds::nn;
namespace optim = ds::optim;
namespace debug = ds::debug;

// log(x) as a layer, so a negative activation makes a NaN inside the model.
class Log : public nn::Module {
 public:
  Tensor forward(const Tensor& x) override { return ds::log(x); }
  std::string name() const override { return "Log"; }
};

Tensor mse(const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); }

TEST(DebugStats, MeanStdMinMaxNormAndNonFiniteCount) {
  const Tensor t = Tensor::from_vector<float>({1, -2, 3, NAN, INFINITY, 2}, {2, 3});
  const debug::TensorStats s = debug::tensor_stats(t);
  EXPECT_EQ(s.numel, 6);
  EXPECT_EQ(s.nonfinite, 2);
  EXPECT_DOUBLE_EQ(s.mean, 1.0);
  EXPECT_DOUBLE_EQ(s.std, std::sqrt((0.0 + 9 + 4 + 1) / 4));
  EXPECT_DOUBLE_EQ(s.min, -2.0);
  EXPECT_DOUBLE_EQ(s.max, 3.0);
  EXPECT_DOUBLE_EQ(s.norm, std::sqrt(1.0 + 4 + 9 + 4));
  EXPECT_FALSE(debug::all_finite(t));
  EXPECT_TRUE(debug::all_finite(Tensor::from_vector<double>({1, 2}, {2})));
  EXPECT_EQ(debug::tensor_stats(Tensor::zeros({0})).numel, 0);
}

// The probe's gradients agree with the update the TrainStep applied (SGD:
// w' = w - lr g), activations with an eager forward, and the update ratio is
// lr |g| / |w|.
TEST(Debugger, StatisticsMatchTheTrainStepsUpdateAndEagerForward) {
  nn::manual_seed(5);
  nn::Sequential model({std::make_shared<nn::Linear>(3, 4), nn::Tanh(),
                        std::make_shared<nn::Linear>(4, 2)});
  const double lr = 0.1;
  optim::SGD sgd({.lr = lr});
  optim::TrainStep step(model, sgd, mse);
  debug::Debugger dbg(model, step, mse, nullptr, {.every = 2});
  const Tensor x = Tensor::from_vector<float>({0.5f, -1, 2, 1, 0.25f, -0.5f, 3, 1, -2, 0, 1, 1},
                                              {4, 3});
  const Tensor y = Tensor::from_vector<float>({1, 0, 0, 1, 1, 1, -1, 0}, {4, 2});

  const Tensor w_before = model.named_parameters()[0].second;
  const Tensor act0 = model[0].forward(x);
  dbg.step(x, y);
  const Tensor w_after = model.named_parameters()[0].second;
  ASSERT_EQ(model.named_parameters()[0].first, "0.weight");

  const Tensor g = ds::div(ds::sub(w_before, w_after), Tensor::scalar(lr));
  const debug::TensorStats gs = debug::tensor_stats(g);
  const auto& st = dbg.last_stats();
  EXPECT_NEAR(st.at("grads/0.weight/mean"), gs.mean, 1e-5);
  EXPECT_NEAR(st.at("grads/0.weight/std"), gs.std, 1e-5);
  EXPECT_NEAR(st.at("grads/0.weight/min"), gs.min, 1e-5);
  EXPECT_NEAR(st.at("grads/0.weight/max"), gs.max, 1e-5);
  EXPECT_NEAR(st.at("grads/0.weight/norm"), gs.norm, 1e-5);
  const debug::TensorStats ws = debug::tensor_stats(w_before);
  EXPECT_DOUBLE_EQ(st.at("params/0.weight/mean"), ws.mean);
  EXPECT_DOUBLE_EQ(st.at("params/0.weight/norm"), ws.norm);
  EXPECT_NEAR(st.at("update_ratio/0.weight"), lr * gs.norm / ws.norm, 1e-6);
  const debug::TensorStats as = debug::tensor_stats(act0);
  EXPECT_NEAR(st.at("activations/0:Linear/mean"), as.mean, 1e-6);
  EXPECT_NEAR(st.at("activations/0:Linear/max"), as.max, 1e-6);
  EXPECT_TRUE(st.count("activations/1:Tanh/std"));
  EXPECT_TRUE(st.count("activations/output/norm"));
  EXPECT_TRUE(st.count("grads/2.bias/norm"));
  EXPECT_EQ(dbg.activation_names(),
            (std::vector<std::string>{"0:Linear", "1:Tanh", "2:Linear", "output"}));

  // Step 2 is not a debug step: the statistics stay those of step 1.
  const double mean1 = st.at("params/0.weight/mean");
  dbg.step(x, y);
  EXPECT_DOUBLE_EQ(dbg.last_stats().at("params/0.weight/mean"), mean1);
  dbg.step(x, y);  // step 3 is
  EXPECT_NE(dbg.last_stats().at("params/0.weight/mean"), mean1);
}

TEST(Debugger, NamesTheLayerWhoseOpFirstProducedANaN) {
  nn::Sequential model({std::make_shared<nn::Linear>(2, 2), std::make_shared<Log>()});
  model.load_state_dict({{"0.weight", Tensor::from_vector<float>({1, 0, 0, 1}, {2, 2})},
                         {"0.bias", Tensor::zeros({2})}});
  optim::SGD sgd({.lr = 0.01});
  optim::TrainStep step(model, sgd, mse);
  debug::Debugger dbg(model, step, mse, nullptr, {.every = 0});
  const Tensor y = Tensor::zeros({1, 2});
  dbg.step(Tensor::from_vector<float>({1, 2}, {1, 2}), y);
  const auto params_after_1 = model.state_dict();
  try {
    dbg.step(Tensor::from_vector<float>({-5, 2}, {1, 2}), y);  // log(-5 + ...)
    FAIL() << "no NonFiniteError";
  } catch (const debug::NonFiniteError& e) {
    const debug::NonFiniteReport& r = e.report();
    EXPECT_EQ(r.step, 2);
    EXPECT_EQ(r.op, "log");
    EXPECT_EQ(r.layer, "1");
    EXPECT_EQ(r.phase, "forward");
    EXPECT_NE(std::string(e.what()).find("step 2: first non-finite value produced by %"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(" log (forward, layer 1) from finite inputs"),
              std::string::npos)
        << e.what();
  }
  // The failing update is not applied.
  for (auto& [n, v] : model.state_dict())
    for (int64_t i = 0; i < v.numel(); ++i)
      EXPECT_EQ(ds::element_as_double(v, i), ds::element_as_double(params_after_1.at(n), i)) << n;
}

TEST(Debugger, NamesAnOpInTheLoss) {
  nn::manual_seed(1);
  nn::Sequential model({std::make_shared<nn::Linear>(2, 1)});
  model.load_state_dict({{"0.weight", Tensor::from_vector<float>({1, 1}, {1, 2})},
                         {"0.bias", Tensor::zeros({1})}});
  auto log_loss = [](const Tensor& out, const Tensor& y) {
    return ds::mean(ds::mul(ds::log(out), y));
  };
  optim::SGD sgd({.lr = 0.01});
  optim::TrainStep step(model, sgd, log_loss);
  debug::Debugger dbg(model, step, log_loss, nullptr, {.every = 1});
  try {
    dbg.step(Tensor::from_vector<float>({-1, -3}, {1, 2}), Tensor::full({1, 1}, 1.0));
    FAIL() << "no NonFiniteError";
  } catch (const debug::NonFiniteError& e) {
    EXPECT_EQ(e.report().step, 1);
    EXPECT_EQ(e.report().op, "log");
    EXPECT_EQ(e.report().phase, "loss");
    EXPECT_EQ(e.report().layer, "");
  }
  // A finite step raises nothing and the stats were taken.
  dbg.step(Tensor::from_vector<float>({1, 3}, {1, 2}), Tensor::full({1, 1}, 1.0));
  EXPECT_EQ(dbg.steps(), 2);
  EXPECT_TRUE(dbg.last_stats().count("grads/0.weight/norm"));
}

TEST(Debugger, ReportsANonFiniteFeed) {
  nn::Sequential model({std::make_shared<nn::Linear>(2, 1)});
  const Tensor x = Tensor::from_vector<float>({NAN, 1}, {1, 2});
  const auto r = debug::find_first_nonfinite(model, mse, x, Tensor::zeros({1, 1}), 7);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->message, "step 7: the fed value 'input' contains NaN or Inf");
  EXPECT_FALSE(debug::find_first_nonfinite(model, mse, Tensor::full({1, 2}, 1.0),
                                           Tensor::zeros({1, 1}), 1)
                   .has_value());
}

}  // namespace
