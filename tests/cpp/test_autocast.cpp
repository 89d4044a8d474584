// Mixed precision: the autocast pass, bf16/fp16 compiled results against float32,
// the emulated low-precision kernels against the float64 reference, and fp16
// dynamic loss scaling in the compiled training step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "ds/autodiff.h"
#include "ds/ds.h"
#include "ds/nn.h"
#include "ds/op.h"
#include "ds/optim.h"
#include "backends/cpu/low_precision.h"
#include "passes/pass_manager.h"

namespace {

using ds::DType;
using ds::Graph;
using ds::Tensor;
namespace nn = ds::nn;
namespace optim = ds::optim;

Tensor randn(const ds::Shape& s, uint64_t seed, double scale = 1.0) {
  return ds::random_normal(s, seed, 0.0, scale);
}

std::vector<double> values(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = ds::element_as_double(t, i);
  return v;
}

// |a - b| / |b| (Euclidean norms)
double relative_error(const Tensor& a, const Tensor& b) {
  const auto va = values(a), vb = values(b);
  EXPECT_EQ(va.size(), vb.size());
  double err = 0, scale = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    err += (va[i] - vb[i]) * (va[i] - vb[i]);
    scale += vb[i] * vb[i];
  }
  return std::sqrt(err / scale);
}

// Count of nodes running `op` in `g` with output dtype `dtype`.
int count(const Graph& g, const std::string& op, DType dtype) {
  int n = 0;
  for (const auto& node : g.nodes())
    if (node.op->name == op && node.outputs[0].dtype == dtype) ++n;
  return n;
}

TEST(Autocast, CastsExactlyAroundMatmulAndConvOps) {
  Graph g;
  Tensor x = g.placeholder("x", {2, 1, 6, 6});
  Tensor w = g.placeholder("w", {3, 1, 3, 3});
  Tensor w1 = g.placeholder("w1", {5, 48});
  Tensor d = g.placeholder("d", {4, 4}, DType::Float64);
  Tensor h = ds::relu(g.conv2d(x, w));
  Tensor y = ds::softmax(g.linear(ds::reshape(h, {2, 48}), w1));
  g.output(y, "y");
  g.output(ds::matmul(d, d), "d2");
  const Graph before = g;
  const Graph after = ds::passes::autocast(before, DType::BFloat16);
  after.verify();
  // Before: no casts. After: x, w in; conv out; h, w1 in; linear out. float64 untouched.
  // The relu on the convolution's bf16 output stays bf16 (cast up after it).
  EXPECT_EQ(count(before, "cast", DType::BFloat16) + count(before, "cast", DType::Float32), 0);
  EXPECT_EQ(count(after, "cast", DType::BFloat16), 4);
  EXPECT_EQ(count(after, "cast", DType::Float32), 3);
  EXPECT_EQ(count(after, "conv2d", DType::BFloat16), 1);
  EXPECT_EQ(count(after, "linear", DType::BFloat16), 1);
  EXPECT_EQ(count(after, "matmul", DType::Float64), 1);
  EXPECT_EQ(count(after, "softmax", DType::Float32), 1);
  EXPECT_EQ(count(after, "relu", DType::BFloat16), 1);
  for (const auto& node : after.nodes()) {
    if (node.op->name != "conv2d" && node.op->name != "linear") continue;
    for (const auto& v : node.inputs) EXPECT_EQ(after.node(v.node).op->name, "cast");
  }
  EXPECT_EQ(after.type(after.outputs()[0].second).dtype, DType::Float32);
}

// A residual add and ReLU of two bf16 convolutions run in bf16, rounding once as
// PyTorch's autocast does; an op with another float32 input, or scaled by a
// non-zero constant, stays float32.
TEST(Autocast, SimpleOpsOnLowValuesStayLowAndRoundOnce) {
  Graph g;
  Tensor x = g.placeholder("x", {2, 4, 5, 5});
  Tensor w = g.placeholder("w", {4, 4, 3, 3});
  Tensor shift = g.placeholder("shift", {4, 1, 1});
  Tensor a = ds::conv2d(x, w, {}, {1}, {1});
  Tensor b = ds::conv2d(a, w, {}, {1}, {1});
  Tensor r = ds::relu(a + b);
  g.output(a, "a");
  g.output(b, "b");
  g.output(r, "r");
  g.output(r + shift, "shifted");
  g.output(r * 3.0, "scaled");
  const Graph after = ds::passes::autocast(g, DType::BFloat16);
  after.verify();
  EXPECT_EQ(count(after, "add", DType::BFloat16), 1);
  EXPECT_EQ(count(after, "relu", DType::BFloat16), 1);
  EXPECT_EQ(count(after, "add", DType::Float32), 1);
  EXPECT_EQ(count(after, "mul", DType::Float32), 1);

  ds::CompileOptions o;
  o.precision = "bf16";
  const auto out = ds::compile(g, "cpu", o).run(
      {{"x", randn({2, 4, 5, 5}, 11)}, {"w", randn({4, 4, 3, 3}, 12, 0.3)},
       {"shift", randn({4, 1, 1}, 13)}});
  const auto va = values(out.at("a")), vb = values(out.at("b")), vr = values(out.at("r"));
  for (size_t i = 0; i < vr.size(); ++i) {
    const float sum = static_cast<float>(va[i]) + static_cast<float>(vb[i]);
    ASSERT_EQ(vr[i], std::max(0.0f, float(ds::BFloat16(sum)))) << "element " << i;
  }
}

