#include <gtest/gtest.h>

#include <cmath>

#include "ds/ds.h"
#include "ds/nn.h"
#include "ds/safetensors.h"
#include "gradcheck.h"

namespace {

using ds::Tensor;
using ds::testing::expect_gradients_match;
using ds::testing::lcg_tensor;
namespace nn = ds::nn;

double at(const Tensor& t, int64_t i) { return ds::element_as_double(t, i); }

TEST(NnGrad, TanhLinearMatchesFiniteDifferences) {
  auto fn = [](const std::vector<Tensor>& a) {
    return ds::sum(ds::tanh(ds::matmul(a[0], a[1]) + a[2]));
  };
  expect_gradients_match(fn, {lcg_tensor({3, 4}, 1), lcg_tensor({4, 5}, 2), lcg_tensor({5}, 3)},
                         {0, 1, 2});
}

TEST(NnGrad, SoftmaxCrossEntropyMatchesFiniteDifferences) {
  const Tensor labels = Tensor::from_vector<int64_t>({2, 0, 1, 2}, {4});
  auto fn = [&](const std::vector<Tensor>& a) {
    return nn::cross_entropy(ds::linear(a[0], a[1], a[2]), labels, 0.1);
  };
  expect_gradients_match(fn, {lcg_tensor({4, 6}, 4), lcg_tensor({3, 6}, 5), lcg_tensor({3}, 6)},
                         {0, 1, 2});
}

TEST(NnGrad, ConvReluPoolChainMatchesFiniteDifferences) {
  auto fn = [](const std::vector<Tensor>& a) {
    Tensor y = ds::conv2d(a[0], a[1], a[2], {1}, {1});
    y = ds::max_pool2d(ds::relu(y), {2});
    return ds::sum(ds::square(y));
  };
  expect_gradients_match(fn,
                         {lcg_tensor({2, 2, 6, 6}, 7), lcg_tensor({3, 2, 3, 3}, 8),
                          lcg_tensor({3}, 9)},
                         {0, 1, 2}, 1e-5);
}

TEST(Nn, LinearComputesXWtPlusBiasAndNamesParameters) {
  nn::Linear lin(3, 2);
  lin.weight = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  lin.bias = Tensor::from_vector<float>({10, 20}, {2});
  Tensor y = lin(Tensor::from_vector<float>({1, 1, 1}, {1, 3}));
  EXPECT_FLOAT_EQ(at(y, 0), 16);
  EXPECT_FLOAT_EQ(at(y, 1), 35);
  auto named = lin.named_parameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "weight");
  EXPECT_EQ(named[1].first, "bias");
  EXPECT_TRUE(named[0].second.same(lin.weight));  // the current tensor, not a copy
}

TEST(Nn, DefaultInitFollowsPyTorchBounds) {
  nn::manual_seed(1);
  nn::Linear lin(100, 400);
  // kaiming_uniform(a = sqrt(5)): bound = 1 / sqrt(fan_in).
  double max_abs = 0, sum_sq = 0;
  for (int64_t i = 0; i < lin.weight.numel(); ++i) {
    max_abs = std::max(max_abs, std::abs(at(lin.weight, i)));
    sum_sq += at(lin.weight, i) * at(lin.weight, i);
  }
  EXPECT_LE(max_abs, 0.1);
  EXPECT_GT(max_abs, 0.099);
  EXPECT_NEAR(std::sqrt(sum_sq / lin.weight.numel()), 0.1 / std::sqrt(3.0), 0.002);
  for (int64_t i = 0; i < lin.bias.numel(); ++i) EXPECT_LE(std::abs(at(lin.bias, i)), 0.1);
  // The same seed gives the same weights.
  nn::manual_seed(1);
  nn::Linear again(100, 400);
  EXPECT_EQ(at(again.weight, 123), at(lin.weight, 123));
}

