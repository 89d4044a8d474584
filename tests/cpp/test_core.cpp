// Core: dtypes, tensors and views, the allocator, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ds/ds.h"

using ds::DType;
using ds::Shape;
using ds::Tensor;

TEST(CoreDType, PromotionFollowsNumpy) {
  EXPECT_EQ(ds::promote_types(DType::Float32, DType::Float64), DType::Float64);
  EXPECT_EQ(ds::promote_types(DType::Int32, DType::Int64), DType::Int64);
  EXPECT_EQ(ds::promote_types(DType::Bool, DType::Int8), DType::Int8);
  EXPECT_EQ(ds::promote_types(DType::UInt8, DType::Int32), DType::Int32);
  EXPECT_EQ(ds::promote_types(DType::UInt8, DType::Int8), DType::Int32);  // no int16
  EXPECT_EQ(ds::promote_types(DType::Float16, DType::BFloat16), DType::Float32);
  EXPECT_EQ(ds::promote_types(DType::Int64, DType::Float32), DType::Float32);
  EXPECT_EQ(ds::promote_types(DType::Float16, DType::Float32), DType::Float32);
  for (DType a : ds::kAllDTypes)
    for (DType b : ds::kAllDTypes) EXPECT_EQ(ds::promote_types(a, b), ds::promote_types(b, a));
}

TEST(CoreDType, NamesRoundTripAndUnknownNameIsReported) {
  for (DType t : ds::kAllDTypes) EXPECT_EQ(ds::dtype_from_name(ds::dtype_name(t)), t);
  try {
    ds::dtype_from_name("float128");
    FAIL();
  } catch (const ds::TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("float128"), std::string::npos);
  }
}

TEST(CoreDType, HalfConversionRoundsToNearestEven) {
  EXPECT_EQ(static_cast<float>(ds::Half(1.0f)), 1.0f);
  EXPECT_EQ(static_cast<float>(ds::Half(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(static_cast<float>(ds::Half(70000.0f))));
  EXPECT_TRUE(std::isnan(static_cast<float>(ds::Half(NAN))));
  EXPECT_EQ(static_cast<float>(ds::Half(5.9604645e-8f)), 5.9604645e-8f);  // smallest subnormal
  EXPECT_EQ(ds::Half(1.0f + 1.0f / 2048).bits, ds::Half(1.0f).bits);     // tie -> even
  EXPECT_EQ(static_cast<float>(ds::BFloat16(1.0f)), 1.0f);
  EXPECT_TRUE(std::isnan(static_cast<float>(ds::BFloat16(NAN))));
  // Every half value converts to float and back unchanged.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    ds::Half h;
    h.bits = static_cast<uint16_t>(bits);
    float f = h;
    if (std::isnan(f)) continue;
    EXPECT_EQ(ds::Half(f).bits, h.bits) << bits;
  }
}

TEST(CoreTensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor r = t.reshape({3, 2});
  Tensor tr = t.transpose(0, 1);
  Tensor s = t.slice(1, 0, 3, 2);
  EXPECT_EQ(r.storage(), t.storage());
  EXPECT_EQ(tr.storage(), t.storage());
  EXPECT_EQ(s.storage(), t.storage());
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.shape(), (Shape{3, 2}));
  EXPECT_EQ(s.shape(), (Shape{2, 2}));
  t.data<float>()[5] = 50;
  EXPECT_EQ(r.data<float>()[5], 50);
  EXPECT_EQ(ds::element_as_double(tr, 5), 50);  // tr[2][1] = t[1][2]
  EXPECT_EQ(ds::element_as_double(s, 3), 50);   // s[1][1] = t[1][2]
  Tensor c = tr.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), t.storage());
  EXPECT_EQ(c.data<float>()[1], 3);  // c[0][1] = t[1][0]
  EXPECT_EQ(r.reshape({-1}).shape(), (Shape{6}));
}

TEST(CoreTensor, BadReshapeAndAccessAreReported) {
  Tensor t = Tensor::zeros({2, 3});
  EXPECT_THROW(t.reshape({4, 2}), ds::ShapeError);
  EXPECT_THROW(t.data<double>(), ds::TypeError);
  EXPECT_THROW(t.transpose(0, 5), ds::ValueError);
  EXPECT_THROW(Tensor::empty({2, ds::dyn}), ds::ShapeError);
  EXPECT_THROW(Tensor().shape(), ds::ValueError);
}

TEST(CoreTensor, StrPrintsLikeNumpy) {
  Tensor t{2, 4, 6};
  EXPECT_EQ(t.str(), "[2. 4. 6.]");
  EXPECT_EQ(Tensor::from_vector<int64_t>({1, 2, 3, 4}, {2, 2}).str(), "[[1 2]\n [3 4]]");
}

TEST(CoreTensor, CopyIntoConvertsDTypes) {
  Tensor d = Tensor::from_vector<double>({1.5, -2.25, 1e10}, {3});
  Tensor h = Tensor::empty({3}, DType::Float16);
  ds::copy_into(d, h);
  EXPECT_EQ(static_cast<float>(h.data<ds::Half>()[0]), 1.5f);
  EXPECT_TRUE(std::isinf(static_cast<float>(h.data<ds::Half>()[2])));
  Tensor b = Tensor::empty({3}, DType::Bool);
  ds::copy_into(Tensor::from_vector<float>({0, 0.5, -1}, {3}), b);
  EXPECT_FALSE(b.data<bool>()[0]);
  EXPECT_TRUE(b.data<bool>()[1]);
}

TEST(CoreAllocator, PoolsAlignsAndCounts) {
  ds::empty_cache();
  const auto before = ds::memory_stats();
  void* first;
  {
    Tensor t = Tensor::empty({1000}, DType::Float32);
    first = t.raw_data();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 64, 0u);
    const auto during = ds::memory_stats();
    EXPECT_GE(during.current_bytes - before.current_bytes, 4000);
    EXPECT_GE(during.peak_bytes, during.current_bytes);
  }
  const auto after = ds::memory_stats();
  EXPECT_EQ(after.current_bytes, before.current_bytes);
  Tensor again = Tensor::empty({1000}, DType::Float32);
  EXPECT_EQ(again.raw_data(), first);  // served from the pool
  EXPECT_EQ(ds::memory_stats().pool_hits, after.pool_hits + 1);
  EXPECT_EQ(ds::memory_stats().allocations, after.allocations + 1);
}