TEST(Autocast, UnknownPrecisionNamesTheAllowedValues) {
  Graph g;
  g.output(ds::relu(g.placeholder("x", {2})), "y");
  ds::CompileOptions o;
  o.precision = "fp64";
  try {
    ds::compile(g, "cpu", o);
    FAIL() << "expected ValueError";
  } catch (const ds::ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("fp64"), std::string::npos) << m;
    EXPECT_NE(m.find("bf16"), std::string::npos) << m;
    EXPECT_NE(m.find("fp16"), std::string::npos) << m;
  }
}

// Runs `g` compiled at `precision` on `feeds`.
std::vector<Tensor> run_at(const Graph& g, const std::string& precision,
                           const std::map<std::string, Tensor>& feeds) {
  ds::CompileOptions o;
  o.precision = precision;
  const ds::Executable exe = ds::compile(g, "cpu", o);
  const auto out = exe.run(feeds);
  std::vector<Tensor> r;
  for (const auto& spec : exe.outputs()) r.push_back(out.at(spec.name));
  return r;
}

void expect_close_to_fp32(const Graph& g, const std::map<std::string, Tensor>& feeds) {
  const auto ref = run_at(g, "fp32", feeds);
  const auto bf = run_at(g, "bf16", feeds);
  const auto fp = run_at(g, "fp16", feeds);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(bf[i].dtype(), DType::Float32);
    const double e_bf = relative_error(bf[i], ref[i]), e_fp = relative_error(fp[i], ref[i]);
    // Unit roundoff: bf16 2^-9, fp16 2^-12; gradients also cross ReLU masks that
    // flip where a pre-activation near 0 rounds, hence ~5 roundings of headroom.
    EXPECT_LT(e_bf, 2e-2) << "output " << i;
    EXPECT_LT(e_fp, 2e-3) << "output " << i;
    std::printf("output %zu: relative error bf16 %.2e fp16 %.2e\n", i, e_bf, e_fp);
    EXPECT_GT(e_bf, e_fp) << "bf16 has 8 significand bits, fp16 11";
  }
}

TEST(Autocast, MlpForwardAndGradientsCloseToFloat32) {
  Graph g;
  Tensor x = g.placeholder("x", {32, 64});
  Tensor w1 = g.placeholder("w1", {128, 64}), b1 = g.placeholder("b1", {128});
  Tensor w2 = g.placeholder("w2", {10, 128});
  Tensor logits = ds::linear(ds::tanh(ds::linear(x, w1, b1)), w2);
  Tensor loss = ds::mean(ds::softmax(logits) * logits);
  const auto grads = ds::grad(g, loss, {w1, w2});
  g.output(logits, "logits");
  g.output(grads[0], "g1");
  g.output(grads[1], "g2");
  expect_close_to_fp32(g, {{"x", randn({32, 64}, 1)},
                           {"w1", randn({128, 64}, 2, 0.125)},
                           {"b1", randn({128}, 3, 0.1)},
                           {"w2", randn({10, 128}, 4, 0.1)}});
}

TEST(Autocast, ConvNetForwardAndGradientsCloseToFloat32) {
  Graph g;
  Tensor x = g.placeholder("x", {4, 3, 9, 9});
  Tensor w1 = g.placeholder("w1", {8, 3, 3, 3}), w2 = g.placeholder("w2", {6, 8, 3, 3});
  Tensor h = ds::relu(ds::conv2d(x, w1, {}, {1}, {1}));
  Tensor y = ds::conv2d(h, w2, {}, {1}, {1});
  Tensor loss = ds::mean(y * y);
  const auto grads = ds::grad(g, loss, {x, w1, w2});
  g.output(y, "y");
  for (size_t i = 0; i < grads.size(); ++i) g.output(grads[i], "g" + std::to_string(i));
  const Graph cast = ds::passes::autocast(g, DType::Float16);
  EXPECT_EQ(count(cast, "conv2d_backward_input", DType::Float16), 2);
  EXPECT_EQ(count(cast, "conv2d_backward_weight", DType::Float16), 2);
  expect_close_to_fp32(g, {{"x", randn({4, 3, 9, 9}, 5)},
                           {"w1", randn({8, 3, 3, 3}, 6, 0.2)},
                           {"w2", randn({6, 8, 3, 3}, 7, 0.1)}});
}

