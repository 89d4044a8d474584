// Layout propagation: the IR of conv chains before and after (reorders only at
// the edges), blocked kernels against the plain graph and the float64 reference
// interpreter, graphs the pass must leave alone, and the full CPU pipeline.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "ds/ds.h"
#include "ds/models.h"
#include "ir/ops/blocked_layout.h"
#include "passes/layout_propagation.h"
#include "passes/pass_manager.h"
#include "reference_run.h"
#include "runtime/dispatch.h"

using ds::Graph;
using ds::Shape;
using ds::Tensor;
namespace passes = ds::passes;

namespace {

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

Tensor rnd(const Shape& s, uint64_t seed) { return ds::random_uniform(s, seed, -1, 1); }

using ds::reference::reference_run;

// The kernel implementation explain() names for the first step running `op`.
std::string impl_of(const ds::Executable& exe, const std::string& op) {
  std::istringstream lines(exe.explain());
  for (std::string line; std::getline(lines, line);)
    if (line.find(" " + op + " ") != std::string::npos && line.find(" -> ") != std::string::npos)
      return line.substr(line.find(" -> ") + 4);
  return "";
}

Shape g_shape(const Graph& g, ds::ValueRef v) { return g.type(v).shape; }

void expect_close(const Tensor& want, const Tensor& got, double tol) {
  ASSERT_EQ(want.shape(), got.shape());
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double w = ds::element_as_double(want, i), g = ds::element_as_double(got, i);
    ASSERT_NEAR(w, g, tol * (1 + std::abs(w))) << "element " << i;
  }
}

Tensor conv(const Tensor& x, Graph& g, int64_t out, int64_t in, int64_t k, int64_t stride,
            uint64_t seed, bool bias = true) {
  const Tensor w = g.constant(rnd({out, in, k, k}, seed));
  const Tensor b = bias ? g.constant(rnd({out}, seed + 1)) : Tensor();
  return ds::conv2d(x, w, b, {stride}, {k / 2});
}

// x -> conv -> relu -> conv (+ residual) -> relu -> conv (stride 2) -> y, with
// `c` channels in the chain (not a multiple of 8 or 16 in the tests).
Graph residual_chain(int64_t n, int64_t c) {
  Graph g;
  Tensor x = g.placeholder("x", {n, 3, 11, 9});
  Tensor a = ds::relu(conv(x, g, c, 3, 3, 1, 10));
  Tensor b = ds::relu(conv(a, g, c, c, 3, 1, 20) + a);
  g.output(conv(b, g, c + 4, c, 3, 2, 30, false), "y");
  return g;
}

TEST(LayoutPropagation, ChainReordersOnlyAtItsEdges) {
  for (const bool fused : {false, true}) {
    Graph g = residual_chain(2, 20);
    if (fused) g = passes::epilogue_fusion(g);
    const Graph out = passes::layout_propagation(g, 16);
    EXPECT_EQ(count_op(out, "blocked_conv2d"), 3) << out.str();
    EXPECT_EQ(count_op(out, "conv2d") + count_op(out, "fused_conv2d"), 0) << out.str();
    EXPECT_EQ(count_op(out, "to_blocked"), 1) << out.str();    // x
    EXPECT_EQ(count_op(out, "from_blocked"), 1) << out.str();  // y
    for (const auto& n : out.nodes()) {
      if (n.op->name == "blocked_conv2d") {
        EXPECT_TRUE(std::get<bool>(n.attrs.at("weights_constant")));
      }
      if (n.op->name == "relu" || n.op->name == "add") {
        EXPECT_EQ(n.outputs[0].shape, (Shape{2, 2, 11, 9, 16})) << out.str();  // 20 channels in 2 blocks
      }
    }
    EXPECT_EQ(out.type(out.outputs().at(0).second).shape, (Shape{2, 24, 6, 5}));
  }
}

