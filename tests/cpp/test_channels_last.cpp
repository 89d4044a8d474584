// Channels-last (NHWC) conv2d, its backward ops and max pooling: each against the
// NCHW op on permuted inputs (values; gradients through the VJPs, which must give
// channels-last backward ops; finite differences), the CPU kernel that runs them
// through the NCHW kernels, the graph passes leaving them alone, the layers and
// ResNet-18 in both layouts; the CUDA kernels (CudaChannelsLast*) against the
// float64 reference kernels.
#include <algorithm>

#include "backends/cuda/batch_norm_columns_source.h"
#include "backends/cuda/pool_nhwc_source.h"
#include "codegen/cuda/emit_cuda.h"
#include "cuda_dnn_check.h"
#include "ds/channels_last.h"
#include "ds/models.h"
#include "ds/optim.h"
#include "gradcheck.h"
#include "ir/kernel_inventory.h"
#include "ir/ops/batch_norm_train.h"
#include "op_check.h"
#include "passes/layout_propagation.h"
#include "passes/pass_manager.h"

namespace ds {
namespace {

using test::random_tensor;
using test::rel_diff;
using test::values;

struct ConvCase {
  Shape x, w;  // x in NCHW
  Pair stride, padding, dilation;
  int64_t groups;
};

const std::vector<ConvCase> kConvCases = {
    {{2, 3, 7, 6}, {4, 3, 3, 3}, {1}, {0}, {1}, 1},
    {{1, 4, 9, 9}, {6, 2, 3, 3}, {2}, {1}, {1}, 2},
    {{2, 3, 8, 7}, {5, 3, 3, 2}, {1, 2}, {2, 1}, {2, 1}, 1},
    {{1, 6, 5, 5}, {6, 1, 3, 3}, {1}, {1}, {1}, 6},
    {{3, 5, 4, 4}, {7, 5, 1, 1}, {1}, {0}, {1}, 1},
    {{2, 16, 9, 8}, {8, 16, 3, 3}, {2}, {1}, {1}, 1},
    {{1, 1, 1, 1}, {1, 1, 1, 1}, {1}, {0}, {1}, 1},
    {{0, 3, 5, 5}, {2, 3, 3, 3}, {1}, {1}, {1}, 1},
};

AttrMap conv_attrs(const ConvCase& c, bool last) {
  return {{"stride", c.stride},
          {"padding", c.padding},
          {"dilation", c.dilation},
          {"groups", c.groups},
          {"channels_last", last}};
}

Tensor nhwc(const Tensor& x) {
  return to_channels_last(x).contiguous();
}

Shape nhwc_shape(const Shape& nchw) {
  return {nchw[0], nchw[2], nchw[3], nchw[1]};
}

// The output shape of `op` on inputs of these shapes and dtype `t`.
Shape out_shape(const std::string& op, const std::vector<Shape>& in, DType t,
                const AttrMap& attrs) {
  const OpDef& def = get_op(op);
  const AttrMap full = complete_attrs(def, attrs, op);
  std::vector<TensorType> types;
  for (const Shape& s : in) types.push_back({t, s});
  return def.infer(OpContext{def, full, types, op})[0].shape;
}

Tensor conv_cl(const Tensor& x, const Tensor& w, const Tensor& b, const ConvCase& c) {
  return conv2d_channels_last(x, w, b, c.stride, c.padding, c.dilation, c.groups);
}
Tensor conv_nchw(const Tensor& x, const Tensor& w, const Tensor& b, const ConvCase& c) {
  return conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups);
}

TEST(ChannelsLastConv, ForwardMatchesTheNchwOpOnPermutedInputs) {
  uint32_t seed = 1;
  for (const ConvCase& c : kConvCases)
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE(shape_str(c.x) + " * " + shape_str(c.w) + (with_bias ? " + bias" : ""));
      const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.w, seed++);
      const Tensor b = with_bias ? random_tensor({c.w[0]}, seed++) : Tensor();
      const auto want = values(nhwc(conv_nchw(x, w, b, c)));
      const Tensor y = conv_cl(nhwc(x), w, b, c);
      EXPECT_EQ(y.shape(), (Shape{c.x[0], y.dim(1), y.dim(2), c.w[0]}));
      EXPECT_LT(rel_diff(y, want), 1e-12);
      const std::vector<Tensor> in =
          with_bias ? std::vector<Tensor>{nhwc(x), w, b} : std::vector<Tensor>{nhwc(x), w};
      EXPECT_LT(rel_diff(test::run_reference("conv2d", in, conv_attrs(c, true)), want), 1e-12);
      // float32: the NCHW op's fast CPU kernel between two permutes.
      std::vector<Tensor> in32;
      for (const Tensor& t : in) in32.push_back(cast(t, DType::Float32));
      EXPECT_EQ(test::kernel_impl("conv2d", in32, conv_attrs(c, true)), "nchw-permuted");
      EXPECT_LT(rel_diff(apply1("conv2d", in32, conv_attrs(c, true)), want), 1e-5);
    }
}

