// compile(..., memory_budget): micro-batching along axis 0 when the plan is over
// the budget and the graph allows it, a compile-time error naming the need and
// the budget otherwise.
#include <gtest/gtest.h>

#include <cmath>

#include "ds/ds.h"
#include "runtime/micro_batch.h"

using ds::Graph;
using ds::Tensor;

namespace {

Tensor rnd(const ds::Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  return ds::random_uniform(s, seed, lo, hi);
}

void expect_close(const Tensor& want, const Tensor& got) {
  ASSERT_EQ(want.shape(), got.shape());
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double w = ds::element_as_double(want, i), g = ds::element_as_double(got, i);
    ASSERT_NEAR(w, g, 1e-5 * (1 + std::abs(w))) << "element " << i;
  }
}

Graph mlp(int64_t batch) {
  Graph g;
  Tensor h = g.placeholder("x", {batch, 64});
  for (int i = 0; i < 3; ++i)
    h = ds::relu(ds::linear(h, g.constant(rnd({256, i == 0 ? 64 : 256}, i, -0.1, 0.1)),
                            g.constant(rnd({256}, 10 + i))));
  g.output(ds::linear(h, g.constant(rnd({10, 256}, 20, -0.1, 0.1))), "y");
  return g;
}

std::string compile_error(const Graph& g, int64_t budget) {
  try {
    ds::compile(g, "cpu", {.memory_budget = budget});
  } catch (const ds::ValueError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(MemoryBudget, OverBudgetMlpRunsMicroBatchesWithTheFullBatchResult) {
  const Graph g = mlp(48);
  const ds::Executable full = ds::compile(g, "cpu");
  const int64_t need = ds::planned_bytes(full);
  const ds::Executable small = ds::compile(g, "cpu", {.memory_budget = need / 3});
  EXPECT_NE(small.explain().find("micro-batches of"), std::string::npos) << small.explain();
  EXPECT_LE(small.stats().arena_bytes, need / 3);
  Tensor x = rnd({48, 64}, 7);
  expect_close(full.run({x})[0], small.run({x})[0]);
  // A budget the plan fits runs whole.
  const ds::Executable roomy = ds::compile(g, "cpu", {.memory_budget = need});
  EXPECT_EQ(roomy.explain().find("micro-batches"), std::string::npos);
  // Feeds of another batch are refused with the reason.
  EXPECT_THROW(small.run({rnd({16, 64}, 8)}), ds::ShapeError);
}

TEST(MemoryBudget, CnnWithReshapeSplitsAlongTheBatch) {
  Graph g;
  Tensor x = g.placeholder("x", {12, 3, 16, 16});
  Tensor c = ds::relu(ds::conv2d(x, g.constant(rnd({8, 3, 3, 3}, 1)), g.constant(rnd({8}, 2)), {1}, {1}));
  Tensor p = ds::max_pool2d(c, {2, 2}, {2, 2});
  Tensor flat = ds::reshape(p, {12, 8 * 8 * 8});
  // A weight whose leading extent equals the batch by chance keeps it.
  Tensor w = ds::reshape(g.constant(rnd({6, 1024}, 3, -0.05, 0.05)), {12, 512});
  g.output(ds::softmax(ds::linear(flat, w), -1), "y");
  const ds::Executable full = ds::compile(g, "cpu");
  const int64_t budget = ds::planned_bytes(full) / 4;
  const ds::Executable small = ds::compile(g, "cpu", {.memory_budget = budget});
  EXPECT_NE(small.explain().find("micro-batches of"), std::string::npos) << small.explain();
  Tensor feed = rnd({12, 3, 16, 16}, 4);
  expect_close(full.run({feed})[0], small.run({feed})[0]);
}

TEST(MemoryBudget, GraphMixingTheBatchFailsAtCompileTime) {
  Graph g;
  Tensor x = g.placeholder("x", {32, 100});
  g.output(ds::relu(x - ds::mean(x, {0}, true)), "y");  // statistics over the batch
  const std::string msg = compile_error(g, 1000);
  EXPECT_NE(msg.find("the plan needs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("over the memory_budget of 1000 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot be split along the batch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mean"), std::string::npos) << msg;
  EXPECT_NE(msg.find("reduces axis 0"), std::string::npos) << msg;
  // The same graph under a budget it fits compiles.
  EXPECT_EQ(compile_error(g, 1 << 20), "");
}

TEST(MemoryBudget, BudgetBelowOneRowFailsAtCompileTime) {
  const std::string msg = compile_error(mlp(8), 100);
  EXPECT_NE(msg.find("even a micro-batch of 1 row needs"), std::string::npos) << msg;
}

TEST(MemoryBudget, SeparabilityFollowsTheOps) {
  Graph ok;
  Tensor a = ok.placeholder("a", {4, 3, 5});
  ok.output(ds::permute(ds::sum(a * 2.0, {-1}), {0, 1}) + ok.constant(rnd({3}, 1)), "y");
  EXPECT_EQ(ds::batch_split_blocker(ok), "");
  Graph moves;
  Tensor b = moves.placeholder("b", {4, 4});
  moves.output(ds::permute(b, {1, 0}), "y");
  EXPECT_NE(ds::batch_split_blocker(moves).find("works along axis 0"), std::string::npos);
  Graph mixed;
  Tensor c = mixed.placeholder("c", {4, 6});
  mixed.output(ds::reshape(c, {6, 4}), "y");
  EXPECT_NE(ds::batch_split_blocker(mixed).find("does not keep the batch"), std::string::npos);
}
