// runs_serially: eager ops and compiled steps under the cost thresholds run on
// the calling thread only (num_threads() is 1 inside their kernels); larger ones
// get every thread. One rule for both paths.
#include <gtest/gtest.h>

#include "ds/ds.h"
#include "runtime/serial_ops.h"

namespace ds {
namespace {

// An op whose kernel writes the num_threads() it saw into its output's first element.
void register_thread_probe() {
  if (find_op("test_threads_seen")) return;
  register_op({.name = "test_threads_seen",
               .num_inputs = 1,
               .infer = [](const OpContext& c) { return std::vector{c.inputs[0]}; },
               .reference = [](const KernelCall& k) {
                 k.outputs[0].data<float>()[0] = static_cast<float>(num_threads());
               }});
}

float threads_seen_eager(int64_t n) {
  return apply1("test_threads_seen", {Tensor::zeros({n})}).data<float>()[0];
}

float threads_seen_compiled(int64_t n) {
  Graph g;
  Tensor x = g.placeholder("x", {n});
  g.output(apply1("test_threads_seen", {x}), "y");
  return compile(g, "cpu").run({{"x", Tensor::zeros({n})}})["y"].data<float>()[0];
}

TEST(SerialOps, ThresholdsOnTheCostModel) {
  EXPECT_TRUE(runs_serially({0.8e6, 1.6e6}));  // a batch-1 784x512 GEMV
  EXPECT_FALSE(runs_serially({kSerialMaxFlops, 1.0}));
  EXPECT_FALSE(runs_serially({1.0, kSerialMaxBytes}));
}

TEST(SerialOps, SmallOpsRunOnTheCallerInEagerModeAndCompiled) {
  register_thread_probe();
  const int before = num_threads();
  set_num_threads(2);
  // The default cost: one FLOP per output element, bytes read + written.
  const int64_t small = 1000, large = static_cast<int64_t>(kSerialMaxFlops) + 1;
  EXPECT_EQ(threads_seen_eager(small), 1.0f);
  EXPECT_EQ(threads_seen_eager(large), 2.0f);
  EXPECT_EQ(threads_seen_compiled(small), 1.0f);
  EXPECT_EQ(threads_seen_compiled(large), 2.0f);
  EXPECT_EQ(num_threads(), 2);  // the cap ends with the op
  set_num_threads(before);
}

}  // namespace
}  // namespace ds