// The gradients of sum(conv(x) * r) in both layouts, through value_and_grad.
TEST(ChannelsLastConv, GradientsMatchTheNchwOp) {
  uint32_t seed = 100;
  for (const ConvCase& c : kConvCases) {
    if (c.x[0] == 0) continue;  // (a sum over an empty axis crashes the CPU reduction kernel)
    SCOPED_TRACE(shape_str(c.x) + " * " + shape_str(c.w));
    const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.w, seed++);
    const Tensor b = random_tensor({c.w[0]}, seed++);
    const Tensor r = random_tensor(conv_nchw(x, w, b, c).shape(), seed++);
    const Tensor r_cl = nhwc(r);
    auto nchw_fn = [&](const std::vector<Tensor>& a) {
      return sum(conv_nchw(a[0], a[1], a[2], c) * r);
    };
    auto cl_fn = [&](const std::vector<Tensor>& a) {
      return sum(conv_cl(a[0], a[1], a[2], c) * r_cl);
    };
    const auto [v0, g0] = value_and_grad(nchw_fn, {0, 1, 2})({x, w, b});
    const auto [v1, g1] = value_and_grad(cl_fn, {0, 1, 2})({nhwc(x), w, b});
    EXPECT_NEAR(v1.item<double>(), v0.item<double>(), 1e-10 * (1 + std::abs(v0.item<double>())));
    EXPECT_LT(rel_diff(g1[0], values(nhwc(g0[0]))), 1e-12);
    EXPECT_LT(rel_diff(g1[1], values(g0[1])), 1e-12);
    EXPECT_LT(rel_diff(g1[2], values(g0[2])), 1e-12);
  }
}

TEST(ChannelsLastConv, VjpMatchesFiniteDifferences) {
  for (size_t i : {0, 1, 2, 3}) {
    const ConvCase& c = kConvCases[i];
    SCOPED_TRACE(shape_str(c.x) + " * " + shape_str(c.w));
    test::expect_vjp_matches_fd(
        "conv2d", {nhwc(random_tensor(c.x, 7)), random_tensor(c.w, 8), random_tensor({c.w[0]}, 9)},
        conv_attrs(c, true));
  }
}