TEST(LayoutPropagation, ChannelsLastBlocksEachValueByItsChannels) {
  const Graph out = passes::layout_propagation(passes::epilogue_fusion(residual_chain(2, 20)),
                                               ds::ops::kChannelsLast);
  EXPECT_EQ(count_op(out, "blocked_conv2d"), 3) << out.str();
  EXPECT_EQ(count_op(out, "to_blocked") + count_op(out, "from_blocked"), 2) << out.str();
  for (const auto& n : out.nodes()) {
    if (n.op->name == "to_blocked") {
      EXPECT_EQ(n.outputs[0].shape, (Shape{2, 1, 11, 9, 3}));
    }
    if (n.op->name == "from_blocked") {
      EXPECT_EQ(g_shape(out, n.inputs[0]), (Shape{2, 1, 6, 5, 24}));
    }
  }
}

TEST(LayoutPropagation, ResultsMatchPlainGraphAndReference) {
  for (const int64_t block : {int64_t{8}, int64_t{16}, ds::ops::kChannelsLast})
    for (const int64_t channels : {5, 12, 20}) {
      SCOPED_TRACE("block " + std::to_string(block) + ", channels " + std::to_string(channels));
      for (const bool fused : {false, true}) {
        Graph g = residual_chain(3, channels);
        if (fused) g = passes::epilogue_fusion(g);
        const Graph out = passes::layout_propagation(g, block);
        ASSERT_EQ(count_op(out, "blocked_conv2d"), 3);
        const std::map<std::string, Tensor> feeds{{"x", rnd({3, 3, 11, 9}, 7)}};
        const Tensor plain = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds).at("y");
        const Tensor blocked = ds::compile(out, "cpu", {.opt_level = 0}).run(feeds).at("y");
        expect_close(plain, blocked, 1e-4);
        expect_close(reference_run(g, feeds).at("y"), reference_run(out, feeds).at("y"), 1e-12);
        expect_close(reference_run(out, feeds).at("y"), blocked, 1e-4);
      }
    }
}

TEST(LayoutPropagation, MaxPoolingJoinsTheChain) {
  for (const int64_t block : {int64_t{8}, int64_t{16}, ds::ops::kChannelsLast}) {
    SCOPED_TRACE("block " + std::to_string(block));
    Graph g;
    Tensor x = g.placeholder("x", {2, 20, 13, 11});
    Tensor a = ds::relu(conv(x, g, 20, 20, 3, 1, 1));
    Tensor p = ds::max_pool2d(a, {3}, {2}, {1});
    g.output(conv(p, g, 12, 20, 3, 1, 2) + conv(p, g, 12, 20, 1, 1, 3), "y");
    const Graph out = passes::layout_propagation(g, block);
    EXPECT_EQ(count_op(out, "blocked_max_pool2d"), 1) << out.str();
    EXPECT_EQ(count_op(out, "blocked_conv2d"), 3) << out.str();
    EXPECT_EQ(count_op(out, "to_blocked") + count_op(out, "from_blocked"), 2) << out.str();
    const std::map<std::string, Tensor> feeds{{"x", rnd({2, 20, 13, 11}, 8)}};
    const Tensor plain = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds).at("y");
    const auto exe = ds::compile(out, "cpu", {.opt_level = 0});
    if (passes::conv_channel_block() != 0) {
      EXPECT_EQ(impl_of(exe, "blocked_max_pool2d"), "onednn-blocked") << exe.explain();
    }
    expect_close(plain, exe.run(feeds).at("y"), 1e-4);
    expect_close(reference_run(g, feeds).at("y"), reference_run(out, feeds).at("y"), 1e-12);
  }
}

