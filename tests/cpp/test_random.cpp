// Philox known-answer vectors; random ops: determinism across thread counts,
// index independence, distribution moments, seed input, bad arguments.
#include <gtest/gtest.h>

#include <cmath>

#include "core/philox.h"
#include "shape_test_util.h"

namespace ds {
namespace {

using shape_test::expect_error;
using shape_test::values;

// Random123's kat_vectors for philox4x32_10.
TEST(RandomPhilox, KnownAnswerVectors) {
  struct Kat {
    philox::Block ctr;
    uint32_t k0, k1;
    philox::Block want;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       0xffffffff,
       0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       0xa4093822,
       0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& k : kats) {
    const philox::Block got = philox::philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], k.want.v[i]) << "word " << i;
  }
}

TEST(RandomPhilox, StreamWordsComeFromCounterBlocks) {
  const uint64_t seed = 0x123456789abcdefull;
  const philox::Block b = philox::philox4x32_10({{5, 0, 0, 0}}, 0x89abcdef, 0x1234567);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(philox::stream_word(seed, 20 + i), b.v[i]);
  EXPECT_EQ(philox::uniform24(0xffffffffu), 1.0f - 1.0f / 16777216.0f);
  EXPECT_LT(philox::uniform53(0xffffffffu, 0xffffffffu), 1.0);
  EXPECT_GT(philox::uniform32_open0(0), 0.0);
}

TEST(RandomOps, UniformFloat32IsTheDocumentedFunctionOfSeedAndIndex) {
  const uint64_t seed = 42;
  Tensor u = random_uniform({1000}, seed, -1.0, 3.0);
  ASSERT_EQ(u.dtype(), DType::Float32);
  for (int64_t i = 0; i < 1000; ++i) {
    const double want = -1.0 + 4.0 * philox::uniform24(philox::stream_word(seed, i));
    EXPECT_EQ(u.data<float>()[i], static_cast<float>(want)) << i;
  }
}

TEST(RandomOps, SameOnEveryThreadCountAndShape) {
  const int saved = num_threads();
  set_num_threads(1);
  Tensor a = random_normal({100003}, 7);
  Tensor b = random_uniform({100003}, 7, 0, 1, DType::Float64);
  Tensor c = bernoulli({100003}, 7, 0.3);
  set_num_threads(4);
  Tensor a4 = random_normal({100003}, 7);
  Tensor b4 = random_uniform({100003}, 7, 0, 1, DType::Float64);
  Tensor c4 = bernoulli({100003}, 7, 0.3);
  set_num_threads(saved);
  EXPECT_EQ(std::memcmp(a.raw_data(), a4.raw_data(), a.nbytes()), 0);
  EXPECT_EQ(std::memcmp(b.raw_data(), b4.raw_data(), b.nbytes()), 0);
  EXPECT_EQ(std::memcmp(c.raw_data(), c4.raw_data(), c.nbytes()), 0);
  // Element i does not depend on the shape: a prefix of a longer tensor matches.
  Tensor small = random_normal({3, 5}, 7);
  EXPECT_EQ(std::memcmp(small.raw_data(), a.raw_data(), small.nbytes()), 0);
  Tensor other = random_normal({15}, 8);
  EXPECT_NE(std::memcmp(small.raw_data(), other.raw_data(), small.nbytes()), 0);
}

struct Moments {
  double mean = 0, var = 0, lo = INFINITY, hi = -INFINITY;
};
Moments moments(const Tensor& t) {
  Moments m;
  auto v = values(t);
  for (double x : v) {
    m.mean += x;
    m.lo = std::min(m.lo, x);
    m.hi = std::max(m.hi, x);
  }
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(v.size());
  return m;
}