TEST(Nn, XavierAndKaimingNormalHaveTheirStd) {
  Tensor x = nn::init::xavier_normal({300, 200}, 1.0, 5);
  Tensor k = nn::init::kaiming_normal({300, 200}, 0.0, 6);
  auto rms = [](const Tensor& t) { return std::sqrt(ds::mean(ds::square(t)).item<double>()); };
  EXPECT_NEAR(rms(x), std::sqrt(2.0 / 500), 0.002);
  EXPECT_NEAR(rms(k), std::sqrt(2.0 / 200), 0.003);
  EXPECT_THROW(nn::init::calculate_gain("swish"), ds::ValueError);
}

std::shared_ptr<nn::Sequential> small_cnn() {
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(1, 4, ds::Pair{3}, ds::Pair{1}, ds::Pair{1}), nn::ReLU(),
      nn::MaxPool2d({2}), nn::Flatten(), std::make_shared<nn::Linear>(4 * 4 * 4, 3)});
}

TEST(Nn, StateDictRoundTripReproducesOutputs) {
  nn::manual_seed(1);
  auto a = small_cnn();
  nn::manual_seed(2);
  auto b = small_cnn();
  Tensor x = ds::random_uniform({2, 1, 8, 8}, 3);
  EXPECT_NE(at((*a)(x), 0), at((*b)(x), 0));
  auto sd = a->state_dict();
  EXPECT_EQ(sd.size(), 4u);
  EXPECT_TRUE(sd.count("0.weight") && sd.count("4.bias"));
  b->load_state_dict(sd);
  Tensor ya = (*a)(x), yb = (*b)(x);
  for (int64_t i = 0; i < ya.numel(); ++i) EXPECT_EQ(at(ya, i), at(yb, i));
}

// Runs `m` with its parameters (and float buffers) replaced by float64 copies of
// the given arguments, for gradient checks of whole layers.
Tensor call_with(nn::Module& m, const std::vector<Tensor>& params, const Tensor& x) {
  auto slots = m.parameter_slots();
  std::vector<Tensor> saved;
  for (size_t i = 0; i < slots.size(); ++i) {
    saved.push_back(*slots[i].second);
    *slots[i].second = params[i];
  }
  Tensor y = m(x);
  for (size_t i = 0; i < slots.size(); ++i) *slots[i].second = saved[i];
  return y;
}

TEST(NnGrad, BatchNormTrainModeMatchesFiniteDifferences) {
  nn::BatchNorm2d bn(3);
  bn.running_mean = bn.running_mean.to(ds::DType::Float64);
  bn.running_var = bn.running_var.to(ds::DType::Float64);
  const Tensor mean0 = bn.running_mean, var0 = bn.running_var;
  const Tensor w = lcg_tensor({2, 3, 2, 2}, 21);
  auto fn = [&](const std::vector<Tensor>& a) {
    Tensor y = call_with(bn, {a[1], a[2]}, a[0]);
    bn.running_mean = mean0;  // each evaluation starts from the same statistics
    bn.running_var = var0;
    return ds::sum(y * w);
  };
  expect_gradients_match(fn, {lcg_tensor({2, 3, 2, 2}, 22), lcg_tensor({3}, 23, 0.5, 1.5),
                              lcg_tensor({3}, 24)},
                         {0, 1, 2}, 1e-5);
}

TEST(NnGrad, MultiheadAttentionMatchesFiniteDifferences) {
  nn::MultiheadAttention mha(4, 2, /*causal=*/true);
  std::vector<Tensor> params;
  for (const auto& p : mha.parameters()) params.push_back(p.to(ds::DType::Float64));
  const Tensor w = lcg_tensor({1, 3, 4}, 31);
  auto fn = [&](const std::vector<Tensor>& a) {
    return ds::sum(call_with(mha, {a[1], params[1], params[2], params[3]}, a[0]) * w);
  };
  expect_gradients_match(fn, {lcg_tensor({1, 3, 4}, 32), params[0]}, {0, 1}, 1e-5);
}