// Autodiff of a channels-last conv gives channels-last backward ops, whose float32
// CPU kernels (the NCHW ones between permutes) match the float64 reference.
TEST(ChannelsLastConv, BackwardOpsCarryTheLayoutAndMatchTheReference) {
  const ConvCase& c = kConvCases[2];
  Graph g;
  const Tensor x = g.placeholder("x", {2, 8, 7, 3}, DType::Float64);
  const Tensor w = g.placeholder("w", c.w, DType::Float64);
  grad(g, sum(conv_cl(x, w, {}, c)), {x, w});
  int backward_ops = 0;
  for (const Node& n : g.nodes())
    if (n.op->name.rfind("conv2d_backward", 0) == 0) {
      ++backward_ops;
      EXPECT_TRUE(std::get<bool>(n.attrs.at("channels_last"))) << n.op->name;
    }
  EXPECT_EQ(backward_ops, 2);

  const Tensor gy = random_tensor({2, 8, 4, 5}, 30), xv = random_tensor({2, 8, 7, 3}, 31);
  const Tensor wv = random_tensor(c.w, 32);
  AttrMap in_attrs = conv_attrs(c, true), w_attrs = in_attrs;
  in_attrs["input_size"] = Pair{8, 7};
  w_attrs["kernel_size"] = Pair{3, 2};
  const auto f32 = [](const Tensor& t) { return cast(t, DType::Float32); };
  const Tensor dx = test::run_reference("conv2d_backward_input", {gy, wv}, in_attrs);
  const Tensor dw = test::run_reference("conv2d_backward_weight", {xv, gy}, w_attrs);
  EXPECT_EQ(dx.shape(), (Shape{2, 8, 7, 3}));
  EXPECT_EQ(dw.shape(), c.w);
  EXPECT_LT(rel_diff(apply1("conv2d_backward_input", {f32(gy), f32(wv)}, in_attrs), values(dx)),
            1e-5);
  EXPECT_LT(rel_diff(apply1("conv2d_backward_weight", {f32(xv), f32(gy)}, w_attrs), values(dw)),
            1e-5);
  // And the NCHW ops on the permuted tensors.
  AttrMap nchw_in = in_attrs, nchw_w = w_attrs;
  nchw_in["channels_last"] = nchw_w["channels_last"] = false;
  const Tensor gy_nchw = from_channels_last(gy).contiguous(),
               x_nchw = from_channels_last(xv).contiguous();
  EXPECT_LT(rel_diff(dx, values(nhwc(apply1("conv2d_backward_input", {gy_nchw, wv}, nchw_in)))),
            1e-12);
  EXPECT_LT(rel_diff(dw, values(apply1("conv2d_backward_weight", {x_nchw, gy_nchw}, nchw_w))),
            1e-12);
}

TEST(ChannelsLastConv, BadInputsNameTheLayout) {
  const Tensor w = random_tensor({4, 3, 3, 3}, 1);
  test::expect_error<ShapeError>(
      [&] {
        conv2d_channels_last(random_tensor({5, 5, 3}, 2), w);
      },
      {"conv2d", "[N, H, W, C] (channels_last)", "[5, 5, 3]"});
  // An NCHW tensor passed as channels-last: 5 "channels" for a 3-channel weight.
  test::expect_error<ShapeError>(
      [&] {
        conv2d_channels_last(random_tensor({1, 3, 6, 5}, 3), w);
      },
      {"conv2d", "expects 3 input channels", "has 5"});
  test::expect_error<ShapeError>(
      [&] {
        max_pool2d_channels_last(random_tensor({3, 6, 5}, 4), {2});
      },
      {"max_pool2d", "[N, H, W, C] (channels_last)"});
}

struct PoolCase {
  Shape x;  // NCHW
  Pair kernel, stride, padding, dilation;
  bool ceil_mode;
};

const std::vector<PoolCase> kPoolCases = {
    {{2, 5, 9, 8}, {3}, {2}, {1}, {1}, false},
    {{1, 3, 7, 7}, {2}, {}, {0}, {1}, true},
    {{2, 4, 8, 9}, {3, 2}, {1, 2}, {1, 0}, {2, 1}, false},
    {{1, 1, 1, 1}, {1}, {1}, {0}, {1}, false},
    {{0, 2, 4, 4}, {2}, {2}, {0}, {1}, false},
    // Channels in 16-byte packs on the GPU (8 bf16/fp16, 4 float32, 2 float64).
    {{2, 16, 9, 8}, {3}, {2}, {1}, {1}, false},
    {{1, 24, 7, 7}, {2}, {}, {0}, {1}, true},
    {{1, 8, 6, 6}, {3}, {1}, {1}, {1}, false},  // each pixel in up to 9 windows
};

