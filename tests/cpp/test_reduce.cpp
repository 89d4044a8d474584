// Reductions, argmax/argmin, softmax/log_softmax: values against a float64
// computation written here, fast kernels against the reference kernel, gradients
// against central finite differences, and bad-input messages.
// Tolerances (relative, as tol * (1 + |want|)): float64 1e-12 (values) and 1e-13
// (fast vs reference); float32 2e-6 (values) and 3e-7, about 2 ulps (fast vs
// reference; softmax 6e-7 for its polynomial exp); float16/bfloat16 one ulp; max,
// min, argmax, argmin exact; gradients 1e-6 against central differences (h = 1e-6).
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "ds/autodiff.h"
#include "ds/ds.h"
#include "ds/runtime.h"
#include "gradcheck.h"
#include "reduce_test_util.h"

namespace {

using ds::Axes;
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

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

using Fold = std::function<double(const std::vector<double>&)>;

// The groups of x's values that each output element folds, found by mapping every
// input index to its output index (independent of the op's own walk).
std::vector<std::vector<double>> groups(const Tensor& x, Axes axes) {
  const int rank = x.ndim();
  std::vector<bool> reduced(static_cast<size_t>(rank), axes.empty());
  for (int64_t a : axes) reduced[a < 0 ? a + rank : a] = true;
  Shape kept;
  for (int d = 0; d < rank; ++d)
    if (!reduced[d]) kept.push_back(x.shape()[d]);
  std::vector<std::vector<double>> g(static_cast<size_t>(ds::numel(kept)));
  const auto v = values(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t rem = i, out = 0, scale = 1;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t c = rem % x.shape()[d];
      rem /= x.shape()[d];
      if (!reduced[d]) {
        out += c * scale;
        scale *= x.shape()[d];
      }
    }
    g[out].push_back(v[i]);
  }
  return g;
}

