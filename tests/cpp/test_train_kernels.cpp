// Kernels chosen for the training step's shapes (the Fashion-MNIST CNN and its
// relatives): each fast kernel against the op's float64 reference kernel.
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

}  // namespace
}  // namespace ds