TEST(Nn, SafetensorsCheckpointRestoresTheModel) {
  nn::manual_seed(5);
  auto a = small_cnn();
  const std::string path = ::testing::TempDir() + "ds_nn_checkpoint.safetensors";
  ds::save_safetensors(path, a->state_dict());
  nn::manual_seed(6);
  auto b = small_cnn();
  b->load_state_dict(ds::load_safetensors(path));
  Tensor x = ds::random_uniform({1, 1, 8, 8}, 4);
  Tensor ya = (*a)(x), yb = (*b)(x);
  for (int64_t i = 0; i < ya.numel(); ++i) EXPECT_EQ(at(ya, i), at(yb, i));
  std::remove(path.c_str());
}

TEST(Nn, LoadStateDictNamesMissingUnexpectedAndMisshapen) {
  auto m = small_cnn();
  auto sd = m->state_dict();
  sd.erase("0.bias");
  sd["extra"] = Tensor{1};
  try {
    m->load_state_dict(sd);
    FAIL();
  } catch (const ds::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("missing: 0.bias"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unexpected: extra"), std::string::npos) << e.what();
  }
  auto bad = m->state_dict();
  bad["4.bias"] = Tensor{1, 2};
  EXPECT_THROW(m->load_state_dict(bad), ds::ShapeError);
}

TEST(Nn, TrainEvalPropagatesAndStrListsModules) {
  auto m = small_cnn();
  m->eval();
  EXPECT_FALSE((*m)[0].is_training());
  m->train();
  EXPECT_TRUE((*m)[4].is_training());
  const std::string s = m->str();
  EXPECT_NE(s.find("0: Conv2d(1, 4, kernel_size=(3, 3)"), std::string::npos) << s;
  EXPECT_NE(s.find("4: Linear(in_features=64, out_features=3"), std::string::npos) << s;
}

TEST(Nn, BatchNormTrainUpdatesRunningStatsEvalUsesThem) {
  nn::BatchNorm2d bn(2, 1e-5, 0.5);
  // Channel 0 holds 1..4, channel 1 holds 10 everywhere.
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 10, 10, 10, 10}, {1, 2, 2, 2});
  Tensor y = bn(x);
  // Channel 0: mean 2.5, biased var 1.25.
  EXPECT_NEAR(at(y, 0), (1 - 2.5) / std::sqrt(1.25 + 1e-5), 1e-5);
  EXPECT_NEAR(at(y, 5), 0.0, 1e-6);
  EXPECT_NEAR(at(bn.running_mean, 0), 0.5 * 2.5, 1e-6);
  EXPECT_NEAR(at(bn.running_var, 0), 0.5 + 0.5 * (5.0 / 3.0), 1e-6);  // unbiased var 5/3
  EXPECT_NEAR(at(bn.running_mean, 1), 5.0, 1e-6);
  bn.eval();
  Tensor z = bn(x);
  EXPECT_NEAR(at(z, 0), (1 - 1.25) / std::sqrt(at(bn.running_var, 0) + 1e-5), 1e-5);
  EXPECT_EQ(bn.state_dict().size(), 4u);
}

TEST(Nn, DropoutIsSeededScaledAndOffInEval) {
  nn::Dropout d(0.25, 42);
  Tensor x = Tensor::full({4000}, 1.0);
  Tensor a = d(x), b = d(x);
  int64_t zeros = 0, differ = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    zeros += at(a, i) == 0;
    if (at(a, i) != 0) {
      EXPECT_FLOAT_EQ(at(a, i), 1.0f / 0.75f);
    }
    differ += at(a, i) != at(b, i);
  }
  EXPECT_NEAR(zeros / 4000.0, 0.25, 0.03);
  EXPECT_GT(differ, 0);  // the seed advanced between calls
  EXPECT_TRUE(d.state_dict().empty());
  d.eval();
  EXPECT_TRUE(d(x).same(x));
}