TEST(ChannelsLastPool, MaxPoolValuesAndGradientsMatchTheNchwOp) {
  uint32_t seed = 200;
  for (const PoolCase& c : kPoolCases) {
    SCOPED_TRACE(shape_str(c.x));
    auto pool = [&](const Tensor& x, bool last) {
      return last ? max_pool2d_channels_last(x, c.kernel, c.stride, c.padding, c.dilation,
                                             c.ceil_mode)
                  : max_pool2d(x, c.kernel, c.stride, c.padding, c.dilation, c.ceil_mode);
    };
    const Tensor x = random_tensor(c.x, seed++);
    EXPECT_LT(rel_diff(pool(nhwc(x), true), values(nhwc(pool(x, false)))), 1e-15);
    // float32 through the NCHW op's vectorized kernel.
    EXPECT_LT(rel_diff(pool(cast(nhwc(x), DType::Float32), true), values(nhwc(pool(x, false)))),
              1e-7);
    if (c.x[0] == 0) continue;  // (a sum over an empty tensor crashes the CPU reduction kernel)
    const Tensor r = random_tensor(pool(x, false).shape(), seed++);
    const auto [v0, g0] = value_and_grad(
        [&](const std::vector<Tensor>& a) { return sum(pool(a[0], false) * r); }, {0})({x});
    const Tensor r_cl = nhwc(r);
    const auto [v1, g1] = value_and_grad(
        [&](const std::vector<Tensor>& a) { return sum(pool(a[0], true) * r_cl); }, {0})({nhwc(x)});
    EXPECT_NEAR(v1.item<double>(), v0.item<double>(), 1e-12);
    EXPECT_LT(rel_diff(g1[0], values(nhwc(g0[0]))), 1e-15);
  }
}

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes()) n += node.op->name == op;
  return n;
}

// conv + bias + relu (+ a pool): the NCHW chain fuses and goes blocked, the
// channels-last one stays as it is; both compile and run.
TEST(ChannelsLastPasses, EpilogueFusionAndBlockedLayoutsSkipChannelsLastNodes) {
  const Tensor w = random_tensor({8, 4, 3, 3}, 1, DType::Float32);
  const Tensor w2 = random_tensor({8, 8, 3, 3}, 2, DType::Float32);
  const Tensor b = random_tensor({8}, 3, DType::Float32);
  for (bool last : {false, true}) {
    SCOPED_TRACE(last ? "channels_last" : "nchw");
    Graph g;
    const Tensor x = g.placeholder("x", last ? Shape{2, 9, 9, 4} : Shape{2, 4, 9, 9});
    auto conv = [&](const Tensor& in, const Tensor& k) {
      return last ? conv2d_channels_last(in, g.constant(k), g.constant(b), {1}, {1})
                  : conv2d(in, g.constant(k), g.constant(b), {1}, {1});
    };
    Tensor y = relu(conv(relu(conv(x, w)), w2));
    y = last ? max_pool2d_channels_last(y, {2}) : max_pool2d(y, {2});
    g.output(y, "y");
    const Graph fused = passes::dead_code_elimination(passes::epilogue_fusion(g));
    EXPECT_EQ(count_op(fused, "fused_conv2d"), last ? 0 : 2) << fused.str();
    const Graph blocked = passes::layout_propagation(fused, 8);
    EXPECT_EQ(count_op(blocked, "blocked_conv2d"), last ? 0 : 2) << blocked.str();
    EXPECT_EQ(count_op(blocked, "conv2d"), last ? 2 : 0) << blocked.str();
    const Tensor feed = random_tensor(x.shape(), 4, DType::Float32);
    const Tensor want = ds::compile(g, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y");
    EXPECT_LT(rel_diff(ds::compile(blocked, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y"),
                       values(want)),
              1e-5);
    EXPECT_LT(rel_diff(ds::compile(g, "cpu").run({{"x", feed}}).at("y"), values(want)), 1e-5);
  }
}

// ---- layers and models

// conv -> batch norm (training statistics, as channels-last BatchNorm2d runs it)
// -> relu -> max pool, all channels-last, against central differences.
TEST(ChannelsLastNet, ConvBatchNormReluPoolGradientsMatchFiniteDifferences) {
  const Tensor r = testing::lcg_tensor({2, 3, 3, 4}, 5);
  auto net = [&](const std::vector<Tensor>& a) {
    Tensor y = conv2d_channels_last(a[0], a[1], {}, {1}, {1});  // [2, 5, 5, 4]
    const Shape s = y.shape();
    y = batch_norm_train(y.reshape({-1, s[3], 1, 1}), a[2], a[3]).y.reshape(s);
    return sum(max_pool2d_channels_last(relu(y), {2}, {2}, {0}, {1}, true) * r);
  };
  testing::expect_gradients_match(
      net,
      {testing::lcg_tensor({2, 5, 5, 3}, 1), testing::lcg_tensor({4, 3, 3, 3}, 2),
       testing::lcg_tensor({4}, 3, 0.5, 1.5), testing::lcg_tensor({4}, 4)},
      {0, 1, 2, 3}, 1e-5);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return max(abs(cast(a, DType::Float64) - cast(b, DType::Float64))).item<double>();
}

std::shared_ptr<nn::Sequential> small_net() {
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(3, 8, Pair{3}, Pair{1}, Pair{1}),
      std::make_shared<nn::BatchNorm2d>(8), nn::ReLU(), nn::MaxPool2d({3}, {2}, {1}),
      std::make_shared<nn::Conv2d>(8, 6, Pair{3}, Pair{2}), nn::AvgPool2d({2}),
      nn::AdaptiveAvgPool2d({1})});
}

