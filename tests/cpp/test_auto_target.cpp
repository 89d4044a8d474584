// target="auto": explain() states the decision and the cost model's figures.
#include <gtest/gtest.h>

#include <sstream>

#include "ds/cuda.h"
#include "ds/ds.h"

TEST(AutoTarget, ExplainStatesTheCostModelDecision) {
  ds::Graph g;
  ds::Tensor x = g.placeholder("x", {4, 8});
  g.output(ds::relu(ds::linear(x, g.constant(ds::random_uniform({16, 8}, 1)))), "y");
  const ds::Executable e = ds::compile(g, "auto");
  const std::string why = e.explain();
  EXPECT_NE(why.find("FLOPs"), std::string::npos) << why;
  if (ds::cuda::device_count() == 0) {
    EXPECT_EQ(e.target(), "cpu");
    EXPECT_NE(why.find("the CPU is the only device here"), std::string::npos) << why;
    // The figure the rule compares is the cost model's total.
    std::ostringstream figure;
    figure << "cost model: " << e.stats().flops << " FLOPs";
    EXPECT_NE(why.find(figure.str()), std::string::npos) << why;
    EXPECT_NE(why.find("would stay on the CPU"), std::string::npos) << why;
  } else {
    EXPECT_NE(why.find("target 'auto': "), std::string::npos) << why;
  }
}