// The emulated kernel's result is the float32-accumulated result rounded once
// (bit-exact), and within half an ulp plus float32 accumulation error of the
// float64 reference rounded to the low precision.
void check_emulated(const std::string& op, const std::vector<Tensor>& f32_inputs,
                    const ds::AttrMap& attrs, DType low) {
  // The emulation, also on CPUs whose native bf16 kernels would run (test_bf16_native.cpp).
  struct Emulate {
    Emulate() { ds::cpu::allow_native_bf16(false); }
    ~Emulate() { ds::cpu::allow_native_bf16(true); }
  } emulate;
  std::vector<Tensor> low_in, wide_in;
  for (const Tensor& t : f32_inputs) {
    low_in.push_back(ds::cast(t, low));
    wide_in.push_back(ds::cast(low_in.back(), DType::Float32));
  }
  const ds::OpDef& def = ds::get_op(op);
  std::vector<ds::TensorType> types;
  for (const Tensor& t : low_in) types.push_back({t.dtype(), t.shape()});
  const ds::AttrMap full = ds::complete_attrs(def, attrs, op);
  ds::OpContext ctx{def, full, types, op};
  const ds::KernelEntry& k = ds::select_kernel(ctx, ds::DeviceKind::CPU);
  ASSERT_EQ(k.impl, "f32-emulated") << op;
  const ds::TensorType out_type = def.infer(ctx)[0];
  ASSERT_EQ(out_type.dtype, low);
  std::vector<Tensor> fast{Tensor::empty(out_type.shape, low)};
  k.fn({ctx, low_in, fast});
  std::vector<Tensor> ref{Tensor::empty(out_type.shape, low)};
  def.reference({ctx, low_in, ref});
  // The float32 computation on the widened inputs, rounded once.
  std::vector<ds::TensorType> wide_types;
  for (const Tensor& t : wide_in) wide_types.push_back({t.dtype(), t.shape()});
  ds::OpContext wide_ctx{def, full, wide_types, op};
  std::vector<Tensor> wide{Tensor::empty(out_type.shape, DType::Float32)};
  ds::select_kernel(wide_ctx, ds::DeviceKind::CPU).fn({wide_ctx, wide_in, wide});
  const Tensor rounded = ds::cast(wide[0], low);
  ASSERT_EQ(values(rounded), values(fast[0])) << op;
  const double ulp = low == DType::BFloat16 ? std::ldexp(1.0, -7) : std::ldexp(1.0, -10);
  const auto vf = values(fast[0]), vr = values(ref[0]);
  for (size_t i = 0; i < vf.size(); ++i)
    ASSERT_LE(std::abs(vf[i] - vr[i]), ulp * std::abs(vr[i]) + 1e-6) << op << " element " << i;
}

TEST(Autocast, EmulatedKernelsRoundTheFloat32ResultOnce) {
  for (DType low : {DType::BFloat16, DType::Float16}) {
    check_emulated("matmul", {randn({2, 17, 33}, 10), randn({33, 9}, 11)}, {}, low);
    check_emulated("matmul", {randn({1, 1}, 12), randn({1, 1}, 13)}, {}, low);
    check_emulated("linear", {randn({7, 40}, 14), randn({5, 40}, 15), randn({5}, 16)}, {}, low);
    check_emulated("gemm", {randn({6, 4}, 17), randn({6, 3}, 18)}, {{"trans_a", true}}, low);
    check_emulated("conv2d", {randn({2, 3, 9, 9}, 19), randn({4, 3, 3, 3}, 20), randn({4}, 21)},
                   {{"padding", std::vector<int64_t>{1, 1}}}, low);
  }
}

