#include <gtest/gtest.h>

#include "ds/ds.h"

TEST(Smoke, EagerAdd) {
  ds::Tensor a{1, 2, 3};
  ds::Tensor b{10, 20, 30};
  ds::Tensor c = a + b;
  EXPECT_EQ(c.shape(), (ds::Shape{3}));
  EXPECT_FLOAT_EQ(c.data<float>()[2], 33.f);
}