TEST(Nn, NormLayersMatchTheirOps) {
  Tensor x = ds::random_normal({2, 4, 3, 3}, 1);
  nn::GroupNorm gn(2, 4);
  Tensor ref = ds::group_norm(x, 2, gn.weight, gn.bias);
  EXPECT_FLOAT_EQ(at(gn(x), 7), at(ref, 7));
  nn::LayerNorm ln({3});
  EXPECT_NEAR(ds::mean(ln(x)).item<double>(), 0.0, 1e-5);
  nn::RMSNorm rms({3});
  EXPECT_NEAR(ds::mean(ds::square(rms(x))).item<double>(), 1.0, 1e-3);
}

TEST(Nn, ParameterFreeLayersApplyTheirOps) {
  Tensor x = ds::random_normal({2, 3, 4, 4}, 8);
  auto same = [](const Tensor& a, const Tensor& b) {
    ASSERT_EQ(a.shape(), b.shape());
    for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(at(a, i), at(b, i));
  };
  same((*nn::GELU("tanh"))(x), ds::gelu(x, "tanh"));
  same((*nn::SiLU())(x), ds::silu(x));
  same((*nn::Sigmoid())(x), ds::sigmoid(x));
  same((*nn::Softmax(1))(x), ds::softmax(x, 1));
  same((*nn::AvgPool2d({2}))(x), ds::avg_pool2d(x, {2}));
  same((*nn::AdaptiveAvgPool2d({1}))(x), ds::adaptive_avg_pool2d(x, {1}));
  EXPECT_EQ((*nn::Flatten())(x).shape(), (ds::Shape{2, 48}));
  EXPECT_EQ(nn::MaxPool2d({2})->name(), "MaxPool2d(kernel_size=2, stride=2, padding=0)");
}

TEST(Nn, ConvTransposeUpsamplesAndCountsParameters) {
  nn::ConvTranspose2d up(4, 2, {2}, {2});
  EXPECT_EQ(up.weight.shape(), (ds::Shape{4, 2, 2, 2}));
  Tensor y = up(ds::random_normal({1, 4, 3, 3}, 2));
  EXPECT_EQ(y.shape(), (ds::Shape{1, 2, 6, 6}));
  EXPECT_THROW(nn::ConvTranspose2d(3, 2, {2}, {1}, {0}, {0}, 2), ds::ValueError);
  EXPECT_THROW(nn::Conv2d(4, 6, {3}, {1}, {0}, {1}, 4), ds::ValueError);
}

TEST(Nn, EmbeddingLooksUpRows) {
  nn::Embedding emb(5, 3);
  Tensor y = emb(Tensor::from_vector<int64_t>({4, 0}, {2}));
  EXPECT_EQ(y.shape(), (ds::Shape{2, 3}));
  EXPECT_EQ(at(y, 0), at(emb.weight, 12));
  EXPECT_EQ(at(y, 5), at(emb.weight, 2));
}

TEST(Nn, CausalAttentionIgnoresTheFuture) {
  nn::MultiheadAttention mha(8, 2, /*causal=*/true);
  Tensor x = ds::random_normal({1, 4, 8}, 7);
  Tensor x2 = x.clone();
  for (int64_t i = 8; i < 32; ++i) x2.data<float>()[i] += 1.0f;  // change positions 1..3
  Tensor y = mha(x), y2 = mha(x2);
  EXPECT_EQ(y.shape(), (ds::Shape{1, 4, 8}));
  for (int64_t j = 0; j < 8; ++j) EXPECT_NEAR(at(y, j), at(y2, j), 1e-6);
  EXPECT_GT(std::abs(at(y, 31) - at(y2, 31)), 1e-4);
  EXPECT_EQ(mha.named_parameters().size(), 4u);
  EXPECT_THROW(nn::MultiheadAttention(6, 4), ds::ValueError);
}

TEST(Nn, ModuleListIsAContainerNotALayer) {
  nn::ModuleList list({std::make_shared<nn::Linear>(2, 2), nn::ReLU()});
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(list.named_parameters()[0].first, "0.weight");
  EXPECT_THROW(list(Tensor{1, 2}), ds::ValueError);
}

