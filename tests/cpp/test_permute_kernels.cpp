// The tiled permute kernel against the reference kernel (a strided copy), bit for
// bit: every dtype size, every axis order up to rank 4, odd, empty and size-1 axes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "shape_test_util.h"

namespace ds {
namespace {

using shape_test::random_tensor;

std::string permute_impl(const Tensor& x, const std::vector<int64_t>& axes) {
  const OpDef& def = get_op("permute");
  AttrMap full = complete_attrs(def, {{"axes", axes}}, "");
  return select_kernel(OpContext{def, full, {{x.dtype(), x.shape()}}, ""}, DeviceKind::CPU).impl;
}

void expect_same_bytes(const Tensor& x, const std::vector<int64_t>& axes) {
  const AttrMap attrs = {{"axes", axes}};
  const Tensor got = apply1("permute", {x}, attrs);
  const Tensor want = shape_test::run_reference("permute", {x}, attrs)[0];
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(got.nbytes(), want.nbytes());
  EXPECT_EQ(std::memcmp(got.raw_data(), want.raw_data(), got.nbytes()), 0)
      << dtype_name(x.dtype()) << " " << shape_str(x.shape()) << " axes " << shape_str(axes);
}

TEST(PermuteKernel, MatchesReferenceForEveryAxisOrderAndDtypeSize) {
  std::mt19937 rng(3);
  const std::vector<Shape> shapes = {{},        {1},          {7},           {0, 5},
                                     {1, 1},    {3, 17},      {37, 1},       {65, 33},
                                     {2, 3, 5}, {1, 19, 70},  {4, 0, 3},     {3, 1, 20, 9},
                                     {2, 5, 3, 35}, {6, 18, 1, 17}};
  for (DType t : {DType::Bool, DType::Int8, DType::Float16, DType::Float32, DType::Int32,
                  DType::Float64, DType::Int64}) {
    for (const Shape& s : shapes) {
      const Tensor x = random_tensor(s, t, rng, 0.0, 100.0);
      std::vector<int64_t> axes(s.size());
      std::iota(axes.begin(), axes.end(), 0);
      do {
        ASSERT_EQ(permute_impl(x, axes), "tiled");
        expect_same_bytes(x, axes);
      } while (std::next_permutation(axes.begin(), axes.end()));
    }
  }
}

TEST(PermuteKernel, LargeTransposesCrossTileEdgesOnOneAndTwoThreads) {
  std::mt19937 rng(4);
  const int before = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    expect_same_bytes(random_tensor({512, 785}, DType::Float32, rng), {1, 0});
    expect_same_bytes(random_tensor({3, 129, 67}, DType::Float64, rng), {2, 0, 1});
    expect_same_bytes(random_tensor({2, 8, 33, 64}, DType::Float32, rng), {0, 2, 1, 3});
    expect_same_bytes(random_tensor({300, 257}, DType::UInt8, rng, 0.0, 250.0), {-1, 0});
    // Over the serial thresholds (runtime/serial_ops.h: 4 MB): split between threads.
    expect_same_bytes(random_tensor({1031, 1029}, DType::Float32, rng), {1, 0});
    expect_same_bytes(random_tensor({64, 40, 33, 17}, DType::Float32, rng), {0, 2, 1, 3});
  }
  set_num_threads(before);
}

}  // namespace
}  // namespace ds
