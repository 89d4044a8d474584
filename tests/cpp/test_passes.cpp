// Graph passes: IR before and after each one, and results unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "ds/ds.h"
#include "passes/pass_manager.h"

using ds::Graph;
using ds::Tensor;
namespace passes = ds::passes;

namespace {

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

}  // namespace

TEST(Passes, DeadCodeEliminationKeepsOutputsAndPlaceholders) {
  Graph g;
  Tensor x = g.placeholder("x", {4});
  Tensor unused_input = g.placeholder("u", {2});
  ds::exp(x);  // dead
  g.output(ds::relu(x), "y");
  Graph out = passes::dead_code_elimination(g);
  EXPECT_EQ(count_op(out, "exp"), 0);
  EXPECT_EQ(count_op(out, "relu"), 1);
  EXPECT_EQ(count_op(out, "placeholder"), 2);
  EXPECT_EQ(out.outputs().at(0).first, "y");
  (void)unused_input;
}

TEST(Passes, ConstantFoldingEvaluatesConstantSubgraphs) {
  Graph g;
  Tensor x = g.placeholder("x", {3});
  Tensor c = g.constant(Tensor::from_vector<float>({1, 2, 3}, {3}));
  Tensor folded = ds::exp(c) * 2.0;  // constant
  g.output(x + folded, "y");
  Graph out = passes::dead_code_elimination(passes::constant_folding(g));
  EXPECT_EQ(count_op(out, "exp"), 0);
  EXPECT_EQ(count_op(out, "mul"), 0);
  EXPECT_EQ(count_op(out, "add"), 1);
  auto r = ds::compile(out, "cpu", {.opt_level = 0}).run({{"x", Tensor::zeros({3})}});
  EXPECT_NEAR(r.at("y").data<float>()[2], 2 * std::exp(3.0), 1e-4);
}

TEST(Passes, CseMergesDuplicateWork) {
  Graph g;
  Tensor x = g.placeholder("x", {8});
  Tensor a = ds::tanh(x);
  Tensor b = ds::tanh(x);
  g.output(a + b, "y");
  Graph out = passes::common_subexpression_elimination(g);
  out = passes::dead_code_elimination(out);
  EXPECT_EQ(count_op(out, "tanh"), 1);
  // Different attributes are different work.
  Graph g2;
  Tensor y = g2.placeholder("y", {8});
  g2.output(ds::leaky_relu(y, 0.1) + ds::leaky_relu(y, 0.2), "z");
  EXPECT_EQ(count_op(passes::common_subexpression_elimination(g2), "leaky_relu"), 2);
}

TEST(Passes, AlgebraicIdentitiesAndChains) {
  Graph g;
  Tensor x = g.placeholder("x", {2, 3, 4});
  Tensor t = ds::permute(ds::permute(x, {2, 0, 1}), {1, 2, 0});  // identity
  Tensor r = ds::reshape(ds::reshape(t, {6, 4}), {24});
  Tensor m = (r * 1.0 + 0.0) / 1.0;
  Tensor c = ds::cast(ds::cast(m, ds::DType::Float64), ds::DType::Float32);  // lossless round trip
  g.output(-(-c), "y");
  Graph out = passes::dead_code_elimination(passes::algebraic_simplification(g));
  EXPECT_EQ(count_op(out, "permute"), 0) << out.str();
  EXPECT_EQ(count_op(out, "reshape"), 1) << out.str();
  EXPECT_EQ(count_op(out, "mul") + count_op(out, "add") + count_op(out, "div"), 0) << out.str();
  EXPECT_EQ(count_op(out, "cast"), 0) << out.str();
  EXPECT_EQ(count_op(out, "neg"), 0) << out.str();
  // A lossy cast chain must stay.
  Graph g2;
  Tensor y = g2.placeholder("y", {4});
  g2.output(ds::cast(ds::cast(y, ds::DType::Int32), ds::DType::Float32), "z");
  EXPECT_EQ(count_op(passes::algebraic_simplification(g2), "cast"), 2);
  // x * 1 that broadcasts to a bigger shape is not an identity.
  Graph g3;
  Tensor s = g3.placeholder("s", {1});
  g3.output(s * Tensor::full({3}, 1.0), "w");
  EXPECT_EQ(count_op(passes::algebraic_simplification(g3), "mul"), 1);
}

