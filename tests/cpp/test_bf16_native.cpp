// Native bfloat16 kernels (oneDNN bf16 primitives on CPUs with avx512_bf16)
// against the float64 reference on the same bf16 inputs, at bf16 tolerance, and
// against the float32 emulation they replace. Skipped where the CPU lacks bf16.
#include <gtest/gtest.h>

#include <cmath>

#include "backends/cpu/low_precision.h"
#include "ds/ds.h"
#include "ds/op.h"

namespace {

using ds::DType;
using ds::Tensor;

struct Run {
  std::string impl;
  Tensor out;
};

// Runs `op` on bf16 copies of `inputs` with the kernel the CPU selects.
Run run(const std::string& op, const std::vector<Tensor>& inputs, const ds::AttrMap& attrs,
        bool reference = false) {
  const ds::OpDef& def = ds::get_op(op);
  std::vector<ds::TensorType> types;
  for (const Tensor& t : inputs) types.push_back({t.dtype(), t.shape()});
  const ds::AttrMap full = ds::complete_attrs(def, attrs, op);
  ds::OpContext ctx{def, full, types, op};
  const ds::TensorType out_type = def.infer(ctx)[0];
  std::vector<Tensor> out{Tensor::empty(out_type.shape, out_type.dtype)};
  if (reference) {
    def.reference({ctx, inputs, out});
    return {"reference", out[0]};
  }
  const ds::KernelEntry& k = ds::select_kernel(ctx, ds::DeviceKind::CPU);
  k.fn({ctx, inputs, out});
  return {k.impl, out[0]};
}

std::vector<Tensor> bf16(const std::vector<ds::Shape>& shapes, uint64_t seed) {
  std::vector<Tensor> out;
  for (const auto& s : shapes) out.push_back(ds::cast(ds::random_normal(s, seed++, 0.0, 1.0), DType::BFloat16));
  return out;
}

bool cpu_has_native_bf16() {
  return run("matmul", bf16({{2, 2}, {2, 2}}, 1), {}).impl == "onednn-bf16";
}

// |native - reference| within one bf16 ulp (2^-7 relative: both round once, from
// values that differ by the float32 accumulation error) plus that error; the same
// bound against the emulation (float32 accumulation in another order, one rounding).
void check(const std::string& op, const std::vector<ds::Shape>& shapes, const ds::AttrMap& attrs,
           uint64_t seed) {
  SCOPED_TRACE(op);
  const std::vector<Tensor> in = bf16(shapes, seed);
  const Run native = run(op, in, attrs);
  ASSERT_EQ(native.impl, "onednn-bf16");
  ASSERT_EQ(native.out.dtype(), DType::BFloat16);
  const Run ref = run(op, in, attrs, true);
  ds::cpu::allow_native_bf16(false);
  const Run emulated = run(op, in, attrs);
  ds::cpu::allow_native_bf16(true);
  ASSERT_EQ(emulated.impl, "f32-emulated");
  ASSERT_EQ(native.out.shape(), ref.out.shape());
  const double ulp = std::ldexp(1.0, -7);
  for (int64_t i = 0; i < native.out.numel(); ++i) {
    const double n = ds::element_as_double(native.out, i), r = ds::element_as_double(ref.out, i),
                 e = ds::element_as_double(emulated.out, i);
    ASSERT_LE(std::abs(n - r), ulp * std::abs(r) + 1e-3) << "element " << i << " of "
                                                          << native.out.numel();
    ASSERT_LE(std::abs(n - e), ulp * std::abs(e) + 1e-3) << "element " << i;
  }
}

ds::AttrMap conv(std::vector<int64_t> stride, std::vector<int64_t> pad, std::vector<int64_t> dil,
                 int64_t groups) {
  return {{"stride", stride}, {"padding", pad}, {"dilation", dil}, {"groups", groups}};
}

class Bf16Native : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no avx512_bf16: bf16 stays emulated";
  }
};

}  // namespace

TEST_F(Bf16Native, MatmulMatchesTheReference) {
  check("matmul", {{1, 1}, {1, 1}}, {}, 1);
  check("matmul", {{2, 17, 33}, {33, 9}}, {}, 2);       // batch folded into M
  check("matmul", {{3, 1, 5, 8}, {4, 8, 6}}, {}, 3);    // broadcast batches
  check("matmul", {{64, 1024}, {1024, 48}}, {}, 4);      // long float32 accumulation
}

TEST_F(Bf16Native, LinearMatchesTheReference) {
  check("linear", {{7, 40}, {5, 40}, {5}}, {}, 5);
  check("linear", {{2, 3, 31}, {9, 31}}, {}, 6);
  check("linear", {{1, 513}, {130, 513}, {130}}, {}, 7);
}

TEST_F(Bf16Native, GemmWithoutAddendMatchesTheReference) {
  check("gemm", {{6, 4}, {6, 3}}, {{"trans_a", true}}, 20);
  check("gemm", {{33, 70}, {9, 70}}, {{"trans_b", true}}, 21);
  check("gemm", {{40, 17}, {5, 40}}, {{"trans_a", true}, {"trans_b", true}}, 22);
  check("gemm", {{8, 16}, {16, 8}}, {}, 23);
}

TEST_F(Bf16Native, ConvolutionsMatchTheReference) {
  check("conv2d", {{2, 8, 9, 9}, {4, 8, 3, 3}, {4}}, conv({1}, {1}, {1}, 1), 8);
  check("conv2d", {{3, 16, 11, 10}, {6, 8, 3, 3}}, conv({2}, {2}, {2}, 2), 9);
  check("conv2d", {{2, 32, 14, 14}, {64, 32, 3, 3}, {64}}, conv({1}, {1}, {1}, 1), 10);
  ds::AttrMap in_attrs = conv({1}, {1}, {1}, 1), w_attrs = in_attrs;
  in_attrs["input_size"] = std::vector<int64_t>{9, 9};
  w_attrs["kernel_size"] = std::vector<int64_t>{3, 3};
  check("conv2d_backward_input", {{2, 4, 9, 9}, {4, 9, 3, 3}}, in_attrs, 11);
  check("conv2d_backward_weight", {{2, 9, 9, 9}, {2, 4, 9, 9}}, w_attrs, 12);
  ds::AttrMap strided = conv({2}, {1}, {1}, 2);
  strided["kernel_size"] = std::vector<int64_t>{3, 3};
  check("conv2d_backward_weight", {{2, 16, 10, 10}, {2, 6, 5, 5}}, strided, 13);
}

// Calls the native kernels decline fall back to the emulation: a vector operand,
// a gemm with an addend or alpha != 1, a convolution over fewer than 8 input
// channels (per group).
TEST_F(Bf16Native, DeclinedShapesStayEmulated) {
  EXPECT_EQ(run("matmul", bf16({{5}, {5, 3}}, 14), {}).impl, "f32-emulated");
  EXPECT_EQ(run("gemm", bf16({{4, 3}, {3, 2}, {2}}, 17), {}).impl, "f32-emulated");
  EXPECT_EQ(run("gemm", bf16({{4, 3}, {3, 2}}, 18), {{"alpha", 2.0}}).impl, "f32-emulated");
  EXPECT_EQ(run("conv2d", bf16({{2, 1, 9, 9}, {4, 1, 3, 3}}, 15), conv({1}, {1}, {1}, 1)).impl,
            "f32-emulated");
  EXPECT_EQ(run("conv2d", bf16({{2, 8, 9, 9}, {4, 4, 3, 3}}, 16), conv({1}, {1}, {1}, 2)).impl,
            "f32-emulated");
}