// The same weights in both layouts: the same outputs (permuted) and running
// statistics in train mode, the same outputs in eval mode.
TEST(ChannelsLastLayers, ConvBatchNormPoolingMatchTheNchwLayers) {
  nn::manual_seed(3);
  auto nchw = small_net(), last = small_net();
  last->load_state_dict(nchw->state_dict());
  last->to_channels_last();
  EXPECT_TRUE((*last)[1].is_channels_last());
  const Tensor x = random_normal({2, 3, 11, 9}, 4);
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "train" : "eval");
    nchw->train(training), last->train(training);
    const Tensor want = (*nchw)(x), got = (*last)(to_channels_last(x));
    ASSERT_EQ(got.shape(), (Shape{2, 1, 1, 6}));
    EXPECT_LT(max_abs_diff(from_channels_last(got), want), 1e-5);
    const auto& bn_nchw = dynamic_cast<nn::BatchNorm2d&>((*nchw)[1]);
    const auto& bn_last = dynamic_cast<nn::BatchNorm2d&>((*last)[1]);
    EXPECT_LT(max_abs_diff(bn_last.running_mean, bn_nchw.running_mean), 1e-6);
    EXPECT_LT(max_abs_diff(bn_last.running_var, bn_nchw.running_var), 1e-6);
  }
  test::expect_error<ShapeError>(
      [&] {
        (*last)[1](random_normal({8, 5, 5}, 5));
      },
      {"BatchNorm2d", "[N, H, W, C]"});
}

// ResNet-18 (train-mode BN) in both layouts: the same logits, and after one SGD
// step of lr 1 the same parameters (so the same gradients).
TEST(ChannelsLastModels, ResNet18MatchesTheNchwModelInOutputsAndGradients) {
  nn::manual_seed(11);
  auto nchw = models::resnet18(5), last = models::resnet18(5);
  last->load_state_dict(nchw->state_dict());
  last->to_channels_last();
  const Tensor x = random_normal({4, 3, 32, 32}, 12);
  const Tensor y = Tensor::from_vector<int64_t>({0, 3, 1, 4}, {4});
  EXPECT_LT(max_abs_diff((*last)(x), (*nchw)(x)), 1e-4);
  auto loss = [](const Tensor& out, const Tensor& t) { return nn::cross_entropy(out, t); };
  optim::SGD sgd_nchw({.lr = 1.0}), sgd_last({.lr = 1.0});
  optim::TrainStep step_nchw(*nchw, sgd_nchw, loss), step_last(*last, sgd_last, loss);
  const std::map<std::string, Tensor> before = nchw->state_dict();
  const double l0 = step_nchw.step(x, y).loss.item<double>();
  const double l1 = step_last.step(x, y).loss.item<double>();
  EXPECT_NEAR(l1, l0, 1e-4 * (1 + std::abs(l0)));
  const std::map<std::string, Tensor> a = nchw->state_dict(), b = last->state_dict();
  for (const auto& [name, p] : a) {
    const double step = max_abs_diff(p, before.at(name));
    EXPECT_LE(max_abs_diff(b.at(name), p), 1e-3 * step + 1e-6) << name << " moved " << step;
  }
}

