// matmul, linear, gemm: values against float64 loops written here, the fast
// (float32) kernels against the reference kernel, VJPs against finite differences,
// and the error messages for bad shapes.
#include "op_check.h"

namespace ds {
namespace {

using test::random_tensor;
using test::rel_diff;
using test::values;

// numpy.matmul, written out: promote 1-D operands, broadcast batch dims, loop.
std::vector<double> matmul_expected(const Tensor& a, const Tensor& b, Shape* out_shape) {
  Shape as = a.shape(), bs = b.shape();
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  const size_t rank = std::max(as.size(), bs.size());
  Shape batch(rank - 2, 1), ab(rank - 2, 1), bb(rank - 2, 1);
  for (size_t i = 0; i + 2 < as.size(); ++i) ab[rank - as.size() + i] = as[i];
  for (size_t i = 0; i + 2 < bs.size(); ++i) bb[rank - bs.size() + i] = bs[i];
  for (size_t i = 0; i < batch.size(); ++i) batch[i] = std::max(ab[i], bb[i]);
  const auto av = values(a), bv = values(b);
  std::vector<double> out;
  const int64_t nb = numel(batch);
  for (int64_t bi = 0; bi < nb; ++bi) {
    int64_t rem = bi, ao = 0, bo = 0, astride = 1, bstride = 1;
    for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
      const int64_t c = rem % batch[d];
      rem /= batch[d];
      ao += (ab[d] == 1 ? 0 : c) * astride;
      bo += (bb[d] == 1 ? 0 : c) * bstride;
      astride *= ab[d];
      bstride *= bb[d];
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += av[(ao * m + i) * k + p] * bv[(bo * k + p) * n + j];
        out.push_back(s);
      }
  }
  *out_shape = batch;
  if (a.ndim() > 1) out_shape->push_back(m);
  if (b.ndim() > 1) out_shape->push_back(n);
  return out;
}

struct MatmulCase {
  Shape a, b, out;
};

const std::vector<MatmulCase> kMatmulCases = {
    {{3, 4}, {4, 5}, {3, 5}},
    {{4}, {4}, {}},
    {{4}, {4, 3}, {3}},
    {{2, 3, 4}, {4}, {2, 3}},
    {{2, 1, 3, 4}, {5, 4, 2}, {2, 5, 3, 2}},
    {{6, 3, 4}, {4, 7}, {6, 3, 7}},
    {{3, 4}, {2, 4, 5}, {2, 3, 5}},
    {{1, 1}, {1, 1}, {1, 1}},
    {{0, 3}, {3, 2}, {0, 2}},
    {{2, 3, 0}, {0, 4}, {2, 3, 4}},
    {{7, 13}, {13, 9}, {7, 9}},
    {{65, 129}, {129, 33}, {65, 33}},
    {{300, 200}, {200, 260}, {300, 260}},
};

TEST(LinalgMatmul, MatchesFloat64Loops) {
  uint32_t seed = 1;
  for (const auto& c : kMatmulCases) {
    const Tensor a = random_tensor(c.a, seed++), b = random_tensor(c.b, seed++);
    Shape want_shape;
    const auto want = matmul_expected(a, b, &want_shape);
    ASSERT_EQ(want_shape, c.out);
    const Tensor y64 = matmul(a, b);
    EXPECT_EQ(y64.shape(), c.out);
    EXPECT_LT(rel_diff(y64, want), 1e-12) << shape_str(c.a) << " @ " << shape_str(c.b);
    const Tensor y32 = matmul(a.to(DType::Float32), b.to(DType::Float32));
    EXPECT_EQ(y32.dtype(), DType::Float32);
    EXPECT_EQ(y32.shape(), c.out);
    EXPECT_LT(rel_diff(y32, want), 1e-4) << shape_str(c.a) << " @ " << shape_str(c.b);
  }
}

TEST(LinalgMatmul, FastKernelMatchesReference) {
  uint32_t seed = 100;
  for (const auto& c : kMatmulCases) {
    const Tensor a = random_tensor(c.a, seed++, DType::Float32);
    const Tensor b = random_tensor(c.b, seed++, DType::Float32);
    if (test::built_with("OpenBLAS") || test::built_with("oneDNN")) {
      EXPECT_NE(test::kernel_impl("matmul", {a, b}), "reference");
    }
    const Tensor ref = test::run_reference("matmul", {a, b});
    EXPECT_LT(rel_diff(matmul(a, b), values(ref)), 1e-5) << shape_str(c.a) << " @ " << shape_str(c.b);
  }
}

TEST(LinalgMatmul, MixedDtypesPromote) {
  const Tensor a = random_tensor({3, 4}, 1, DType::Float32), b = random_tensor({4, 2}, 2);
  const Tensor y = matmul(a, b);
  EXPECT_EQ(y.dtype(), DType::Float64);
  Shape s;
  EXPECT_LT(rel_diff(y, matmul_expected(a.to(DType::Float64), b, &s)), 1e-12);
  const Tensor i = Tensor::from_vector<int64_t>({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(values(matmul(i, i)), (std::vector<double>{7, 10, 15, 22}));
}

TEST(LinalgMatmul, GradientsMatchFiniteDifferences) {
  uint32_t seed = 200;
  for (const auto& c : kMatmulCases) {
    if (numel(c.a) * numel(c.b) > 5000 || numel(c.a) == 0) continue;
    test::expect_vjp_matches_fd("matmul", {random_tensor(c.a, seed++), random_tensor(c.b, seed++)});
  }
}

TEST(LinalgMatmul, BadShapesNameTheOpAndShapes) {
  const Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  test::expect_error<ShapeError>([&] { matmul(a, b); }, {"matmul", "[2, 3]", "[4, 5]", "3 != 4"});
  test::expect_error<ShapeError>([&] { matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({5, 4, 2})); },
                                 {"matmul", "[2, 3, 4]", "[5, 4, 2]"});
  test::expect_error<ShapeError>([&] { matmul(Tensor::scalar(1.0), a); }, {"matmul", "at least 1"});
}

// y = x @ w^T + b, written out.
std::vector<double> linear_expected(const Tensor& x, const Tensor& w, const Tensor& b) {
  const auto xv = values(x), wv = values(w);
  const int64_t out = w.dim(0), in = w.dim(1), rows = x.numel() / in;
  std::vector<double> y;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.defined() ? values(b)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += xv[r * in + i] * wv[o * in + i];
      y.push_back(s);
    }
  return y;
}

TEST(LinalgLinear, MatchesFloat64LoopsWithAndWithoutBias) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{5, 7}, {3, 7}}, {{7}, {3, 7}}, {{2, 4, 6}, {9, 6}}, {{1, 1}, {1, 1}}, {{128, 784}, {64, 784}}};
  uint32_t seed = 300;
  for (const auto& [xs, ws] : cases)
    for (bool with_bias : {false, true}) {
      const Tensor x = random_tensor(xs, seed++), w = random_tensor(ws, seed++);
      const Tensor b = with_bias ? random_tensor({ws[0]}, seed++) : Tensor();
      const auto want = linear_expected(x, w, b);
      Shape out = xs;
      out.back() = ws[0];
      const Tensor y = linear(x, w, b);
      EXPECT_EQ(y.shape(), out);
      EXPECT_LT(rel_diff(y, want), 1e-12);
      const Tensor b32 = with_bias ? b.to(DType::Float32) : Tensor();
      const Tensor x32 = x.to(DType::Float32), w32 = w.to(DType::Float32);
      EXPECT_LT(rel_diff(linear(x32, w32, b32), want), 1e-4);
      std::vector<Tensor> in{x32, w32};
      if (with_bias) in.push_back(b32);
      EXPECT_LT(rel_diff(linear(x32, w32, b32), values(test::run_reference("linear", in))), 1e-5);
    }
}

