// batch_norm_train's epilogue (relu, residual): the kernels against the float64
// reference, gradients against finite differences, and the batch_norm_epilogue
// pass on a residual block: fewer nodes, the same results.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "cuda_dnn_check.h"
#include "ds/autodiff.h"
#include "ds/ds.h"
#include "gradcheck.h"
#include "op_check.h"
#include "ir/ops/batch_norm_train.h"
#include "passes/batch_norm_epilogue.h"

namespace {

using ds::AttrMap;
using ds::DType;
using ds::Graph;
using ds::Shape;
using ds::Tensor;

// [N, C, H, W] (the plane kernels) and [rows, C, 1, 1] (the column kernels).
const Shape kShapes[] = {{3, 5, 4, 3}, {2, 16, 8, 8}, {600, 37, 1, 1}, {64, 16, 1, 1}};

std::vector<Tensor> reference(const std::vector<Tensor>& in, const AttrMap& attrs) {
  const ds::OpDef& def = ds::get_op("batch_norm_train");
  const AttrMap full = ds::complete_attrs(def, attrs, "batch_norm_train");
  ds::OpContext ctx{def, full, ds::test::types_of(in), ""};
  std::vector<Tensor> outs;
  for (const auto& t : def.infer(ctx)) outs.push_back(Tensor::empty(t.shape, t.dtype));
  def.reference(ds::KernelCall{ctx, in, outs});
  return outs;
}

// x, weight, bias and a residual of x's shape and type.
std::vector<Tensor> operands(const Shape& s, DType t, uint64_t seed) {
  return {(ds::test::random_tensor(s, seed) * 2.0 + 1.0).to(t),
          ds::test::random_tensor({s[1]}, seed + 1, DType::Float32),
          ds::test::random_tensor({s[1]}, seed + 2, DType::Float32),
          ds::test::random_tensor(s, seed + 3).to(t)};
}

TEST(BatchNormEpilogue, CpuKernelsMatchTheReference) {
  for (DType t : {DType::Float32, DType::BFloat16})
    for (const Shape& s : kShapes)
      for (bool residual : {false, true}) {
        auto in = operands(s, t, 10);
        if (!residual) in.pop_back();
        const AttrMap attrs = {{"eps", 1e-5}, {"relu", true}};
        const auto want = reference(in, attrs);
        const auto got = ds::apply("batch_norm_train", in, attrs);
        const std::string at = std::string(ds::dtype_name(t)) + " " + ds::shape_str(s) +
                               (residual ? " with a residual" : "");
        // bf16: the kernel rounds y before adding the residual (as the graph's add did).
        EXPECT_LT(ds::test::rel_diff(got[0], ds::test::values(want[0])),
                  t == DType::Float32 ? 1e-5 : 1e-2) << at;
        EXPECT_LT(ds::test::rel_diff(got[1], ds::test::values(want[1])), 1e-5) << at;
        double negative = 0;
        for (int64_t i = 0; i < got[0].numel(); ++i)
          negative = std::min(negative, ds::element_as_double(got[0], i));
        EXPECT_EQ(negative, 0.0) << at << ": relu leaves no negative value";
      }
}

TEST(BatchNormEpilogue, GradientsMatchFiniteDifferences) {
  for (const Shape& s : {Shape{3, 2, 3, 2}, Shape{6, 3, 1, 1}}) {
    const Tensor cy = ds::testing::lcg_tensor(s, 40);
    auto fn = [&](const std::vector<Tensor>& a) {
      const auto y = ds::apply("batch_norm_train", a, {{"eps", 1e-3}, {"relu", true}})[0];
      return ds::sum(y * cy);
    };
    ds::testing::expect_gradients_match(
        fn, {ds::testing::lcg_tensor(s, 41, -2, 2), ds::testing::lcg_tensor({s[1]}, 42, 0.5, 1.5),
             ds::testing::lcg_tensor({s[1]}, 43), ds::testing::lcg_tensor(s, 44, -1, 1)},
        {0, 1, 2, 3}, 1e-5);
  }
}

TEST(BatchNormEpilogue, ResidualMustMatchX) {
  auto in = operands({2, 3, 4, 4}, DType::Float32, 20);
  in[3] = ds::test::random_tensor({2, 3, 4, 5}, 21, DType::Float32);
  EXPECT_THROW(ds::apply("batch_norm_train", in, {{"relu", true}}), ds::TypeError);
}

// conv -> bn -> relu -> conv -> bn -> (+ x) -> relu, NCHW or channels-last
// ([N*H*W, C, 1, 1] batch norm between reshapes), with the gradients.
Graph residual_block(bool channels_last) {
  Graph g;
  Tensor x = g.placeholder("x", {2, 4, 6, 6});
  Tensor w1 = g.placeholder("w1", {4, 4, 3, 3}), w2 = g.placeholder("w2", {4, 4, 3, 3});
  Tensor g1 = g.placeholder("g1", {4}), b1 = g.placeholder("b1", {4});
  Tensor g2 = g.placeholder("g2", {4}), b2 = g.placeholder("b2", {4});
  auto bn = [&](const Tensor& h, const Tensor& gamma, const Tensor& beta) {
    if (!channels_last) return ds::batch_norm_train(h, gamma, beta).y;
    const Tensor rows = ds::reshape(ds::permute(h, {0, 2, 3, 1}), {-1, 4, 1, 1});
    return ds::permute(ds::reshape(ds::batch_norm_train(rows, gamma, beta).y, {2, 6, 6, 4}),
                       {0, 3, 1, 2});
  };
  Tensor h = ds::relu(bn(ds::conv2d(x, w1, {}, {1}, {1}), g1, b1));
  Tensor y = ds::relu(bn(ds::conv2d(h, w2, {}, {1}, {1}), g2, b2) + x);
  const auto grads = ds::grad(g, ds::sum(y * y), {x, w1, w2, g1, b1, g2, b2});
  g.output(y, "y");
  for (size_t i = 0; i < grads.size(); ++i) g.output(grads[i], "g" + std::to_string(i));
  return g;
}

int count(const Graph& g, const std::string& op) {
  int c = 0;
  for (const auto& n : g.nodes()) c += n.op->name == op;
  return c;
}

std::map<std::string, Tensor> block_feeds() {
  std::map<std::string, Tensor> f;
  uint64_t seed = 50;
  for (const auto& [name, shape] :
       std::map<std::string, Shape>{{"x", {2, 4, 6, 6}}, {"w1", {4, 4, 3, 3}}, {"w2", {4, 4, 3, 3}},
                                    {"g1", {4}}, {"b1", {4}}, {"g2", {4}}, {"b2", {4}}})
    f[name] = ds::random_normal(shape, seed++, 0.0, 0.5);
  return f;
}

TEST(BatchNormEpilogue, PassTakesTheReluAndTheResidualAdd) {
  const Graph g = residual_block(false);
  const Graph after = ds::passes::batch_norm_epilogue(g);
  after.verify();
  EXPECT_EQ(count(g, "relu"), 2);
  EXPECT_EQ(count(after, "relu"), 0);
  int fused = 0, with_residual = 0;
  for (const auto& n : after.nodes()) {
    if (n.op->name != "batch_norm_train") continue;
    fused += std::get<bool>(n.attrs.at("relu"));
    with_residual += n.inputs.size() == 4;
  }
  EXPECT_EQ(fused, 2);
  EXPECT_EQ(with_residual, 1);
}

TEST(BatchNormEpilogue, CompiledResultsEqualTheUnfusedGraph) {
  for (bool channels_last : {false, true})
    for (const std::string precision : {"fp32", "bf16"}) {
      const Graph g = residual_block(channels_last);
      const auto feeds = block_feeds();
      std::map<std::string, Tensor> out[2];
      for (int level : {0, 1}) {
        ds::CompileOptions o;
        o.opt_level = level;  // the pass runs from level 1
        o.precision = precision;
        const ds::Executable exe = ds::compile(g, "cpu", o);
        // Channels-last: a permute after the batch norm's reshape keeps its relu apart;
        // bf16: the block input x is float32, so its add (and relu) stay float32.
        if (level == 1 && !channels_last) {
          EXPECT_EQ(count(exe.graph(), "relu"), precision == "fp32" ? 0 : 1) << precision;
        }
        out[level] = exe.run(feeds);
      }
      for (const auto& [name, want] : out[0])
        EXPECT_LT(ds::test::rel_diff(out[1].at(name), ds::test::values(want)),
                  precision == "fp32" ? 1e-6 : 1e-2)
            << name << (channels_last ? " channels-last " : " NCHW ") << precision;
    }
}

TEST(CudaBatchNormEpilogue, KernelsMatchTheReference) {
  DS_REQUIRE_GPU();
  using namespace cuda_dnn_test;
  for (DType t : {DType::Float32, DType::BFloat16})
    for (const Shape& s : kShapes)
      for (bool residual : {false, true}) {
        auto in = operands(s, t, 30);
        if (!residual) in.pop_back();
        check_op("batch_norm_train", in, {{"relu", true}}, "", t == DType::Float32 ? 1e-4 : 2e-2,
                 "bn epilogue" + at(t, s) + (residual ? " residual" : ""));
      }
}

}  // namespace
