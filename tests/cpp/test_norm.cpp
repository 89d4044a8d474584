// Normalization ops: values against a float64 computation written here, fast
// kernels against the reference kernel, gradients (x, weight, bias, running
// statistics) against central finite differences, and bad-input messages.
// Tolerances (relative, as tol * (1 + |want|)): float64 1e-12, float32 2e-6;
// gradients 1e-6 against central differences (h = 1e-6).
#include <gtest/gtest.h>

#include "ds/autodiff.h"
#include "ds/ds.h"
#include "gradcheck.h"
#include "reduce_test_util.h"

namespace {

using ds::DType;
using ds::Shape;
using ds::Tensor;
using ds::reduce_test::expect_error;
using ds::reduce_test::expect_values;
using ds::reduce_test::kernel_impl;
using ds::reduce_test::random_tensor;
using ds::reduce_test::run_reference;
using ds::reduce_test::values;
using ds::testing::expect_gradients_match;
using ds::testing::lcg_tensor;

// Normalizes consecutive groups of `len` values of v: centered (layer/group norm) or
// by the root mean square (rms_norm).
std::vector<double> normalize_groups(std::vector<double> v, int64_t len, double eps, bool centered) {
  for (size_t start = 0; start < v.size(); start += static_cast<size_t>(len)) {
    double mu = 0, ss = 0;
    if (centered) {
      for (int64_t j = 0; j < len; ++j) mu += v[start + j];
      mu /= static_cast<double>(len);
    }
    for (int64_t j = 0; j < len; ++j) ss += (v[start + j] - mu) * (v[start + j] - mu);
    const double scale = 1 / std::sqrt(ss / static_cast<double>(len) + eps);
    for (int64_t j = 0; j < len; ++j) v[start + j] = (v[start + j] - mu) * scale;
  }
  return v;
}

// y[i] = y[i] * w[channel(i)] + b[channel(i)], with channel(i) = i / stride % count.
void affine(std::vector<double>& y, const Tensor& w, const Tensor& b, int64_t stride,
            int64_t count) {
  const auto wv = w.defined() ? values(w) : std::vector<double>(static_cast<size_t>(count), 1.0);
  const auto bv = b.defined() ? values(b) : std::vector<double>(static_cast<size_t>(count), 0.0);
  for (size_t i = 0; i < y.size(); ++i) {
    const int64_t c = static_cast<int64_t>(i) / stride % count;
    y[i] = y[i] * wv[c] + bv[c];
  }
}

double tol_for(DType t) { return t == DType::Float64 ? 1e-12 : 2e-6; }

TEST(NormValues, LayerNormAndRmsNormOverTrailingDims) {
  std::mt19937 rng(1);
  struct C { Shape x, ns; };
  for (DType dt : {DType::Float64, DType::Float32})
    for (const C& c : {C{{2, 3, 4}, {4}}, C{{2, 3, 4}, {3, 4}}, C{{5, 1}, {1}}, C{{0, 8}, {8}},
                       C{{7}, {7}}, C{{3, 33}, {33}}}) {
      Tensor x = random_tensor(c.x, dt, rng, -3, 3);
      Tensor w = random_tensor(c.ns, dt, rng), b = random_tensor(c.ns, dt, rng);
      const int64_t len = ds::numel(c.ns);
      const std::string what = ds::shape_str(c.x) + " over " + ds::shape_str(c.ns) + " " +
                               ds::dtype_name(dt);
      for (int variant = 0; variant < 4; ++variant) {
        const Tensor wv = variant & 1 ? w : Tensor(), bv = variant & 2 ? b : Tensor();
        auto want = normalize_groups(values(x), len, 1e-5, true);
        affine(want, wv, bv, 1, len);
        Tensor y = ds::layer_norm(x, c.ns, wv, bv);
        EXPECT_EQ(y.shape(), c.x);
        EXPECT_EQ(y.dtype(), dt);
        expect_values(y, want, tol_for(dt), "layer_norm " + what + " variant " + std::to_string(variant));
      }
      for (const Tensor& wv : {w, Tensor()}) {
        auto want = normalize_groups(values(x), len, 1e-6, false);
        affine(want, wv, Tensor(), 1, len);
        expect_values(ds::rms_norm(x, c.ns, wv), want, tol_for(dt), "rms_norm " + what);
      }
    }
}

TEST(NormValues, GroupNormOverChannelGroups) {
  std::mt19937 rng(2);
  struct C { Shape x; int64_t groups; };
  for (DType dt : {DType::Float64, DType::Float32})
    for (const C& c : {C{{2, 6, 3, 3}, 3}, C{{2, 6, 3, 3}, 1}, C{{2, 6, 3, 3}, 6}, C{{3, 4}, 2},
                       C{{1, 4, 5}, 2}, C{{0, 4, 2}, 4}}) {
      Tensor x = random_tensor(c.x, dt, rng, -3, 3);
      const int64_t ch = c.x[1];
      Tensor w = random_tensor({ch}, dt, rng), b = random_tensor({ch}, dt, rng);
      int64_t spatial = 1;
      for (size_t d = 2; d < c.x.size(); ++d) spatial *= c.x[d];
      auto want = normalize_groups(values(x), ch / c.groups * spatial, 1e-5, true);
      affine(want, w, b, spatial, ch);
      expect_values(ds::group_norm(x, c.groups, w, b), want, tol_for(dt),
                    "group_norm " + ds::shape_str(c.x) + " groups " + std::to_string(c.groups));
      auto plain = normalize_groups(values(x), ch / c.groups * spatial, 1e-3, true);
      expect_values(ds::group_norm(x, c.groups, {}, {}, 1e-3), plain, tol_for(dt), "no affine");
    }
}

TEST(NormValues, BatchNormInferenceUsesRunningStatistics) {
  std::mt19937 rng(3);
  for (DType dt : {DType::Float64, DType::Float32})
    for (const Shape& s : {Shape{2, 3, 4, 4}, Shape{5, 3}, Shape{1, 3, 7}, Shape{0, 3, 2}}) {
      Tensor x = random_tensor(s, dt, rng, -3, 3);
      Tensor mean = random_tensor({3}, dt, rng), var = random_tensor({3}, dt, rng, 0.1, 2);
      Tensor w = random_tensor({3}, dt, rng), b = random_tensor({3}, dt, rng);
      int64_t spatial = 1;
      for (size_t d = 2; d < s.size(); ++d) spatial *= s[d];
      const auto mv = values(mean), vv = values(var);
      auto norm = values(x);
      for (size_t i = 0; i < norm.size(); ++i) {
        const int64_t c = static_cast<int64_t>(i) / spatial % 3;
        norm[i] = (norm[i] - mv[c]) / std::sqrt(vv[c] + 1e-5);
      }
      auto with_affine = norm;
      affine(with_affine, w, b, spatial, 3);
      expect_values(ds::batch_norm(x, mean, var, w, b), with_affine, tol_for(dt),
                    "batch_norm " + ds::shape_str(s));
      expect_values(ds::batch_norm(x, mean, var), norm, tol_for(dt), "batch_norm no affine");
      auto bias_only = norm;
      affine(bias_only, Tensor(), b, spatial, 3);
      expect_values(ds::batch_norm(x, mean, var, {}, b), bias_only, tol_for(dt),
                    "batch_norm bias without weight");
    }
}

// ---- fast kernels vs the reference kernel


TEST(NormFastKernels, LayerNormAndRmsNormAgreeWithReference) {
  std::mt19937 rng(4);
  struct C { Shape x, ns; };
  for (DType dt : {DType::Float32, DType::Float64})
    for (const C& c : {C{{64, 1000}, {1000}}, C{{3, 5, 129}, {5, 129}}, C{{1, 1}, {1}},
                       C{{0, 16}, {16}}, C{{513, 7}, {7}}}) {
      // An offset mean tests the two-pass variance.
      Tensor x = random_tensor(c.x, dt, rng, 50, 54);
      Tensor w = random_tensor(c.ns, dt, rng), b = random_tensor(c.ns, dt, rng);
      const std::string what = ds::shape_str(c.x) + " " + ds::dtype_name(dt);
      const ds::AttrMap attrs = {{"normalized_shape", c.ns}};
      const double tol = dt == DType::Float32 ? 2e-6 : 1e-12;
      for (const std::vector<Tensor>& in : {std::vector<Tensor>{x}, std::vector<Tensor>{x, w},
                                            std::vector<Tensor>{x, w, b}}) {
        EXPECT_EQ(kernel_impl("layer_norm", attrs, in), "vectorized");
        expect_values(ds::apply1("layer_norm", in, attrs),
                      values(run_reference("layer_norm", in, attrs)[0]), tol,
                      "layer_norm " + what + " inputs " + std::to_string(in.size()));
        if (in.size() < 3)
          expect_values(ds::apply1("rms_norm", in, attrs),
                        values(run_reference("rms_norm", in, attrs)[0]), tol, "rms_norm " + what);
      }
    }
}

TEST(NormFastKernels, BatchNormAndGroupNormAgreeWithReference) {
  std::mt19937 rng(5);
  for (DType dt : {DType::Float32, DType::Float64})
    for (const Shape& s : {Shape{8, 18, 13, 13}, Shape{3, 6}, Shape{2, 6, 1}, Shape{0, 6, 4}}) {
      const int64_t ch = s[1];
      Tensor x = random_tensor(s, dt, rng, 20, 24);
      Tensor mean = random_tensor({ch}, dt, rng, 20, 24), var = random_tensor({ch}, dt, rng, 0.1, 3);
      Tensor w = random_tensor({ch}, dt, rng), b = random_tensor({ch}, dt, rng);
      const std::string what = ds::shape_str(s) + " " + ds::dtype_name(dt);
      const double tol = dt == DType::Float32 ? 2e-6 : 1e-12;
      for (size_t count : {3u, 4u, 5u}) {
        std::vector<Tensor> in = {x, mean, var, w, b};
        in.resize(count);
        EXPECT_EQ(kernel_impl("batch_norm", {}, in), "vectorized");
        expect_values(ds::apply1("batch_norm", in), values(run_reference("batch_norm", in)[0]), tol,
                      "batch_norm " + what + " inputs " + std::to_string(count));
      }
      for (int64_t groups : {int64_t{1}, int64_t{3}, ch}) {
        const ds::AttrMap attrs = {{"num_groups", groups}};
        for (const std::vector<Tensor>& in : {std::vector<Tensor>{x}, std::vector<Tensor>{x, w, b}}) {
          EXPECT_EQ(kernel_impl("group_norm", attrs, in), "vectorized");
          expect_values(ds::apply1("group_norm", in, attrs),
                        values(run_reference("group_norm", in, attrs)[0]), tol,
                        "group_norm " + what + " groups " + std::to_string(groups));
        }
      }
    }
}

// ---- gradients (float64, central differences), through ds::value_and_grad

TEST(NormGrad, LayerNormXWeightBias) {
  for (const Shape& ns : {Shape{4}, Shape{3, 4}}) {
    const Tensor r = lcg_tensor({2, 3, 4}, 50);  // weights the outputs: sum(y) alone is flat in x
    auto fn = [&](const std::vector<Tensor>& a) {
      return ds::sum(ds::layer_norm(a[0], ns, a[1], a[2]) * r);
    };
    expect_gradients_match(fn, {lcg_tensor({2, 3, 4}, 51, -2, 2), lcg_tensor(ns, 52), lcg_tensor(ns, 53)},
                           {0, 1, 2});
    auto no_affine = [&](const std::vector<Tensor>& a) { return ds::sum(ds::layer_norm(a[0], ns) * r); };
    expect_gradients_match(no_affine, {lcg_tensor({2, 3, 4}, 54, -2, 2)}, {0});
  }
}

TEST(NormGrad, RmsNormXWeight) {
  const Tensor r = lcg_tensor({3, 5}, 60);
  auto fn = [&](const std::vector<Tensor>& a) { return ds::sum(ds::rms_norm(a[0], {5}, a[1]) * r); };
  expect_gradients_match(fn, {lcg_tensor({3, 5}, 61, -2, 2), lcg_tensor({5}, 62)}, {0, 1});
  auto whole = [&](const std::vector<Tensor>& a) { return ds::sum(ds::rms_norm(a[0], {3, 5}) * r); };
  expect_gradients_match(whole, {lcg_tensor({3, 5}, 63, -2, 2)}, {0});
}

TEST(NormGrad, GroupNormXWeightBias) {
  const Tensor r = lcg_tensor({2, 6, 2, 3}, 70);
  auto fn = [&](const std::vector<Tensor>& a) {
    return ds::sum(ds::group_norm(a[0], 3, a[1], a[2]) * r);
  };
  expect_gradients_match(fn, {lcg_tensor({2, 6, 2, 3}, 71, -2, 2), lcg_tensor({6}, 72),
                              lcg_tensor({6}, 73)},
                         {0, 1, 2});
  const Tensor r2 = lcg_tensor({3, 4}, 74);
  auto flat = [&](const std::vector<Tensor>& a) { return ds::sum(ds::group_norm(a[0], 2) * r2); };
  expect_gradients_match(flat, {lcg_tensor({3, 4}, 75, -2, 2)}, {0});
}

TEST(NormGrad, BatchNormAllInputs) {
  const Tensor r = lcg_tensor({2, 3, 2, 2}, 80);
  auto fn = [&](const std::vector<Tensor>& a) {
    return ds::sum(ds::batch_norm(a[0], a[1], a[2], a[3], a[4]) * r);
  };
  expect_gradients_match(fn, {lcg_tensor({2, 3, 2, 2}, 81, -2, 2), lcg_tensor({3}, 82),
                              lcg_tensor({3}, 83, 0.5, 1.5), lcg_tensor({3}, 84), lcg_tensor({3}, 85)},
                         {0, 1, 2, 3, 4});
  auto plain = [&](const std::vector<Tensor>& a) {
    return ds::sum(ds::batch_norm(a[0], a[1], a[2]) * r);
  };
  expect_gradients_match(plain, {lcg_tensor({2, 3, 2, 2}, 86, -2, 2), lcg_tensor({3}, 87),
                                 lcg_tensor({3}, 88, 0.5, 1.5)},
                         {0, 1, 2});
}

TEST(NormGrad, LayerNormOverADynamicBatch) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {ds::dyn, 4}, DType::Float64);
  Tensor w = g.placeholder("w", {4}, DType::Float64);
  Tensor loss = ds::sum(ds::square(ds::layer_norm(x, {4}, w)));
  auto grads = ds::grad(g, loss, {x, w});
  g.output(grads[1], "dw");
  auto exe = ds::compile(g, "cpu");
  Tensor xv = lcg_tensor({3, 4}, 90), wv = lcg_tensor({4}, 91);
  // d/dw sum((xhat w)^2) = 2 w sum_rows xhat^2
  Tensor xhat = ds::layer_norm(xv, {4});
  expect_values(exe.run({{"x", xv}, {"w", wv}})["dw"],
                values(ds::sum(ds::square(xhat), {0}) * wv * 2.0), 1e-12);
}