TEST(LinalgLinear, GradientsMatchFiniteDifferences) {
  test::expect_vjp_matches_fd("linear", {random_tensor({3, 4}, 1), random_tensor({5, 4}, 2)});
  test::expect_vjp_matches_fd(
      "linear", {random_tensor({2, 3, 4}, 3), random_tensor({2, 4}, 4), random_tensor({2}, 5)});
  test::expect_vjp_matches_fd("linear",
                              {random_tensor({4}, 6), random_tensor({3, 4}, 7), random_tensor({3}, 8)});
}

TEST(LinalgLinear, BadShapesNameTheOpAndShapes) {
  test::expect_error<ShapeError>([] { linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); },
                                 {"linear", "[2, 3]", "[4, 5]"});
  test::expect_error<ShapeError>(
      [] { linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 3}), Tensor::zeros({5})); },
      {"linear", "bias", "[5]", "[4]"});
}

// alpha * op(a) @ op(b) + beta * c, written out.
std::vector<double> gemm_expected(const Tensor& a, const Tensor& b, const Tensor& c, double alpha,
                                  double beta, bool ta, bool tb) {
  const auto av = values(a), bv = values(b);
  const int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  const int64_t n = tb ? b.dim(0) : b.dim(1);
  std::vector<double> cv;
  if (c.defined()) cv = values(broadcast_to(c, {m, n}).contiguous());
  std::vector<double> y;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += (ta ? av[p * m + i] : av[i * k + p]) * (tb ? bv[j * k + p] : bv[p * n + j]);
      y.push_back(alpha * s + (c.defined() ? beta * cv[i * n + j] : 0.0));
    }
  return y;
}