TEST(LayoutPropagation, CeilModePoolingSplitsTheChain) {
  Graph g;
  Tensor x = g.placeholder("x", {1, 8, 8, 8});
  Tensor a = conv(conv(x, g, 8, 8, 3, 1, 1), g, 8, 8, 3, 1, 2);
  Tensor p = ds::max_pool2d(a, {3}, {2}, {0}, {1}, /*ceil_mode=*/true);
  g.output(conv(conv(p, g, 8, 8, 3, 1, 3), g, 8, 8, 3, 1, 4), "y");
  const Graph out = passes::layout_propagation(g, 8);
  EXPECT_EQ(count_op(out, "max_pool2d"), 1) << out.str();
  EXPECT_EQ(count_op(out, "blocked_conv2d"), 4) << out.str();
  EXPECT_EQ(count_op(out, "to_blocked") + count_op(out, "from_blocked"), 4) << out.str();
  // The op itself still pools in ceil mode (its reference kernel).
  Graph b;
  Tensor xb = b.placeholder("x", {2, 20, 7, 7});
  Tensor pooled = ds::apply1(
      "blocked_max_pool2d", {ds::apply1("to_blocked", {xb}, {{"block", int64_t{16}}})},
      {{"kernel_size", std::vector<int64_t>{3}}, {"stride", std::vector<int64_t>{2}},
       {"ceil_mode", true}, {"channels", int64_t{20}}});
  b.output(ds::apply1("from_blocked", {pooled}, {{"channels", int64_t{20}}}), "y");
  const Tensor feed = rnd({2, 20, 7, 7}, 5);
  expect_close(ds::max_pool2d(feed, {3}, {2}, {0}, {1}, true),
               ds::compile(b, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y"), 0);
}

TEST(LayoutPropagation, ReorderKernelsMatchReferenceIncludingZeroPadding) {
  for (const int64_t block : {8, 16, 21}) {  // 21: channels-last
    Graph g;
    Tensor x = g.placeholder("x", {2, 21, 3, 5});
    Tensor b = ds::apply1("to_blocked", {x}, {{"block", block}});
    g.output(b, "blocked");
    g.output(ds::apply1("from_blocked", {ds::relu(b)}, {{"channels", int64_t{21}}}), "plain");
    const std::map<std::string, Tensor> feeds{{"x", rnd({2, 21, 3, 5}, 3)}};
    const auto exe = ds::compile(g, "cpu", {.opt_level = 0});
    if (passes::conv_channel_block() != 0) {
      EXPECT_NE(exe.explain().find("onednn-reorder"), std::string::npos) << exe.explain();
    }
    const auto fast = exe.run(feeds);
    const auto want = reference_run(g, feeds);
    EXPECT_EQ(fast.at("blocked").shape(), (Shape{2, (21 + block - 1) / block, 3, 5, block}));
    expect_close(want.at("blocked"), fast.at("blocked"), 0);  // padding channels are 0 in both
    expect_close(want.at("plain"), fast.at("plain"), 0);
    expect_close(ds::relu(feeds.at("x")), fast.at("plain"), 0);
  }
}

TEST(LayoutPropagation, LeavesGraphsWithoutAChainAlone) {
  // A convolution feeding a reshape: neither convolution has a conv neighbour.
  Graph g;
  Tensor x = g.placeholder("x", {1, 8, 6, 6});
  Tensor a = conv(x, g, 8, 8, 3, 1, 1);
  Tensor r = ds::reshape(a, {1, 8, 3, 12});
  g.output(conv(r, g, 8, 8, 3, 1, 2), "y");
  EXPECT_EQ(passes::layout_propagation(g, 16).str(), g.str());
  // One convolution with an activation: a reorder pair would gain nothing.
  Graph single;
  Tensor xs = single.placeholder("x", {1, 8, 6, 6});
  single.output(ds::relu(conv(xs, single, 8, 8, 3, 1, 3)), "y");
  EXPECT_EQ(passes::layout_propagation(single, 16).str(), single.str());
  // Grouped convolutions and a broadcasting add do not join a chain.
  Graph grouped;
  Tensor xg = grouped.placeholder("x", {1, 8, 6, 6});
  Tensor ga = ds::conv2d(xg, grouped.constant(rnd({8, 4, 3, 3}, 4)), {}, {1}, {1}, {1}, 2);
  Tensor gb = ds::conv2d(ga, grouped.constant(rnd({8, 4, 3, 3}, 5)), {}, {1}, {1}, {1}, 2);
  grouped.output(gb + grouped.constant(rnd({1, 8, 1, 1}, 6)), "y");
  EXPECT_EQ(passes::layout_propagation(grouped, 16).str(), grouped.str());
  // No block from the backend: no change.
  Graph chain = residual_chain(1, 8);
  EXPECT_EQ(passes::layout_propagation(chain, 0).str(), chain.str());
}

TEST(LayoutPropagation, ValueLeavingMidChainGetsOneReorderPerExit) {
  // The middle activation is both a graph output and read by a reshape.
  Graph g;
  Tensor x = g.placeholder("x", {1, 8, 6, 6});
  Tensor a = ds::relu(conv(x, g, 8, 8, 3, 1, 1));
  Tensor b = conv(a, g, 8, 8, 3, 1, 2);
  g.output(a, "a");
  g.output(ds::reshape(a, {8, 36}), "flat");
  g.output(b, "b");
  const Graph out = passes::layout_propagation(g, 8);
  EXPECT_EQ(count_op(out, "blocked_conv2d"), 2) << out.str();
  EXPECT_EQ(count_op(out, "to_blocked"), 1) << out.str();
  EXPECT_EQ(count_op(out, "from_blocked"), 2) << out.str();  // a (output and reshape), b
  const std::map<std::string, Tensor> feeds{{"x", rnd({1, 8, 6, 6}, 9)}};
  const auto want = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds);
  const auto got = ds::compile(out, "cpu", {.opt_level = 0}).run(feeds);
  for (const char* name : {"a", "flat", "b"}) expect_close(want.at(name), got.at(name), 1e-4);
}

TEST(LayoutPropagation, WeightsFedAtRunTimeAreReorderedEveryRun) {
  Graph g;
  Tensor x = g.placeholder("x", {2, 12, 7, 7});
  Tensor w1 = g.placeholder("w1", {12, 12, 3, 3}), w2 = g.placeholder("w2", {12, 12, 3, 3});
  g.output(ds::conv2d(ds::relu(ds::conv2d(x, w1, {}, {1}, {1})), w2, {}, {2}, {1}), "y");
  const Graph out = passes::layout_propagation(g, 16);
  ASSERT_EQ(count_op(out, "blocked_conv2d"), 2) << out.str();
  for (const auto& n : out.nodes())
    if (n.op->name == "blocked_conv2d") {
      EXPECT_FALSE(std::get<bool>(n.attrs.at("weights_constant")));
    }
  const auto plain = ds::compile(g, "cpu", {.opt_level = 0});
  const auto blocked = ds::compile(out, "cpu", {.opt_level = 0});
  for (uint64_t seed : {1, 2}) {  // new weights on the second run must be used
    const std::map<std::string, Tensor> feeds{{"x", rnd({2, 12, 7, 7}, seed)},
                                              {"w1", rnd({12, 12, 3, 3}, seed + 10)},
                                              {"w2", rnd({12, 12, 3, 3}, seed + 20)}};
    expect_close(plain.run(feeds).at("y"), blocked.run(feeds).at("y"), 1e-4);
  }
}

TEST(LayoutPropagation, TrainingGraphsAreLeftAlone) {
  Graph g;
  Tensor x = g.placeholder("x", {1, 8, 6, 6});
  Tensor y = conv(ds::relu(conv(x, g, 8, 8, 3, 1, 1)), g, 8, 8, 3, 1, 2);
  Tensor loss = ds::sum(y * y);
  g.output(loss, "loss");
  g.output(ds::grad(g, loss, {x})[0], "dx");
  EXPECT_EQ(passes::layout_propagation(g, 8).str(), g.str());
}

TEST(LayoutPropagation, ResNet18InferenceThroughThePipeline) {
  if (passes::conv_channel_block() == 0) GTEST_SKIP() << "no blocked convolution kernels in this build";
  ds::nn::manual_seed(3);
  auto model = ds::models::resnet18(10);
  model->eval();
  Graph g;
  Tensor x = g.placeholder("x", {2, 3, 40, 40});
  g.output(model->forward(x), "logits");
  const auto exe = ds::compile(g, "cpu", {.opt_level = 2});
  const Graph& opt = exe.graph();
  // One chain from the stem through max_pool2d and layers 1-4 (20 convolutions) to the
  // global average pooling.
  EXPECT_EQ(count_op(opt, "blocked_conv2d"), 20) << opt.str();
  EXPECT_EQ(count_op(opt, "blocked_max_pool2d"), 1) << opt.str();
  EXPECT_EQ(count_op(opt, "to_blocked"), 1) << opt.str();
  EXPECT_EQ(count_op(opt, "from_blocked"), 1) << opt.str();
  EXPECT_NE(exe.explain().find("onednn-blocked"), std::string::npos) << exe.explain();
  const std::map<std::string, Tensor> feeds{{"x", ds::random_normal({2, 3, 40, 40}, 4)}};
  const Tensor want = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds).at("logits");
  expect_close(want, exe.run(feeds).at("logits"), 1e-3);
}

}  // namespace