// ---- losses against hand-computed values
TEST(NnLoss, CrossEntropyValueSmoothingAndIgnoreIndex) {
  Tensor logits = Tensor::from_vector<double>({1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor labels = Tensor::from_vector<int64_t>({2, 1}, {2});
  const double lse0 = std::log(std::exp(1) + std::exp(2) + std::exp(3)), lse1 = std::log(3.0);
  const double l0 = lse0 - 3, l1 = lse1;
  EXPECT_NEAR(nn::cross_entropy(logits, labels).item<double>(), (l0 + l1) / 2, 1e-12);
  // Smoothing: (1 - e) nll + e * mean_c(-logp).
  const double s0 = lse0 - 2, s1 = lse1, e = 0.2;
  EXPECT_NEAR(nn::cross_entropy(logits, labels, e).item<double>(),
              ((1 - e) * l0 + e * s0 + (1 - e) * l1 + e * s1) / 2, 1e-12);
  Tensor ignored = Tensor::from_vector<int64_t>({2, -100}, {2});
  EXPECT_NEAR(nn::cross_entropy(logits, ignored).item<double>(), l0, 1e-12);
  EXPECT_NEAR(nn::cross_entropy(logits, labels, 0, -100, "sum").item<double>(), l0 + l1, 1e-12);
  EXPECT_EQ(nn::cross_entropy(logits, labels, 0, -100, "none").shape(), (ds::Shape{2}));
  EXPECT_NEAR(nn::nll_loss(ds::log_softmax(logits, 1), labels).item<double>(), (l0 + l1) / 2,
              1e-12);
  EXPECT_THROW(nn::cross_entropy(logits, labels, 0, -100, "avg"), ds::ValueError);
  EXPECT_THROW(nn::cross_entropy(logits, Tensor{1, 2}), ds::TypeError);
}

TEST(NnLoss, RegressionAndBinaryLosses) {
  Tensor x = Tensor::from_vector<double>({0.5, -2, 3}, {3});
  Tensor y = Tensor::from_vector<double>({0, 0, 1}, {3});
  EXPECT_NEAR(nn::mse_loss(x, y).item<double>(), (0.25 + 4 + 4) / 3, 1e-12);
  EXPECT_NEAR(nn::l1_loss(x, y).item<double>(), (0.5 + 2 + 2) / 3, 1e-12);
  // smooth_l1, beta 1: 0.5 d^2 below 1, d - 0.5 above.
  EXPECT_NEAR(nn::smooth_l1_loss(x, y).item<double>(), (0.125 + 1.5 + 1.5) / 3, 1e-12);
  double bce = 0;
  for (int i = 0; i < 3; ++i) {
    const double p = 1 / (1 + std::exp(-at(x, i)));
    bce += -(at(y, i) * std::log(p) + (1 - at(y, i)) * std::log(1 - p));
  }
  EXPECT_NEAR(nn::binary_cross_entropy_with_logits(x, y).item<double>(), bce / 3, 1e-12);
  // Stable for huge logits.
  Tensor big = Tensor::from_vector<double>({1000, -1000}, {2});
  Tensor t = Tensor::from_vector<double>({1, 0}, {2});
  EXPECT_NEAR(nn::binary_cross_entropy_with_logits(big, t).item<double>(), 0.0, 1e-12);
  EXPECT_THROW(nn::mse_loss(x, Tensor{1}), ds::ShapeError);
}

TEST(NnLoss, LossGradientsMatchFiniteDifferences) {
  const Tensor y = lcg_tensor({2, 3}, 11, 0, 1);
  auto fn = [&](const std::vector<Tensor>& a) {
    return nn::smooth_l1_loss(a[0], y * 2.0, 0.5) + nn::binary_cross_entropy_with_logits(a[0], y) +
           nn::mse_loss(a[0], y) + nn::l1_loss(a[0], y * 3.0);
  };
  expect_gradients_match(fn, {lcg_tensor({2, 3}, 12, -2, 2)}, {0});
}

}  // namespace