TEST(LinalgGemm, AllTransposesAndBiasShapes) {
  const int64_t m = 5, k = 7, n = 3;
  uint32_t seed = 400;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const Shape& cs : std::vector<Shape>{{}, {n}, {m, 1}, {m, n}, {1, 1}}) {
        const Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, seed++);
        const Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, seed++);
        const Tensor c = random_tensor(cs, seed++);
        const auto want = gemm_expected(a, b, c, 0.5, -2.0, ta, tb);
        const Tensor y = gemm(a, b, c, 0.5, -2.0, ta, tb);
        EXPECT_EQ(y.shape(), (Shape{m, n}));
        EXPECT_LT(rel_diff(y, want), 1e-12);
        const Tensor a32 = a.to(DType::Float32), b32 = b.to(DType::Float32), c32 = c.to(DType::Float32);
        const AttrMap attrs{{"alpha", 0.5}, {"beta", -2.0}, {"trans_a", ta}, {"trans_b", tb}};
        const Tensor y32 = gemm(a32, b32, c32, 0.5, -2.0, ta, tb);
        EXPECT_LT(rel_diff(y32, want), 1e-4);
        EXPECT_LT(rel_diff(y32, values(test::run_reference("gemm", {a32, b32, c32}, attrs))), 1e-5);
      }
  const Tensor a = random_tensor({m, k}, 1), b = random_tensor({k, n}, 2);
  EXPECT_LT(rel_diff(gemm(a, b), gemm_expected(a, b, Tensor(), 1, 1, false, false)), 1e-12);
}

TEST(LinalgGemm, GradientsMatchFiniteDifferences) {
  uint32_t seed = 500;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Tensor a = random_tensor(ta ? Shape{4, 3} : Shape{3, 4}, seed++);
      const Tensor b = random_tensor(tb ? Shape{2, 4} : Shape{4, 2}, seed++);
      test::expect_vjp_matches_fd("gemm", {a, b, random_tensor({2}, seed++)},
                                  {{"alpha", 1.5}, {"beta", 0.5}, {"trans_a", ta}, {"trans_b", tb}});
    }
}

TEST(LinalgGemm, BadShapesNameTheOpAndShapes) {
  test::expect_error<ShapeError>([] { gemm(Tensor::zeros({2, 3}), Tensor::zeros({2, 3})); },
                                 {"gemm", "[2, 3]"});
  test::expect_error<ShapeError>([] { gemm(Tensor::zeros({2}), Tensor::zeros({2, 3})); },
                                 {"gemm", "2-D"});
  test::expect_error<ShapeError>(
      [] { gemm(Tensor::zeros({2, 3}), Tensor::zeros({3, 4}), Tensor::zeros({3, 4})); },
      {"gemm", "[3, 4]", "[2, 4]"});
}

}  // namespace
}  // namespace ds