TEST(RandomOps, DistributionMoments) {
  const double n = 1 << 20;
  for (DType t : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16}) {
    Moments u = moments(random_uniform({1 << 20}, 3, 2.0, 6.0, t));
    EXPECT_NEAR(u.mean, 4.0, 5 * std::sqrt(16.0 / 12 / n) + 0.01 * (t == DType::BFloat16));
    EXPECT_NEAR(u.var, 16.0 / 12, 0.02);
    EXPECT_GE(u.lo, 2.0);
    EXPECT_LT(u.hi, 6.0);
    Moments z = moments(random_normal({1 << 20}, 4, 1.0, 2.0, t));
    EXPECT_NEAR(z.mean, 1.0, 5 * 2.0 / std::sqrt(n) + 0.01 * (t == DType::BFloat16));
    EXPECT_NEAR(z.var, 4.0, 0.05);
  }
  for (DType t : {DType::Float32, DType::Int32, DType::Bool}) {
    Moments b = moments(bernoulli({1 << 20}, 5, 0.25, t));
    EXPECT_NEAR(b.mean, 0.25, 5 * std::sqrt(0.25 * 0.75 / n));
    EXPECT_EQ(b.lo, 0.0);
    EXPECT_EQ(b.hi, 1.0);
  }
  EXPECT_EQ(moments(bernoulli({1000}, 5, 0.0)).hi, 0.0);
  EXPECT_EQ(moments(bernoulli({1000}, 5, 1.0)).lo, 1.0);
}

TEST(RandomOps, UniformStaysBelowHighAfterRounding) {
  // [1, 1 + 2^-20) holds only 8 float32 values, so rounding often lands on the open bound.
  const double high = 1.0 + std::ldexp(1.0, -20);
  Tensor u = random_uniform({1 << 16}, 9, 1.0, high);
  for (double v : values(u)) EXPECT_LT(v, high);
}

TEST(RandomOps, SeedInputOverridesAttribute) {
  const AttrMap attrs = {{"shape", std::vector<int64_t>{64}}, {"seed", int64_t{1}}};
  Tensor from_input = apply1("random_uniform", {Tensor::scalar(11, DType::Int64)}, attrs);
  Tensor from_attr = random_uniform({64}, 11);
  EXPECT_EQ(std::memcmp(from_input.raw_data(), from_attr.raw_data(), from_attr.nbytes()), 0);

  // A compiled step takes a fresh seed each run.
  Graph g;
  Tensor seed = g.placeholder("seed", {}, DType::Int64);
  g.output(g.add("random_normal", {seed}, {{"shape", std::vector<int64_t>{8}}})[0], "z");
  Executable exe = compile(g, "cpu");
  for (int s : {5, 6}) {
    Tensor got = exe.run(std::vector<Tensor>{Tensor::scalar(s, DType::Int64)})[0];
    Tensor want = random_normal({8}, static_cast<uint64_t>(s));
    EXPECT_EQ(std::memcmp(got.raw_data(), want.raw_data(), want.nbytes()), 0) << "seed " << s;
  }
  // Large seeds use all 64 bits.
  Tensor hi = apply1("random_uniform", {Tensor::from_vector(std::vector<int64_t>{-3}, {})}, attrs);
  Tensor hi_attr = random_uniform({64}, static_cast<uint64_t>(-3));
  EXPECT_EQ(std::memcmp(hi.raw_data(), hi_attr.raw_data(), hi.nbytes()), 0);
}

TEST(RandomOps, BadArguments) {
  expect_error<ValueError>([] { random_uniform({2}, 0, 1.0, 1.0); },
                           {"random_uniform", "high (1) must be greater than low (1)"});
  expect_error<TypeError>([] { random_uniform({2}, 0, 0, 1, DType::Int32); },
                          {"random_uniform", "float type", "int32"});
  expect_error<ValueError>([] { random_normal({2}, 0, 0, -1); }, {"random_normal", "stddev"});
  expect_error<ValueError>([] { bernoulli({2}, 0, 1.5); },
                           {"bernoulli", "p must be in [0, 1]", "1.5"});
  expect_error<ShapeError>([] { bernoulli({-1}, 0, 0.5); }, {"bernoulli", "static"});
  expect_error<TypeError>(
      [] {
        apply1("random_uniform", {Tensor::scalar(1.0)}, {{"shape", std::vector<int64_t>{2}}});
      },
      {"random_uniform", "seed input", "int64 or int32 scalar", "float32"});
}

}  // namespace
}  // namespace ds