// ---- CUDA: the NHWC kernels against the float64 reference kernels.

// The NHWC convolutions are cuDNN's: a build without cuDNN has none.
bool has_cudnn_nhwc() {
  const auto impls = kernel_impls("conv2d", DeviceKind::CUDA);
  return std::find(impls.begin(), impls.end(), "cudnn-nhwc") != impls.end();
}

TEST(CudaChannelsLastSource, MaxPoolAndBatchNormCompileWithNvrtcForEveryFloatType) {
  if (!cuda::built_with_cuda()) GTEST_SKIP() << "built without CUDA";
  for (const char* type : {"float", "double", "ds_half", "ds_bf16"}) {
    ASSERT_NO_THROW(codegen::cuda::nvrtc_compile_log(cuda::max_pool_nhwc_source(type), "sm_90a"))
        << type;
    for (int vec = 1; vec <= 8; vec *= 2)
      ASSERT_NO_THROW(
          codegen::cuda::nvrtc_compile_log(cuda::batch_norm_columns_source(type, vec), "sm_90a"))
          << type << " x" << vec;
  }
}

TEST(CudaChannelsLastConv, ForwardAndBothBackwardsMatchTheReference) {
  DS_REQUIRE_GPU();
  if (!has_cudnn_nhwc()) GTEST_SKIP() << "built without cuDNN";
  using namespace cuda_dnn_test;
  uint64_t seed = 300;
  for (DType t : {DType::Float32, DType::Float16, DType::BFloat16})
    for (const ConvCase& c : kConvCases) {
      const Shape xs = nhwc_shape(c.x);
      const Tensor x = uniform(xs, seed++, t), w = uniform(c.w, seed++, t);
      const Tensor b = uniform({c.w[0]}, seed++, t);
      const AttrMap attrs = conv_attrs(c, true);
      const Shape ys = out_shape("conv2d", {xs, c.w}, t, attrs);
      const Tensor gy = uniform(ys, seed++, t);
      const int64_t taps = c.w[1] * c.w[2] * c.w[3];
      const std::string what = at(t, xs) + " * " + shape_str(c.w);
      check_op("conv2d", {x, w, b}, attrs, "cudnn-nhwc", sum_tol(t, taps), "conv2d" + what);
      AttrMap in_attrs = attrs, w_attrs = attrs;
      in_attrs["input_size"] = Pair{xs[1], xs[2]};
      w_attrs["kernel_size"] = Pair{c.w[2], c.w[3]};
      check_op("conv2d_backward_input", {gy, w}, in_attrs, "cudnn-nhwc",
               sum_tol(t, c.w[0] * c.w[2] * c.w[3]), "backward_input" + what);
      check_op("conv2d_backward_weight", {x, gy}, w_attrs, "cudnn-nhwc",
               sum_tol(t, ys[0] * ys[1] * ys[2]), "backward_weight" + what);
    }
}

