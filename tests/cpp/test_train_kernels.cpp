// Kernels chosen for the training step's shapes (the Fashion-MNIST CNN and its
// relatives): each fast kernel against the op's float64 reference kernel.
#include <cmath>
#include <tuple>

#include "op_check.h"

namespace ds {
namespace {

using test::random_tensor;
using test::rel_diff;
using test::values;

// Shapes where the oneDNN kernels run Winograd F(4x4, 3x3) on AVX-512 CPUs (3x3,
// stride 1, >= 32 channels in multiples of 16, planes >= 14x14, a batch): all three
// passes against the reference. The tile transforms (entries up to 8 in F(4x4, 3x3))
// amplify float32 rounding: measured 2-3.4e-5 here where the direct kernels stay
// under 1e-5, so the bound is 1e-4 (cuDNN's Winograd and TF32 are looser still).
TEST(TrainKernelsConv, WinogradShapesMatchReference) {
  struct Case {
    Shape x, w;
    Pair padding;
  };
  const std::vector<Case> cases = {
      {{16, 32, 14, 14}, {64, 32, 3, 3}, {1}},  // the second Fashion-MNIST layer, smaller batch
      {{16, 48, 15, 17}, {32, 48, 3, 3}, {1}},  // planes that are no multiple of the 4x4 tile
      {{18, 32, 16, 16}, {32, 32, 3, 3}, {0}},  // no padding
  };
  uint32_t seed = 4100;
  for (const auto& c : cases) {
    const Tensor x = random_tensor(c.x, seed++, DType::Float32);
    const Tensor w = random_tensor(c.w, seed++, DType::Float32);
    const Tensor b = random_tensor({c.w[0]}, seed++, DType::Float32);
    const AttrMap attrs = {{"stride", Pair{1}}, {"padding", c.padding}};
    const Tensor y = apply1("conv2d", {x, w, b}, attrs);
    EXPECT_LT(rel_diff(y, values(test::run_reference("conv2d", {x, w, b}, attrs))), 1e-4)
        << shape_str(c.x);

    const Tensor gy = random_tensor(y.shape(), seed++, DType::Float32);
    AttrMap in_attrs = attrs, w_attrs = attrs;
    in_attrs["input_size"] = Pair{c.x[2], c.x[3]};
    w_attrs["kernel_size"] = Pair{3, 3};
    const Tensor gx = apply1("conv2d_backward_input", {gy, w}, in_attrs);
    EXPECT_LT(rel_diff(gx, values(test::run_reference("conv2d_backward_input", {gy, w}, in_attrs))),
              1e-4)
        << shape_str(c.x);
    const Tensor gw = apply1("conv2d_backward_weight", {x, gy}, w_attrs);
    EXPECT_LT(rel_diff(gw, values(test::run_reference("conv2d_backward_weight", {x, gy}, w_attrs))),
              1e-4)
        << shape_str(c.x);
  }
}

// The first-layer forward kernel (3x3, stride 1, <= 4 input channels): planes
// that are and are not a multiple of its 32-pixel steps, paddings 0-2, with and
// without bias; and the shapes it leaves to oneDNN.
TEST(TrainKernelsConv, FewChannelForwardMatchesReference) {
  struct Case {
    Shape x, w;
    Pair padding;
  };
  const std::vector<Case> cases = {
      {{128, 1, 28, 28}, {32, 1, 3, 3}, {1}},  // Fashion-MNIST's first layer
      {{1, 1, 3, 3}, {1, 1, 3, 3}, {0}},       // one pixel
      {{3, 3, 9, 7}, {5, 3, 3, 3}, {1}},
      {{2, 4, 6, 10}, {3, 4, 3, 3}, {2}},
      {{2, 2, 13, 11}, {7, 2, 3, 3}, {1, 0}},
  };
  uint32_t seed = 4300;
  for (const auto& c : cases)
    for (bool with_bias : {true, false}) {
      std::vector<Tensor> in = {random_tensor(c.x, seed++, DType::Float32),
                                random_tensor(c.w, seed++, DType::Float32)};
      if (with_bias) in.push_back(random_tensor({c.w[0]}, seed++, DType::Float32));
      const AttrMap attrs = {{"stride", Pair{1}}, {"padding", c.padding}};
      EXPECT_EQ(test::kernel_impl("conv2d", in, attrs), "direct-3x3-few-channels");
      EXPECT_LT(rel_diff(apply1("conv2d", in, attrs), values(test::run_reference("conv2d", in, attrs))),
                1e-6)
          << shape_str(c.x) << " bias " << with_bias;
    }
  for (const auto& [x, w, stride] : {std::tuple{Shape{1, 1, 9, 9}, Shape{2, 1, 3, 3}, Pair{2}},
                                     std::tuple{Shape{1, 8, 6, 6}, Shape{2, 8, 3, 3}, Pair{1}},
                                     std::tuple{Shape{1, 2, 6, 6}, Shape{2, 2, 5, 5}, Pair{1}}}) {
    const std::vector<Tensor> in = {random_tensor(x, seed++, DType::Float32),
                                    random_tensor(w, seed++, DType::Float32)};
    EXPECT_NE(test::kernel_impl("conv2d", in, {{"stride", stride}}), "direct-3x3-few-channels")
        << shape_str(x) << " * " << shape_str(w);
  }
}

// The 2x2/stride-2 max-pool kernels run 8 windows per vector with a masked last
// chunk: every row width from 1 to 17 windows (full chunks, partial ones, both),
// odd extents (an uncovered last row/column), ties (as after a ReLU) and NaNs,
// forward and backward against the reference kernels.
TEST(TrainKernelsMaxPool, TwoByTwoEveryRowWidthMatchesReference) {
  const AttrMap attrs = {{"kernel_size", Pair{2}}};
  uint32_t seed = 4200;
  for (int64_t w = 2; w <= 35; ++w)
    for (int64_t h : {2, 3, 14}) {
      Tensor x = random_tensor({2, 3, h, w}, seed++, DType::Float32);
      float* px = x.data<float>();
      for (int64_t i = 0; i < x.numel(); i += 3) px[i] = 0.0f;
      if (w % 5 == 0) px[x.numel() / 2] = NAN;
      const Tensor y = apply1("max_pool2d", {x}, attrs);
      const Tensor gy = random_tensor(y.shape(), seed++, DType::Float32);
      for (const auto& [op, in] :
           {std::pair{std::string("max_pool2d"), std::vector<Tensor>{x}},
            std::pair{std::string("max_pool2d_backward"), std::vector<Tensor>{x, gy}}}) {
        const auto fast = values(apply1(op, in, attrs)), ref = values(test::run_reference(op, in, attrs));
        ASSERT_EQ(fast.size(), ref.size());
        for (size_t i = 0; i < fast.size(); ++i)
          ASSERT_TRUE(std::isnan(ref[i]) ? std::isnan(fast[i]) : fast[i] == ref[i])
              << op << " " << h << "x" << w << " at " << i << ": " << fast[i] << " vs " << ref[i];
      }
    }
}

}  // namespace
}  // namespace ds
