// pad_classes: a classifier head over many unaligned classes runs on a class axis
// padded to a multiple of 64 (-inf logits, zero weight rows), with the same loss
// and gradients as the unpadded graph.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "ds/autodiff.h"
#include "ds/compile.h"
#include "ds/cuda.h"
#include "ds/ds.h"
#include "ds/nn/losses.h"
#include "passes/pad_classes.h"

namespace {

using ds::DType;
using ds::Graph;
using ds::Tensor;

struct Head {
  Graph g;
  std::map<std::string, Tensor> feeds;
};

// x [2, 3, 16] -> linear(x, W [classes, 16][, b]) -> cross entropy over [6, classes],
// with the gradients of x, W (and b).
Head head(int64_t classes, bool bias, double label_smoothing = 0.0) {
  Head h;
  Tensor x = h.g.placeholder("x", {2, 3, 16});
  Tensor w = h.g.placeholder("w", {classes, 16});
  Tensor y = h.g.placeholder("y", {6}, DType::Int64);
  Tensor b = bias ? h.g.placeholder("b", {classes}) : Tensor();
  Tensor logits = ds::reshape(ds::linear(x, w, b), {-1, classes});
  Tensor loss = ds::nn::cross_entropy(logits, y, label_smoothing);
  std::vector<Tensor> wrt = {x, w};
  if (bias) wrt.push_back(b);
  const auto grads = ds::grad(h.g, loss, wrt);
  h.g.output(loss, "loss");
  for (size_t i = 0; i < grads.size(); ++i) h.g.output(grads[i], "g" + std::to_string(i));
  h.feeds = {{"x", ds::random_normal({2, 3, 16}, 1)},
             {"w", ds::random_normal({classes, 16}, 2, 0.0, 0.5)},
             {"y", ds::random_uniform({6}, 3, 0, static_cast<double>(classes)).to(DType::Int64)}};
  if (bias) h.feeds["b"] = ds::random_normal({classes}, 4);
  return h;
}

int64_t linear_classes(const Graph& g) {
  for (const auto& n : g.nodes())
    if (n.op->name == "linear") return n.outputs[0].shape.back();
  return -1;
}

int count(const Graph& g, const std::string& op) {
  int c = 0;
  for (const auto& n : g.nodes()) c += n.op->name == op;
  return c;
}

std::map<std::string, Tensor> run(const Graph& g, const std::map<std::string, Tensor>& feeds,
                                  int opt_level, const std::string& target = "cpu",
                                  const std::string& precision = "fp32") {
  ds::CompileOptions o;
  o.opt_level = opt_level;
  o.precision = precision;
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : ds::compile(g, target, o).run(feeds))
    out[name] = t.to(ds::Device::cpu());
  return out;
}

// Padded (opt level 1) against unpadded (opt level 0) results, within `tol` relative.
void expect_same_results(const Head& h, const std::string& target, const std::string& precision,
                         double tol) {
  const auto padded = run(h.g, h.feeds, 1, target, precision);
  const auto plain = run(h.g, h.feeds, 0, target, precision);
  ASSERT_EQ(padded.size(), plain.size());
  for (const auto& [name, want] : plain) {
    const Tensor& got = padded.at(name);
    ASSERT_EQ(got.shape(), want.shape()) << name;
    for (int64_t i = 0; i < want.numel(); ++i) {
      const double a = ds::element_as_double(got, i), b = ds::element_as_double(want, i);
      ASSERT_NEAR(a, b, tol * (1 + std::abs(b))) << name << " element " << i << " on " << target;
    }
  }
}

TEST(PadClasses, PadsTheHeadAndItsGradientProducts) {
  Head h = head(1030, false);
  const Graph after = ds::passes::pad_classes(h.g);
  after.verify();
  EXPECT_EQ(linear_classes(h.g), 1030);
  EXPECT_EQ(linear_classes(after), 1088);  // the next multiple of 64
  EXPECT_GE(count(after, "gemm"), 1);
  EXPECT_GE(count(after, "matmul"), 1);
  for (const auto& n : after.nodes()) {
    const std::string& op = n.op->name;
    if (op == "softmax_cross_entropy" || op == "softmax_cross_entropy_backward") {
      EXPECT_EQ(after.type(n.inputs[0]).shape.back(), 1088) << op;
    } else if (op == "gemm") {
      EXPECT_EQ(n.outputs[0].shape[0], 1088);
    } else if (op == "matmul") {
      EXPECT_EQ(after.type(n.inputs[1]).shape[0], 1088);
    }
  }
}

// With a bias, its gradient (a sum over the rows) is taken of the padded gradient:
// the only slices read are of the padded dW [1088, 16] and db [1088], never of a
// logits-sized value (the pass's unread fallback slices are left to DCE).
TEST(PadClasses, BiasGradientIsASliceOfThePaddedSum) {
  const Graph after = ds::passes::pad_classes(head(1030, true).g);
  std::set<int> read;
  for (const auto& n : after.nodes())
    for (const auto& v : n.inputs) read.insert(v.node);
  for (const auto& [_, v] : after.outputs()) read.insert(v.node);
  int sums = 0;
  for (const auto& n : after.nodes()) {
    if (n.inputs.empty()) continue;
    const ds::Shape& in = after.type(n.inputs[0]).shape;
    if (n.op->name == "sum" && in.back() == 1088) ++sums;
    if (n.op->name == "slice" && read.count(n.id)) {
      EXPECT_TRUE(in == ds::Shape({1088, 16}) || in == ds::Shape({1088}))
          << "a slice of " << ds::shape_str(in) << " is read";
    }
  }
  EXPECT_EQ(sums, 1);
}

TEST(PadClasses, LossAndGradientsMatchTheUnpaddedGraph) {
  for (bool bias : {false, true}) expect_same_results(head(1030, bias), "cpu", "fp32", 1e-5);
}

// On the GPU the head runs in bf16 (cuBLASLt with a -inf bias epilogue, the CUDA
// cross-entropy kernels over -inf columns): same results within bf16 rounding.
TEST(PadClasses, Bf16HeadOnTheGpuMatchesTheUnpaddedGraph) {
  if (ds::cuda::device_count() == 0)
    GTEST_SKIP() << "no CUDA device: " << ds::cuda::unavailable_reason();
  for (bool bias : {false, true}) expect_same_results(head(1030, bias), "cuda", "bf16", 2e-2);
}

TEST(PadClasses, LeavesSmallAlignedAndSmoothedHeadsAlone) {
  for (const Head& h : {head(1000, false), head(1088, false), head(1030, false, 0.1)}) {
    const Graph after = ds::passes::pad_classes(h.g);
    EXPECT_EQ(linear_classes(after), linear_classes(h.g));
    EXPECT_EQ(count(after, "pad"), 0);
  }
}

}  // namespace