// The autocast casts' kernel against the reference conversion, on rounding ties,
// overflow, subnormals, Inf and NaN.
TEST(Autocast, CastKernelMatchesTheReferenceConversion) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, 65519.0f, 65520.0f, 1e-7f,
                          3e38f, INFINITY, -INFINITY, NAN, -2.5e-41f};
  for (int i = 0; i < 1000; ++i) v.push_back(std::ldexp(static_cast<float>(i) - 500.5f, i % 60 - 30));
  const Tensor x = Tensor::from_vector<float>(v, {static_cast<int64_t>(v.size())});
  for (DType low : {DType::BFloat16, DType::Float16}) {
    const ds::OpDef& def = ds::get_op("cast");
    for (const bool down : {true, false}) {
      const Tensor in = down ? x : ds::cast(x, low);
      const DType to = down ? low : DType::Float32;
      const ds::AttrMap attrs = {{"dtype", to}};
      ds::OpContext ctx{def, attrs, {{in.dtype(), in.shape()}}, "cast"};
      const ds::KernelEntry& k = ds::select_kernel(ctx, ds::DeviceKind::CPU);
      ASSERT_EQ(k.impl, "low-precision");
      std::vector<Tensor> fast{Tensor::empty(in.shape(), to)}, ref{Tensor::empty(in.shape(), to)};
      k.fn({ctx, {in}, fast});
      def.reference({ctx, {in}, ref});
      const auto vf = values(fast[0]), vr = values(ref[0]);
      for (size_t i = 0; i < vf.size(); ++i)
        ASSERT_TRUE(vf[i] == vr[i] || (std::isnan(vf[i]) && std::isnan(vr[i])))
            << dtype_name(low) << " element " << i << ": " << vf[i] << " vs " << vr[i];
    }
  }
}

Tensor mse(const Tensor& out, const Tensor& y) { return nn::mse_loss(out, y); }

TEST(LossScaling, InfGradientSkipsTheStepAndHalvesTheScale) {
  nn::manual_seed(3);
  nn::Sequential model({std::make_shared<nn::Linear>(4, 8), nn::ReLU(),
                        std::make_shared<nn::Linear>(8, 2)});
  optim::Adam adam({.lr = 1e-2});
  optim::TrainStep step(model, adam, mse,
                        {.precision = "fp16", .initial_loss_scale = 1024,
                         .loss_scale_growth_interval = 2});
  const Tensor x = randn({16, 4}, 30), y = randn({16, 2}, 31);
  std::vector<double> xs = values(x);
  xs[5] = INFINITY;
  const Tensor bad = ds::cast(Tensor::from_vector<double>(xs, {16, 4}), DType::Float32);
  const Tensor w0 = model.named_parameters()[0].second;
  const optim::StepResult r = step.step(bad, y);
  EXPECT_TRUE(r.skipped);
  EXPECT_EQ(step.loss_scale(), 512);
  EXPECT_EQ(adam.steps(), 0);
  const Tensor w1 = model.named_parameters()[0].second;
  EXPECT_EQ(values(w1), values(w0));
  EXPECT_EQ(values(adam.state_for(model.parameter_slots()[0].second, w1)[0]),
            std::vector<double>(static_cast<size_t>(w1.numel()), 0.0));
  // Two good steps in a row double the scale again; parameters move.
  EXPECT_FALSE(step.step(x, y).skipped);
  EXPECT_EQ(step.loss_scale(), 512);
  EXPECT_FALSE(step.step(x, y).skipped);
  EXPECT_EQ(step.loss_scale(), 1024);
  EXPECT_EQ(adam.steps(), 2);
  EXPECT_NE(values(model.named_parameters()[0].second), values(w0));
}

TEST(LossScaling, RejectsAnUnknownPrecision) {
  nn::Sequential model({std::make_shared<nn::Linear>(2, 2)});
  optim::SGD sgd({.lr = 0.1});
  EXPECT_THROW(optim::TrainStep(model, sgd, mse, {.precision = "int8"}), ds::ValueError);
}

TEST(MixedPrecisionTraining, LossDecreasesInBf16AndFp16) {
  for (const std::string precision : {"bf16", "fp16"}) {
    nn::manual_seed(7);
    nn::Sequential model({std::make_shared<nn::Conv2d>(1, 4, ds::Pair{3}, ds::Pair{1}, ds::Pair{1}), nn::ReLU(), nn::Flatten(),
                          std::make_shared<nn::Linear>(4 * 6 * 6, 3)});
    optim::Adam adam({.lr = 1e-2});
    optim::TrainStep step(model, adam,
                          [](const Tensor& logits, const Tensor& labels) {
                            return nn::cross_entropy(logits, labels);
                          },
                          {.precision = precision});
    const Tensor x = randn({24, 1, 6, 6}, 40);
    // Labels a function of the input, so the model can learn them.
    const Tensor labels = ds::cast(ds::gt(ds::sum(x, {1, 2, 3}), Tensor::scalar(0.0)), DType::Int64);
    double first = 0, last = 0;
    for (int i = 0; i < 40; ++i) {
      const optim::StepResult r = step.step(x, labels);
      EXPECT_FALSE(r.skipped);
      (i == 0 ? first : last) = r.loss.item<double>();
    }
    EXPECT_LT(last, 0.5 * first) << precision;
  }
}

}  // namespace