// 1x1 channels-last convolutions (stride 1 and 2) are GEMMs over the pixels
// (cuBLASLt); with a bias, cuDNN's NHWC kernel.
TEST(CudaChannelsLastConv, PointwiseConvolutionsAreGemmsMatchingTheReference) {
  DS_REQUIRE_GPU();
  using namespace cuda_dnn_test;
  uint64_t seed = 350;
  const Shape xs{2, 7, 6, 16}, ws{24, 16, 1, 1};
  for (int64_t stride : {1, 2})
    for (DType t : {DType::Float32, DType::Float16, DType::BFloat16}) {
      const AttrMap attrs = {{"channels_last", true}, {"stride", Pair{stride}}};
      const Shape ys = out_shape("conv2d", {xs, ws}, t, attrs);
      const Tensor x = uniform(xs, seed++, t), w = uniform(ws, seed++, t);
      const Tensor b = uniform({24}, seed++, t), gy = uniform(ys, seed++, t);
      const std::string what = at(t, xs) + " stride " + std::to_string(stride);
      check_op("conv2d", {x, w}, attrs, "cublaslt-1x1-nhwc", sum_tol(t, 16), "conv2d" + what);
      if (has_cudnn_nhwc())
        check_op("conv2d", {x, w, b}, attrs, "cudnn-nhwc", sum_tol(t, 16), "conv2d bias" + what);
      AttrMap in_attrs = attrs, w_attrs = attrs;
      in_attrs["input_size"] = Pair{7, 6};
      w_attrs["kernel_size"] = Pair{1, 1};
      check_op("conv2d_backward_input", {gy, w}, in_attrs, "cublaslt-1x1-nhwc", sum_tol(t, 24),
               "backward_input" + what);
      check_op("conv2d_backward_weight", {x, gy}, w_attrs, "cublaslt-1x1-nhwc",
               sum_tol(t, ys[0] * ys[1] * ys[2]), "backward_weight" + what);
    }
}

// float64 convolutions have no NHWC cuDNN kernel here: the reference runs, never
// an NCHW kernel (cuBLASLt's would take this 1x1 one); max pooling has its own.
TEST(CudaChannelsLastConv, ChannelsLastCallsNeverReachAnNchwKernel) {
  if (!cuda::built_with_cuda()) GTEST_SKIP() << "built without CUDA";
  if (!has_cudnn_nhwc()) GTEST_SKIP() << "built without cuDNN";
  const ConvCase& c = kConvCases[4];
  const Shape xs{3, 64, 64, 5};
  const OpDef &conv = get_op("conv2d"), &pool = get_op("max_pool2d");
  const AttrMap conv_full = complete_attrs(conv, conv_attrs(c, true), "conv2d");
  const AttrMap pool_full =
      complete_attrs(pool, {{"kernel_size", Pair{2}}, {"channels_last", true}}, "max_pool2d");
  for (DType t : {DType::Float64, DType::Float32}) {
    const std::vector<TensorType> in{{t, xs}, {t, c.w}};
    EXPECT_EQ(select_kernel(OpContext{conv, conv_full, in, "conv2d"}, DeviceKind::CUDA).impl,
              t == DType::Float64 ? "reference" : "cudnn-nhwc");
    EXPECT_EQ(
        select_kernel(OpContext{pool, pool_full, {in[0]}, "max_pool2d"}, DeviceKind::CUDA).impl,
        "nvrtc-nhwc");
  }
}

// Batch norm over x [M, C] and [M, C, 1, 1] (channels-last BatchNorm2d): the
// column kernels, with and without weight and bias, against the reference.
TEST(CudaChannelsLastBatchNorm, ColumnKernelsMatchTheReference) {
  DS_REQUIRE_GPU();
  using namespace cuda_dnn_test;
  const Shape shapes[] = {{20000, 3}, {1000, 64}, {37, 5}, {3, 70, 1, 1},
                          {513, 130}, {1, 1},     {0, 8}};
  uint64_t seed = 500;
  for (DType t : kFloats)
    for (const Shape& s : shapes) {
      const DType st = t == DType::Float64 ? DType::Float64 : DType::Float32;
      const int64_t m = s[0];
      // The statistics' float sums of m values, then (y, dx) one rounding to t.
      const double tl = std::max(tol(t), sum_tol(st, m));
      const Tensor x = uniform(s, seed++, t, 1, 4), dy = uniform(s, seed++, t);
      const Tensor w = uniform({s[1]}, seed++, st, 0.5, 1.5), b = uniform({s[1]}, seed++, st);
      const Tensor mean = uniform({s[1]}, seed++, st, 2, 3),
                   var = uniform({s[1]}, seed++, st, 0.2, 1.5);
      const AttrMap eps = {{"eps", 1e-5}};
      const std::string what = at(t, s);
      check_op("batch_norm_train", {x, w, b}, eps, "nvrtc-columns", tl, "forward" + what);
      check_op("batch_norm_train", {x}, eps, "nvrtc-columns", tl, "forward, no affine" + what);
      check_op("batch_norm_train_backward", {dy, x, mean, var, w}, eps, "nvrtc-columns", tl,
               "backward" + what);
      check_op("batch_norm_train_backward", {dy, x, mean, var}, eps, "nvrtc-columns", tl,
               "backward, no weight" + what);
    }
}