TEST(Passes, PipelineMatchesUnoptimizedResults) {
  Graph g;
  Tensor x = g.placeholder("x", {5});
  Tensor k = g.constant(Tensor::full({5}, 0.5));
  Tensor y = ds::sigmoid(x * (k + k)) + ds::sigmoid(x * (k + k)) * 1.0;
  g.output(y, "y");
  Tensor feed = Tensor::from_vector<float>({-2, -1, 0, 1, 2}, {5});
  Tensor a = ds::compile(g, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y");
  ds::Executable opt = ds::compile(g, "cpu", {.opt_level = 3});
  Tensor b = opt.run({{"x", feed}}).at("y");
  for (int i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(a.data<float>()[i], b.data<float>()[i]);
  EXPECT_LT(opt.stats().kernels, ds::compile(g, "cpu", {.opt_level = 0}).stats().kernels);
  EXPECT_NE(opt.explain().find("cse"), std::string::npos) << opt.explain();
}

TEST(Passes, DumpIrWritesOneFilePerPass) {
  const auto dir = std::filesystem::temp_directory_path() / "ds_dump_test";
  std::filesystem::remove_all(dir);
  setenv("DS_DUMP_IR", "all", 1);
  setenv("DS_DUMP_DIR", dir.c_str(), 1);
  Graph g;
  g.output(ds::relu(g.placeholder("x", {2})), "y");
  ds::compile(g, "cpu", {.opt_level = 3});
  unsetenv("DS_DUMP_IR");
  unsetenv("DS_DUMP_DIR");
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1 + static_cast<int>(passes::pipeline().size()));
  std::filesystem::remove_all(dir);
}

TEST(Passes, BatchNormFoldsIntoConvAndLinear) {
  auto rnd = [](ds::Shape s, uint64_t seed, double lo = -1, double hi = 1) {
    return ds::random_uniform(s, seed, lo, hi);
  };
  Graph g;
  Tensor x = g.placeholder("x", {2, 3, 8, 8});
  Tensor conv = ds::conv2d(x, g.constant(rnd({4, 3, 3, 3}, 1)), g.constant(rnd({4}, 2)), {1}, {1});
  Tensor bn = ds::batch_norm(conv, g.constant(rnd({4}, 3)), g.constant(rnd({4}, 4, 0.5, 2)),
                             g.constant(rnd({4}, 5)), g.constant(rnd({4}, 6)), 1e-3);
  Tensor flat = ds::flatten(ds::relu(bn));
  Tensor lin = ds::linear(flat, g.constant(rnd({5, 256}, 7)));
  g.output(ds::batch_norm(lin, g.constant(rnd({5}, 8)), g.constant(rnd({5}, 9, 0.5, 2))), "y");
  Graph folded = passes::dead_code_elimination(passes::fold_batch_norm(g));
  EXPECT_EQ(count_op(folded, "batch_norm"), 0) << folded.str();
  EXPECT_EQ(count_op(folded, "conv2d"), 1);
  EXPECT_EQ(count_op(folded, "linear"), 1);
  Tensor feed = rnd({2, 3, 8, 8}, 10);
  Tensor a = ds::compile(g, "cpu", {.opt_level = 0}).run({{"x", feed}}).at("y");
  Tensor b = ds::compile(g, "cpu", {.opt_level = 2}).run({{"x", feed}}).at("y");
  for (int64_t i = 0; i < a.numel(); ++i)
    EXPECT_NEAR(a.data<float>()[i], b.data<float>()[i], 1e-4 * (1 + std::abs(a.data<float>()[i])));
  // A batch norm whose statistics are fed at run time stays.
  Graph g2;
  Tensor x2 = g2.placeholder("x", {2, 4});
  g2.output(ds::batch_norm(ds::linear(x2, g2.constant(rnd({4, 4}, 11))), g2.placeholder("m", {4}),
                           g2.placeholder("v", {4})), "y");
  EXPECT_EQ(count_op(passes::fold_batch_norm(g2), "batch_norm"), 1);
}
