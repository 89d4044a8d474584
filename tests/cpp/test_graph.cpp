// Graph IR, registry and the executor: building, printing, hashing, verifying,
// compiling, feeding.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "ds/ds.h"

using ds::DType;
using ds::Shape;
using ds::Tensor;

namespace {

template <typename E, typename F> std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST(Graph, BuildPrintAndDot) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {ds::dyn, 4});
  Tensor y = g.relu(x + 1.0, "y");
  EXPECT_TRUE(y.is_symbolic());
  EXPECT_EQ(y.shape(), (Shape{ds::dyn, 4}));
  const std::string text = g.str();
  EXPECT_TRUE(contains(text, "placeholder 'x'")) << text;
  EXPECT_TRUE(contains(text, "relu 'y'")) << text;
  EXPECT_TRUE(contains(text, "float32[None, 4]")) << text;
  EXPECT_TRUE(contains(g.to_dot(), "digraph")) << g.to_dot();
  ASSERT_EQ(g.outputs().size(), 1u);
  EXPECT_EQ(g.outputs()[0].first, "y");
  g.verify();
}

TEST(Graph, StructuralHashIgnoresLabelsButNotStructure) {
  auto build = [](const std::string& label, double c) {
    ds::Graph g;
    Tensor x = g.placeholder("x", {3});
    g.add("mul", {x, Tensor::scalar(c)}, {}, label);
    return g.hash();
  };
  EXPECT_EQ(build("a", 2.0), build("b", 2.0));
  EXPECT_NE(build("a", 2.0), build("a", 3.0));
}

TEST(Graph, ErrorsNameTheNodeAndShapes) {
  ds::Graph g;
  Tensor a = g.placeholder("a", {2, 3});
  Tensor b = g.placeholder("b", {4, 3});
  auto msg = message_of<ds::ShapeError>([&] { g.add("add", {a, b}, {}, "sum_ab"); });
  EXPECT_TRUE(contains(msg, "sum_ab")) << msg;
  EXPECT_TRUE(contains(msg, "[2, 3]")) << msg;
  EXPECT_TRUE(contains(msg, "[4, 3]")) << msg;
  msg = message_of<ds::NotFoundError>([&] { g.add("nonexistent_op", {a}); });
  EXPECT_TRUE(contains(msg, "nonexistent_op")) << msg;
  msg = message_of<ds::ValueError>([&] { g.add("relu", {a, b}); });
  EXPECT_TRUE(contains(msg, "expected 1 inputs, got 2")) << msg;
  msg = message_of<ds::ValueError>([&] { g.add("relu", {a}, {{"bogus", int64_t{1}}}); });
  EXPECT_TRUE(contains(msg, "bogus")) << msg;
  msg = message_of<ds::TypeError>([&] { g.add("leaky_relu", {a}, {{"negative_slope", "x"}}); });
  EXPECT_TRUE(contains(msg, "negative_slope")) << msg;
  EXPECT_THROW(g.placeholder("a", {1}), ds::ValueError);
  ds::Graph other;
  EXPECT_THROW(other.add("relu", {a}), ds::ValueError);
}

TEST(Executable, RunsAndValidatesFeeds) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {2, 3});
  Tensor w = g.placeholder("w", {3}, DType::Float32);
  g.output(g.relu(x * w), "out");
  ds::Executable exe = ds::compile(g, "cpu");
  EXPECT_EQ(exe.target(), "cpu");
  auto out = exe.run({{"x", Tensor::from_vector<double>({1, -2, 3, -4, 5, -6}, {2, 3})},
                      {"w", Tensor::from_vector<float>({1, 1, -1}, {3})}});
  const Tensor& o = out.at("out");
  EXPECT_EQ(o.dtype(), DType::Float32);  // the float64 feed was cast
  const float expect[] = {1, 0, 0, 0, 5, 6};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(o.data<float>()[i], expect[i]);

  const Tensor good_x = Tensor::zeros({2, 3}), good_w = Tensor::zeros({3});
  auto msg = message_of<ds::NotFoundError>([&] { exe.run({{"x", good_x}}); });
  EXPECT_TRUE(contains(msg, "missing feed for placeholder 'w'")) << msg;
  msg = message_of<ds::NotFoundError>(
      [&] { exe.run({{"x", good_x}, {"w", good_w}, {"z", good_w}}); });
  EXPECT_TRUE(contains(msg, "'z'")) << msg;
  msg = message_of<ds::ShapeError>([&] { exe.run({{"x", Tensor::zeros({3, 2})}, {"w", good_w}}); });
  EXPECT_TRUE(contains(msg, "'x'") && contains(msg, "[2, 3]") && contains(msg, "[3, 2]")) << msg;
  ds::Graph gi;
  gi.relu(gi.placeholder("idx", {3}, DType::Int64));
  msg = message_of<ds::TypeError>([&] { ds::compile(gi).run({{"idx", good_w}}); });
  EXPECT_TRUE(contains(msg, "'idx'") && contains(msg, "int64") && contains(msg, "float32")) << msg;
  // NaN and Inf inputs are computed, not rejected.
  auto nan_out = exe.run({{"x", Tensor::full({2, 3}, NAN)}, {"w", Tensor::full({3}, 1.0)}});
  EXPECT_TRUE(std::isnan(nan_out.at("out").data<float>()[0]));
}

TEST(Executable, SymbolicBatchServesEveryBatchSize) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {ds::dyn, 2});
  g.output(ds::reshape(x * 2.0, {-1}), "flat");
  ds::Executable exe = ds::compile(g);
  for (int64_t n : {1, 3, 8}) {
    auto out = exe.run({{"x", Tensor::full({n, 2}, 1.5)}});
    const Tensor& f = out.at("flat");
    ASSERT_EQ(f.shape(), (Shape{2 * n}));
    EXPECT_EQ(f.data<float>()[2 * n - 1], 3.0f);
  }
}

TEST(Executable, UnknownAndUnavailableTargetsListWhatExists) {
  ds::Graph g;
  g.relu(g.placeholder("x", {1}));
  auto msg = message_of<ds::NotFoundError>([&] { ds::compile(g, "npu"); });
  EXPECT_TRUE(contains(msg, "npu") && contains(msg, "cpu")) << msg;
  const auto targets = ds::available_targets();
  if (std::find(targets.begin(), targets.end(), "gpu") == targets.end()) {
    // No usable GPU here: asking for one names the targets that exist.
    msg = message_of<ds::UnavailableError>([&] { ds::compile(g, "gpu"); });
    EXPECT_TRUE(contains(msg, "gpu") && contains(msg, "cpu")) << msg;
  }
  EXPECT_THROW(ds::compile(g, "cpu", {.opt_level = 7}), ds::ValueError);
}

TEST(Executable, IsThreadSafe) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {64});
  g.output(ds::exp(ds::neg(x)) + x, "y");
  ds::Executable exe = ds::compile(g);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto y = exe.run({{"x", Tensor::full({64}, t)}}).at("y");
        if (std::abs(y.data<float>()[7] - (std::exp(-t) + t)) > 1e-5) ++bad;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Eager, OpsRunAtOnceAndMatchGraphMode) {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor e = ds::tanh(a) * 2.0 - a;
  ds::Graph g;
  Tensor p = g.placeholder("a", {2, 2});
  g.output(ds::tanh(p) * 2.0 - p, "e");
  Tensor c = ds::compile(g).run({{"a", a}}).at("e");
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(e.data<float>()[i], c.data<float>()[i]);
  EXPECT_EQ(ds::hdl::relu(a).shape(), a.shape());
}