Shape expected_shape(const Shape& in, Axes axes, bool keepdims) {
  const int rank = static_cast<int>(in.size());
  Shape out;
  for (int d = 0; d < rank; ++d) {
    bool r = axes.empty();
    for (int64_t a : axes) r |= (a < 0 ? a + rank : a) == d;
    if (!r) out.push_back(in[d]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

double f_sum(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e;
  return s;
}
double f_mean(const std::vector<double>& v) { return f_sum(v) / static_cast<double>(v.size()); }
double f_var(const std::vector<double>& v, int ddof) {
  const double m = f_mean(v);
  double s = 0;
  for (double e : v) s += (e - m) * (e - m);
  return s / static_cast<double>(static_cast<int>(v.size()) - ddof);
}
double f_max(const std::vector<double>& v) {
  double m = -kInf;
  for (double e : v) m = std::isnan(e) || std::isnan(m) ? kNaN : std::max(m, e);
  return m;
}
double f_min(const std::vector<double>& v) {
  double m = kInf;
  for (double e : v) m = std::isnan(e) || std::isnan(m) ? kNaN : std::min(m, e);
  return m;
}
double f_prod(const std::vector<double>& v) {
  double p = 1;
  for (double e : v) p *= e;
  return p;
}
double f_logsumexp(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += std::exp(e);
  return std::log(s);
}

struct Case {
  const char* op;
  Fold fold;
  std::function<Tensor(const Tensor&, const Axes&, bool)> fn;
};

std::vector<Case> cases() {
  return {
      {"sum", f_sum, [](const Tensor& x, const Axes& a, bool k) { return ds::sum(x, a, k); }},
      {"mean", f_mean, [](const Tensor& x, const Axes& a, bool k) { return ds::mean(x, a, k); }},
      {"prod", f_prod, [](const Tensor& x, const Axes& a, bool k) { return ds::prod(x, a, k); }},
      {"max", f_max, [](const Tensor& x, const Axes& a, bool k) { return ds::max(x, a, k); }},
      {"min", f_min, [](const Tensor& x, const Axes& a, bool k) { return ds::min(x, a, k); }},
      {"var", [](const std::vector<double>& v) { return f_var(v, 0); },
       [](const Tensor& x, const Axes& a, bool k) { return ds::var(x, a, k); }},
      {"var_ddof1", [](const std::vector<double>& v) { return f_var(v, 1); },
       [](const Tensor& x, const Axes& a, bool k) { return ds::var(x, a, k, 1); }},
      {"std", [](const std::vector<double>& v) { return std::sqrt(f_var(v, 0)); },
       [](const Tensor& x, const Axes& a, bool k) { return ds::std(x, a, k); }},
      {"std_ddof1", [](const std::vector<double>& v) { return std::sqrt(f_var(v, 1)); },
       [](const Tensor& x, const Axes& a, bool k) { return ds::std(x, a, k, 1); }},
      {"logsumexp", f_logsumexp,
       [](const Tensor& x, const Axes& a, bool k) { return ds::logsumexp(x, a, k); }},
  };
}

struct ShapeAxes {
  Shape shape;
  Axes axes;
};

std::vector<ShapeAxes> shape_cases() {
  return {{{}, {}},          {{1}, {}},           {{7}, {0}},         {{7}, {-1}},
          {{3, 5}, {}},      {{3, 5}, {1}},       {{3, 5}, {-2}},     {{4, 1, 5}, {1}},
          {{2, 3, 4}, {0, 2}}, {{2, 3, 4}, {-1, -2}}, {{2, 3, 4, 5}, {1, 3}}, {{33, 17}, {0}},
          {{2, 0, 3}, {2}}};
}

TEST(ReduceValues, AllOpsMatchFloat64OnSeveralShapesAxesAndKeepdims) {
  std::mt19937 rng(7);
  for (DType dt : {DType::Float64, DType::Float32}) {
    const double tol = dt == DType::Float64 ? 1e-12 : 2e-6;
    for (const auto& sa : shape_cases()) {
      Tensor x = random_tensor(sa.shape, dt, rng, -1.5, 1.5);
      const auto g = groups(x, sa.axes);
      for (const auto& c : cases()) {
        for (bool keep : {false, true}) {
          const std::string what = std::string(c.op) + " " + ds::shape_str(sa.shape) + " axes " +
                                   ds::shape_str(sa.axes) + (keep ? " keepdims " : " ") +
                                   ds::dtype_name(dt);
          const bool empty_group = !g.empty() && g[0].empty();
          if (empty_group && (std::string(c.op) == "max" || std::string(c.op) == "min")) continue;
          Tensor y = c.fn(x, sa.axes, keep);
          EXPECT_EQ(y.shape(), expected_shape(sa.shape, sa.axes, keep)) << what;
          EXPECT_EQ(y.dtype(), dt) << what;
          std::vector<double> want;
          for (const auto& v : g) want.push_back(c.fold(v));
          expect_values(y, want, tol, what);
        }
      }
    }
  }
}

TEST(ReduceValues, EmptyReductionsFollowNumpy) {
  Tensor x = Tensor::zeros({2, 0});
  expect_values(ds::sum(x, {1}), {0, 0});
  expect_values(ds::prod(x, {1}), {1, 1});
  expect_values(ds::mean(x, {1}), {kNaN, kNaN});
  expect_values(ds::logsumexp(x, {1}), {-kInf, -kInf});
  expect_values(ds::sum(Tensor::zeros({0, 3}), {0}), {0, 0, 0});  // over a leading axis too
  expect_values(ds::mean(Tensor::zeros({0, 3}), {0}), {kNaN, kNaN, kNaN});
  EXPECT_EQ(ds::max(x, {0}).shape(), (Shape{0}));  // nothing reduced over an empty axis
  expect_error<ds::ValueError>([&] { ds::max(x, {1}); }, {"max", "zero-size", "[2, 0]"});
  expect_error<ds::ValueError>([&] { ds::min(x); }, {"min", "zero-size"});
  expect_error<ds::ValueError>([&] { ds::argmax(x, 1); }, {"argmax", "empty", "extent 0"});
}

TEST(ReduceValues, IntegerInputs) {
  Tensor x = Tensor::from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor s = ds::sum(x, {1});
  EXPECT_EQ(s.dtype(), DType::Int64);
  expect_values(s, {6, 15});
  EXPECT_EQ(ds::prod(x, {0}).dtype(), DType::Int64);
  expect_values(ds::prod(x, {0}), {4, 10, 18});
  EXPECT_EQ(ds::max(x).dtype(), DType::Int32);
  expect_values(ds::max(x, {0}), {4, 5, 6});
  for (Tensor y : {ds::mean(x, {1}), ds::var(x, {1}), ds::std(x, {1}), ds::logsumexp(x, {1}),
                   ds::softmax(x)})
    EXPECT_EQ(y.dtype(), DType::Float32);
  expect_values(ds::mean(x, {1}), {2, 5}, 1e-7);
  expect_values(ds::var(x, {1}), {2.0 / 3, 2.0 / 3}, 1e-7);
}

// Integer and bool inputs: sum/prod widen to int64, max/min keep the type, argmax is int64.
TEST(ReduceValues, SmallIntegerAndBoolInputs) {
  Tensor i8 = Tensor::from_vector<int8_t>({-3, 7, 100, 100, -128, 5}, {2, 3});
  expect_values(ds::sum(i8, {1}), {104, -23});
  EXPECT_EQ(ds::sum(i8).dtype(), DType::Int64);
  expect_values(ds::max(i8, {0}), {100, 7, 100});
  EXPECT_EQ(ds::max(i8).dtype(), DType::Int8);
  expect_values(ds::argmin(i8, 1), {0, 1});
  Tensor u8 = Tensor::from_vector<uint8_t>({200, 100, 250}, {3});
  expect_values(ds::sum(u8), {550});
  expect_values(ds::mean(u8), {550.0 / 3}, 1e-7);
  Tensor flags = Tensor::from_vector<bool>({true, false, true, true}, {2, 2});
  expect_values(ds::sum(flags, {0}), {2, 1});
  EXPECT_EQ(ds::sum(flags).dtype(), DType::Int64);
  expect_values(ds::max(flags, {1}), {1, 1});
  expect_values(ds::min(flags, {1}), {0, 1});
}

TEST(ReduceValues, MaxMinPropagateNaNAndLogsumexpIsStable) {
  Tensor x = Tensor::from_vector<double>({1, kNaN, 3, 4, 5, 6, -kInf, -kInf, -kInf}, {3, 3});
  expect_values(ds::max(x, {1}), {kNaN, 6, -kInf});
  expect_values(ds::min(x, {1}), {kNaN, 4, -kInf});
  Tensor big = Tensor::from_vector<double>({1000, 1000, -1000, -1000}, {2, 2});
  expect_values(ds::logsumexp(big, {1}), {1000 + std::log(2.0), -1000 + std::log(2.0)}, 1e-15);
  expect_values(ds::logsumexp(x, {1}), {kNaN, 6 + std::log1p(std::exp(-1) + std::exp(-2)), -kInf},
                1e-15);
}

TEST(ReduceValues, ArgmaxArgminFirstIndexTiesAndNaN) {
  Tensor x = Tensor::from_vector<float>({3, 1, 3, 0, 2, 2, 5, -1, -1}, {3, 3});
  Tensor am = ds::argmax(x, 1);
  EXPECT_EQ(am.dtype(), DType::Int64);
  expect_values(am, {0, 1, 0});
  expect_values(ds::argmin(x, -1), {1, 0, 1});
  expect_values(ds::argmax(x, 0, true), {2, 1, 0});
  EXPECT_EQ(ds::argmax(x, 0, true).shape(), (Shape{1, 3}));
  Tensor n = Tensor::from_vector<double>({1, kNaN, 7, kNaN}, {4});
  expect_values(ds::argmax(n, 0), {1});
  expect_values(ds::argmin(n, 0), {1});
  std::mt19937 rng(3);
  Tensor r = random_tensor({5, 6, 7}, DType::Float64, rng);
  for (int axis = -3; axis < 3; ++axis) {
    Tensor got = ds::argmax(r, axis);
    EXPECT_EQ(got.shape(), expected_shape(r.shape(), {axis}, false));
    const auto g = groups(r, {axis});
    std::vector<double> want;
    for (const auto& v : g)
      want.push_back(static_cast<double>(std::max_element(v.begin(), v.end()) - v.begin()));
    expect_values(got, want, 0.0, "argmax axis " + std::to_string(axis));
  }
}

// Softmax oracle along `axis`, float64.
std::vector<double> softmax_oracle(const Tensor& x, int axis, bool log_form) {
  const Shape& s = x.shape();
  const int rank = x.ndim();
  axis = axis < 0 ? axis + rank : axis;
  int64_t inner = 1;
  for (int d = axis + 1; d < rank; ++d) inner *= s[d];
  const int64_t n = s[axis];
  auto v = values(x);
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t base = i - (i / inner % n) * inner;
    double m = -kInf;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, v[base + j * inner]);
    double z = 0;
    for (int64_t j = 0; j < n; ++j) z += std::exp(v[base + j * inner] - m);
    out[i] = log_form ? v[i] - m - std::log(z) : std::exp(v[i] - m) / z;
  }
  return out;
}

TEST(ReduceValues, SoftmaxAndLogSoftmaxMatchFloat64OnEveryAxis) {
  std::mt19937 rng(11);
  for (DType dt : {DType::Float64, DType::Float32}) {
    const double tol = dt == DType::Float64 ? 1e-13 : 1e-6;
    for (const Shape& shape : {Shape{1}, Shape{7}, Shape{3, 5}, Shape{2, 3, 4}, Shape{0, 4},
                               Shape{4, 129}}) {
      Tensor x = random_tensor(shape, dt, rng, -30, 30);
      for (int axis = -static_cast<int>(shape.size()); axis < static_cast<int>(shape.size());
           ++axis) {
        const std::string what = ds::shape_str(shape) + " axis " + std::to_string(axis) + " " +
                                 ds::dtype_name(dt);
        expect_values(ds::softmax(x, axis), softmax_oracle(x, axis, false), tol, "softmax " + what);
        expect_values(ds::log_softmax(x, axis), softmax_oracle(x, axis, true), tol,
                      "log_softmax " + what);
      }
    }
  }
}

// Half-precision inputs run the float64 reference and round once: within one ulp of
// the result's type (2^-10 for float16, 2^-7 for bfloat16, relative).
TEST(ReduceValues, HalfPrecisionKeepsItsTypeWithinOneUlp) {
  std::mt19937 rng(17);
  for (DType dt : {DType::Float16, DType::BFloat16}) {
    const double tol = dt == DType::Float16 ? 1.0 / 1024 : 1.0 / 128;
    Tensor x = random_tensor({6, 7}, dt, rng, -2, 2);
    const auto g = groups(x, {1});
    for (const auto& c : cases()) {
      Tensor y = c.fn(x, {1}, false);
      EXPECT_EQ(y.dtype(), dt) << c.op;
      std::vector<double> want;
      for (const auto& v : g) want.push_back(c.fold(v));
      expect_values(y, want, tol, std::string(c.op) + " " + ds::dtype_name(dt));
    }
    EXPECT_EQ(ds::softmax(x).dtype(), dt);
    expect_values(ds::softmax(x, 1), softmax_oracle(x, 1, false), tol, "softmax");
  }
}

// ---- fast kernels vs the reference kernel


TEST(ReduceFastKernels, SumMeanMaxMinAgreeWithReferenceOnLargeShapes) {
  std::mt19937 rng(5);
  const std::vector<ShapeAxes> layouts = {
      {{1000003}, {}},          // all axes, one long row (chunked, pairwise)
      {{257, 1031}, {1}},       // trailing contiguous
      {{257, 1031}, {0}},       // leading axis: strided, vectorized along the kept axis
      {{17, 300, 33}, {1}},     // middle axis: outer/reduce/inner
      {{17, 300, 33}, {0, 2}},  // two separate blocks: two steps
      {{6, 5, 4, 3, 2}, {0, 2, 4}},
      {{3, 70001}, {1}},        // few long rows
      {{70001, 3}, {0}},        // long strided reduction, split over the reduced axis
      {{5, 9000}, {0}},         // kept axis wider than one tile (several tiles, a partial one)
      {{3, 40, 4100}, {1}},
      {{4, 1, 9}, {1}},         // only an extent-1 axis
      {{2, 0, 5}, {0}},
      {{0, 3}, {0}},            // an empty strided reduction (the tiled kernel has no rows)
      {{3, 0, 4}, {1}},
  };
  for (DType dt : {DType::Float32, DType::Float64}) {
    const double tol = dt == DType::Float32 ? 3e-7 : 1e-13;
    for (const auto& l : layouts) {
      Tensor x = random_tensor(l.shape, dt, rng, -1, 3);
      for (const char* op : {"sum", "mean", "max", "min"}) {
        const std::string what = std::string(op) + " " + ds::shape_str(l.shape) + " axes " +
                                 ds::shape_str(l.axes) + " " + ds::dtype_name(dt);
        const ds::AttrMap attrs = {{"axes", l.axes}, {"keepdims", false}};
        if ((std::string(op) == "max" || std::string(op) == "min") && x.numel() == 0) continue;
        EXPECT_EQ(kernel_impl(op, attrs, {x}), "vectorized") << what;
        Tensor fast = ds::apply1(op, {x}, attrs);
        Tensor ref = run_reference(op, {x}, attrs)[0];
        ASSERT_EQ(fast.shape(), ref.shape()) << what;
        const bool exact = std::string(op) == "max" || std::string(op) == "min";
        expect_values(fast, values(ref), exact ? 0.0 : tol, what);
      }
    }
  }
}

TEST(ReduceFastKernels, NaNAndInfinityPropagateLikeTheReference) {
  std::mt19937 rng(9);
  Tensor x = random_tensor({40, 5000}, DType::Float32, rng);
  float* p = x.data<float>();
  p[3 * 5000 + 4321] = NAN;
  p[7 * 5000 + 17] = INFINITY;
  p[9 * 5000 + 4999] = -INFINITY;
  for (const char* op : {"sum", "mean", "max", "min"})
    for (const Axes& axes : {Axes{1}, Axes{0}, Axes{}}) {
      const ds::AttrMap attrs = {{"axes", axes}, {"keepdims", true}};
      expect_values(ds::apply1(op, {x}, attrs), values(run_reference(op, {x}, attrs)[0]), 3e-7,
                    op);
    }
}

// Chunks are fixed by the shape, not the thread count: results are bit-identical.
TEST(ReduceFastKernels, ResultsDoNotDependOnTheThreadCount) {
  std::mt19937 rng(21);
  const int threads = ds::num_threads();
  Tensor x = random_tensor({300, 7001}, DType::Float32, rng, -1, 3);
  for (const Axes& axes : {Axes{}, Axes{0}, Axes{1}}) {
    ds::set_num_threads(1);
    const auto one = values(ds::sum(x, axes));
    ds::set_num_threads(5);
    const auto five = values(ds::sum(x, axes));
    EXPECT_EQ(one, five) << "axes " << ds::shape_str(axes);
  }
  ds::set_num_threads(threads);
}

TEST(ReduceFastKernels, LastAxisStatisticsAgreeWithReference) {
  std::mt19937 rng(15);
  for (DType dt : {DType::Float32, DType::Float64}) {
    const double tol = dt == DType::Float32 ? 6e-7 : 1e-13;
    for (const Shape& shape : {Shape{1}, Shape{9}, Shape{33, 1000}, Shape{4, 3, 129}, Shape{6, 17}}) {
      Tensor x = random_tensor(shape, dt, rng, 30, 34);  // an offset mean tests the two passes
      if (shape == Shape{6, 17}) {  // rows with NaN, +inf, all -inf, ties
        Tensor xd = x.to(DType::Float64);
        double* p = xd.data<double>();
        p[3] = kNaN;
        p[17 + 5] = kInf;
        for (int j = 0; j < 17; ++j) p[34 + j] = -kInf;
        p[51 + 2] = p[51 + 9] = 40;
        x = xd.to(dt);
      }
      const std::string where = ds::shape_str(shape) + " " + ds::dtype_name(dt);
      for (const char* op : {"var", "std", "logsumexp"})
        for (int64_t ddof : {0, 1}) {
          ds::AttrMap attrs = {{"axes", Axes{-1}}, {"keepdims", ddof == 1}};
          if (std::string(op) != "logsumexp") attrs["ddof"] = ddof;
          EXPECT_EQ(kernel_impl(op, attrs, {x}), "vectorized") << op;
          expect_values(ds::apply1(op, {x}, attrs), values(run_reference(op, {x}, attrs)[0]), tol,
                        std::string(op) + " " + where);
        }
      for (const char* op : {"argmax", "argmin"}) {
        const ds::AttrMap attrs = {{"axis", int64_t{-1}}};
        EXPECT_EQ(kernel_impl(op, attrs, {x}), "vectorized") << op;
        expect_values(ds::apply1(op, {x}, attrs), values(run_reference(op, {x}, attrs)[0]), 0.0,
                      std::string(op) + " " + where);
      }
    }
  }
}

TEST(ReduceFastKernels, SoftmaxLastAxisAgreesWithReference) {
  std::mt19937 rng(13);
  for (DType dt : {DType::Float32, DType::Float64}) {
    for (const Shape& shape : {Shape{1}, Shape{33, 1000}, Shape{4, 3, 129}, Shape{5, 0},
                               Shape{2, 17}}) {
      Tensor x = random_tensor(shape, dt, rng, -40, 40);
      if (shape == Shape{2, 17}) {  // a row with -inf entries and a row with a NaN
        Tensor xd = x.to(DType::Float64);
        xd.data<double>()[3] = -kInf;
        xd.data<double>()[5] = -kInf;
        xd.data<double>()[20] = kNaN;
        x = xd.to(dt);
      }
      for (const char* op : {"softmax", "log_softmax"}) {
        const std::string what = std::string(op) + " " + ds::shape_str(shape) + " " +
                                 ds::dtype_name(dt);
        Tensor fast = ds::apply1(op, {x}, {{"axis", int64_t{-1}}});
        Tensor ref = run_reference(op, {x}, {{"axis", int64_t{-1}}})[0];
        // float32: exp is a polynomial (about 1 ulp), plus the final scaling.
        expect_values(fast, values(ref), dt == DType::Float32 ? 6e-7 : 1e-14, what);
      }
    }
  }
}

// ---- gradients (float64, central differences), through ds::value_and_grad

Tensor weights_like(const Shape& shape) { return lcg_tensor(shape, 99, 0.5, 1.5); }

TEST(ReduceGrad, EveryDifferentiableReductionMatchesFiniteDifferences) {
  const std::vector<ShapeAxes> layouts = {{{2, 3, 4}, {1}}, {{2, 3, 4}, {0, 2}}, {{5}, {}},
                                          {{3, 4}, {-1}}};
  for (const auto& c : cases()) {
    for (const auto& l : layouts) {
      for (bool keep : {false, true}) {
        SCOPED_TRACE(std::string(c.op) + " " + ds::shape_str(l.shape) + " axes " +
                     ds::shape_str(l.axes) + (keep ? " keepdims" : ""));
        const Tensor w = weights_like(expected_shape(l.shape, l.axes, keep));
        auto fn = [&](const std::vector<Tensor>& a) { return ds::sum(c.fn(a[0], l.axes, keep) * w); };
        // Values in [0.2, 1.7): no ties for max/min, positive for prod.
        expect_gradients_match(fn, {lcg_tensor(l.shape, 21, 0.2, 1.7)}, {0}, 1e-6);
      }
    }
  }
}

TEST(ReduceGrad, SoftmaxAndLogSoftmax) {
  for (int axis : {0, 1, -1}) {
    const Tensor w = lcg_tensor({3, 5}, 4);
    expect_gradients_match(
        [&](const std::vector<Tensor>& a) { return ds::sum(ds::softmax(a[0], axis) * w); },
        {lcg_tensor({3, 5}, 31, -3, 3)}, {0});
    expect_gradients_match(
        [&](const std::vector<Tensor>& a) { return ds::sum(ds::log_softmax(a[0], axis) * w); },
        {lcg_tensor({3, 5}, 32, -3, 3)}, {0});
  }
}

TEST(ReduceGrad, MaxTiesSplitTheGradientEvenly) {
  Tensor x = Tensor::from_vector<double>({1, 3, 3, 2, 5, 5, 5, 0}, {2, 4});
  Tensor g = Tensor::from_vector<double>({6, 3}, {2});
  auto grads = ds::reduce_test::vjp("max", {x}, {{"axes", Axes{1}}}, {g});
  expect_values(grads[0], {0, 3, 3, 0, 1, 1, 1, 0});
  grads = ds::reduce_test::vjp("min", {x}, {{"axes", Axes{0}}}, {Tensor::full({4}, 1.0, DType::Float64)});
  expect_values(grads[0], {1, 1, 1, 0, 0, 0, 0, 1});
}

TEST(ReduceGrad, ProdWithZerosHasNoDivisionByZero) {
  Tensor x = Tensor::from_vector<double>({2, 0, 3, 0, 0, 3, 2, 4, 5}, {3, 3});
  auto grads = ds::reduce_test::vjp("prod", {x}, {{"axes", Axes{1}}},
                             {Tensor::full({3}, 1.0, DType::Float64)});
  // one zero: only it gets the product of the rest; two zeros: all zero.
  expect_values(grads[0], {0, 6, 0, 0, 0, 0, 20, 10, 8});
}

TEST(ReduceGrad, MeanOverADynamicBatchDividesByTheFedSize) {
  ds::Graph g;
  Tensor x = g.placeholder("x", {ds::dyn, 3}, DType::Float64);
  Tensor loss = ds::sum(ds::mean(x, {0}) * 2.0) + ds::sum(ds::var(x, {0}, false, 1));
  auto grads = ds::grad(g, loss, {x});
  g.output(grads[0], "dx");
  auto exe = ds::compile(g, "cpu");
  Tensor feed = lcg_tensor({4, 3}, 8);
  Tensor dx = exe.run({{"x", feed}})["dx"];
  // d/dx mean*2 = 2/N; d/dx var(ddof=1) = 2 (x - mean) / (N - 1)
  Tensor m = ds::mean(feed, {0}, true);
  auto want = values(2.0 / 4 + (feed - m) * (2.0 / 3));
  expect_values(dx, want, 1e-12);
}

TEST(ReduceGrad, IntegerInputsGetNoGradient) {
  Tensor x = Tensor::from_vector<int32_t>({1, 2, 3}, {3});
  for (const char* op : {"sum", "mean", "max", "var"}) {
    const Tensor g = Tensor::scalar(1.0, ds::apply1(op, {x}).dtype());
    EXPECT_FALSE(ds::reduce_test::vjp(op, {x}, {}, {g})[0].defined()) << op;
  }
}

// ---- bad input

TEST(ReduceErrors, MessagesNameTheOpAndTheProblem) {
  Tensor x = Tensor::zeros({2, 3});
  expect_error<ds::ValueError>([&] { ds::sum(x, {2}); }, {"sum", "axis 2", "rank 2"});
  expect_error<ds::ValueError>([&] { ds::mean(x, {-3}); }, {"mean", "axis -3"});
  expect_error<ds::ValueError>([&] { ds::max(x, {0, -2}); }, {"max", "repeated axis"});
  expect_error<ds::ValueError>([&] { ds::argmax(x, 5); }, {"argmax", "axis 5"});
  expect_error<ds::ValueError>([&] { ds::softmax(x, 2); }, {"softmax", "axis 2"});
  expect_error<ds::ValueError>([&] { ds::log_softmax(x, -3); }, {"log_softmax", "axis -3"});
  expect_error<ds::ValueError>([&] { ds::var(x, {0}, false, -1); }, {"var", "ddof", "-1"});
  ds::Graph g;
  Tensor p = g.placeholder("p", {ds::dyn, 4});
  expect_error<ds::ValueError>([&] { ds::std(p, {3}); }, {"std", "axis 3"});
}

}  // namespace