// ---- bad input

TEST(NormErrors, MessagesNameTheOpAndTheProblem) {
  Tensor x = Tensor::zeros({2, 3, 4});
  expect_error<ds::ShapeError>([&] { ds::layer_norm(x, {3}); },
                               {"layer_norm", "normalized_shape [3]", "[2, 3, 4]"});
  expect_error<ds::ShapeError>([&] { ds::layer_norm(x, {1, 2, 3, 4}); }, {"layer_norm", "[1, 2, 3, 4]"});
  expect_error<ds::ValueError>([&] { ds::layer_norm(x, {}); }, {"layer_norm", "at least one"});
  expect_error<ds::ShapeError>([&] { ds::layer_norm(x, {4}, Tensor::zeros({3})); },
                               {"layer_norm", "weight", "[3]", "expected [4]"});
  expect_error<ds::ShapeError>([&] { ds::layer_norm(x, {4}, Tensor::zeros({4}), Tensor::zeros({2})); },
                               {"layer_norm", "bias", "[2]"});
  expect_error<ds::ShapeError>([&] { ds::rms_norm(x, {3, 5}); }, {"rms_norm", "normalized_shape"});
  expect_error<ds::ShapeError>([&] { ds::rms_norm(x, {4}, Tensor::zeros({5})); },
                               {"rms_norm", "weight", "[5]"});
  expect_error<ds::ValueError>([&] { ds::group_norm(x, 2); }, {"group_norm", "channels (3)", "num_groups (2)"});
  expect_error<ds::ValueError>([&] { ds::group_norm(x, 0); }, {"group_norm", "positive"});
  expect_error<ds::ShapeError>([&] { ds::group_norm(x, 3, Tensor::zeros({4})); },
                               {"group_norm", "weight", "[4]", "expected [3]"});
  expect_error<ds::ShapeError>([&] { ds::group_norm(Tensor::zeros({4}), 1); }, {"group_norm", "rank >= 2"});
  expect_error<ds::ShapeError>([&] { ds::batch_norm(x, Tensor::zeros({3}), Tensor::zeros({4})); },
                               {"batch_norm", "running_var", "[4]", "expected [3]"});
  expect_error<ds::TypeError>(
      [&] { ds::layer_norm(Tensor::from_vector<int32_t>({1, 2}, {2}), {2}); },
      {"layer_norm", "floating-point", "int32"});
  ds::Graph g;
  Tensor p = g.placeholder("p", {ds::dyn, 4});
  expect_error<ds::ShapeError>([&] { ds::layer_norm(p, {5}); }, {"layer_norm", "[None, 4]"});
}

}  // namespace