// float32 convolutions without TF32 for the test's scope.
struct NoTf32 {
  bool was = cuda::allow_tf32();
  NoTf32() { cuda::set_allow_tf32(false); }
  ~NoTf32() { cuda::set_allow_tf32(was); }
};

// One SGD step of a channels-last ResNet-18 compiled for the GPU (NHWC cuDNN
// convolutions, NHWC pooling, column batch norm) against the NCHW model on the
// CPU: the same loss, gradients and running statistics up to float32 rounding.
TEST(CudaChannelsLastModels, ResNet18TrainingStepMatchesTheNchwCpuStep) {
  DS_REQUIRE_GPU();
  const NoTf32 no_tf32;
  nn::manual_seed(13);
  auto cpu = models::resnet18(5), gpu = models::resnet18(5);
  gpu->load_state_dict(cpu->state_dict());
  gpu->to_channels_last();
  const Tensor x = random_normal({4, 3, 64, 64}, 14);
  const Tensor y = Tensor::from_vector<int64_t>({0, 3, 1, 4}, {4});
  auto loss = [](const Tensor& out, const Tensor& t) { return nn::cross_entropy(out, t); };
  optim::SGD sgd_cpu({.lr = 1.0}), sgd_gpu({.lr = 1.0});
  optim::TrainStep step_cpu(*cpu, sgd_cpu, loss, {.target = "cpu"});
  optim::TrainStep step_gpu(*gpu, sgd_gpu, loss, {.target = "cuda"});
  const std::map<std::string, Tensor> before = cpu->state_dict();
  const double l0 = step_cpu.step(x, y).loss.item<double>();
  const double l1 = step_gpu.step(x, y).loss.to(Device::cpu()).item<double>();
  EXPECT_NEAR(l1, l0, 1e-4 * (1 + std::abs(l0)));
  const std::map<std::string, Tensor> a = cpu->state_dict(), b = gpu->state_dict();
  for (const auto& [name, p] : a) {
    // The step (the gradient, lr 1; the running statistics' update) in norm.
    const Tensor want = cast(p - before.at(name), DType::Float64);
    const Tensor got = cast(b.at(name).to(Device::cpu()) - before.at(name), DType::Float64);
    const double scale = std::sqrt(sum(want * want).item<double>());
    const double err = std::sqrt(sum((got - want) * (got - want)).item<double>());
    EXPECT_LE(err, 1e-3 * scale + 1e-6) << name;
  }
}

TEST(CudaChannelsLastPool, MaxPoolForwardAndBackwardMatchTheReference) {
  DS_REQUIRE_GPU();
  using namespace cuda_dnn_test;
  uint64_t seed = 400;
  for (DType t : kFloats)
    for (const PoolCase& c : kPoolCases) {
      const Shape xs = nhwc_shape(c.x);
      const AttrMap attrs = {{"kernel_size", c.kernel},  {"stride", c.stride},
                             {"padding", c.padding},     {"dilation", c.dilation},
                             {"ceil_mode", c.ceil_mode}, {"channels_last", true}};
      const Tensor x = uniform(xs, seed++, t);
      const Shape ys = out_shape("max_pool2d", {xs}, t, attrs);
      const std::string what = at(t, xs);
      check_op("max_pool2d", {x}, attrs, "nvrtc-nhwc", 0, "max_pool2d" + what);
      check_op("max_pool2d_backward", {x, uniform(ys, seed++, t)}, attrs, "nvrtc-nhwc", tol(t),
               "max_pool2d_backward" + what);
    }
}

}  // namespace
}  // namespace ds
