// The vectorized CPU elementwise kernels against the float64 reference kernels:
// float32 transcendentals within a few ulps (random, tiny, huge and special
// inputs), exact results where the arithmetic is exact, integer and bool dtypes,
// broadcasting shapes, thread-count independence, and that they are selected.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <limits>

#include "shape_test_util.h"

namespace ds {
namespace {

using shape_test::run_reference;
using shape_test::values;

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Distance in representable float32 values; 0 when both are NaN.
int64_t ulps(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : INT64_MAX;
  auto key = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, 4);
    return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
  };
  return std::abs(key(a) - key(b));
}

std::string impl_of(const std::string& op, const std::vector<Tensor>& inputs,
                    const AttrMap& attrs) {
  const OpDef& def = get_op(op);
  AttrMap full = complete_attrs(def, attrs, "");
  std::vector<TensorType> types;
  for (const Tensor& t : inputs) types.push_back({t.dtype(), t.shape()});
  return select_kernel(OpContext{def, full, types, ""}, DeviceKind::CPU).impl;
}

// Random values over many magnitudes plus the special values, n of them.
Tensor float32_inputs(int64_t n, std::mt19937& rng) {
  const float specials[] = {0.0f,   -0.0f,   kInf,    -kInf,  kNaN,    1e-45f,   -1e-45f,
                            1e-38f, -3e-39f, 1e30f,   -1e30f, 3.4e38f, -3.4e38f, 88.7f,
                            -88.7f, 103.0f,  -103.0f, 1.0f,   -1.0f,   0.5f,     -0.5f};
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-40, 40);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int kind = static_cast<int>(i % 4);
    if (i < static_cast<int64_t>(std::size(specials)) && n > 64)
      v[i] = specials[i];
    else if (kind == 0)
      v[i] = static_cast<float>(10 * unit(rng));
    else if (kind == 1)
      v[i] = static_cast<float>(120 * unit(rng));
    else if (kind == 2)
      v[i] = static_cast<float>(unit(rng) * std::ldexp(1.0, exponent(rng)));
    else
      v[i] = static_cast<float>(3 * unit(rng));
  }
  return Tensor::from_vector(v, {n});
}

struct UnaryCase {
  std::string op;
  AttrMap attrs;
  int64_t max_ulps;
};

const std::vector<UnaryCase>& float_unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {"neg", {}, 0},
      {"abs", {}, 0},
      {"relu", {}, 0},
      {"square", {}, 0},
      {"sign", {}, 0},
      {"floor", {}, 0},
      {"ceil", {}, 0},
      {"round", {}, 0},
      {"sqrt", {}, 0},
      {"reciprocal", {}, 0},
      {"rsqrt", {}, 1},
      {"exp", {}, 4},
      {"log", {}, 4},
      {"log1p", {}, 4},
      {"expm1", {}, 4},
      {"sin", {}, 4},
      {"cos", {}, 4},
      {"tanh", {}, 4},
      {"erf", {}, 4},
      {"sigmoid", {}, 4},
      {"silu", {}, 4},
      {"leaky_relu", {{"negative_slope", 0.1}}, 1},
      {"elu", {{"alpha", 1.5}}, 4},
      {"gelu", {}, 4},
      {"gelu", {{"approximate", std::string("tanh")}}, 4},
      {"softplus", {{"beta", 2.0}, {"threshold", 15.0}}, 1},
  };
  return cases;
}

// Both vector paths: AVX-512 (where the CPU has it) and AVX2 (DS_CPU_ISA=avx2).
class ElementwiseIsa : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (*GetParam())
      setenv("DS_CPU_ISA", GetParam(), 1);
    else
      unsetenv("DS_CPU_ISA");
  }
  void TearDown() override { unsetenv("DS_CPU_ISA"); }
};
INSTANTIATE_TEST_SUITE_P(Elementwise, ElementwiseIsa, ::testing::Values("", "avx2"));

TEST_P(ElementwiseIsa, Float32WithinUlpsOfFloat64Reference) {
  std::mt19937 rng(11);
  for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 33, 200003}) {
    Tensor x = float32_inputs(n, rng);
    for (const auto& c : float_unary_cases()) {
      ASSERT_EQ(impl_of(c.op, {x}, c.attrs), "vectorized") << c.op;
      Tensor fast = apply1(c.op, {x}, c.attrs);
      Tensor ref = run_reference(c.op, {x}, c.attrs)[0];
      ASSERT_EQ(fast.dtype(), DType::Float32);
      ASSERT_EQ(fast.shape(), x.shape());
      int64_t worst = 0, at = -1;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t u = ulps(fast.data<float>()[i], ref.data<float>()[i]);
        if (u > worst) worst = u, at = i;
      }
      EXPECT_LE(worst, c.max_ulps)
          << c.op << " n=" << n << " worst at x=" << x.data<float>()[at] << ": got "
          << fast.data<float>()[at] << ", want " << ref.data<float>()[at];
    }
  }
}

TEST(ElementwiseUnary, Float64MatchesReference) {
  std::mt19937 rng(12);
  Tensor x = float32_inputs(50001, rng).to(DType::Float64);
  for (const auto& c : float_unary_cases()) {
    Tensor fast = apply1(c.op, {x}, c.attrs);
    ASSERT_EQ(fast.dtype(), DType::Float64);
    shape_test::expect_values(fast, values(run_reference(c.op, {x}, c.attrs)[0]), 1e-15, c.op);
  }
}

TEST(ElementwiseUnary, IntegersAndBool) {
  std::mt19937 rng(13);
  for (DType t : {DType::Int32, DType::Int64}) {
    Tensor x = shape_test::random_tensor({1001}, t, rng, -1000, 1000);
    for (const char* op : {"neg", "abs", "relu", "square", "sign", "floor", "ceil", "round"}) {
      Tensor fast = apply1(op, {x});
      EXPECT_EQ(fast.dtype(), t) << op;
      shape_test::expect_values(fast, values(run_reference(op, {x})[0]), 0.0, op);
    }
    // Float-result ops compute in float32.
    Tensor small = shape_test::random_tensor({1001}, t, rng, -20, 20);
    for (const char* op : {"exp", "sigmoid", "tanh", "sqrt", "reciprocal"}) {
      ASSERT_EQ(impl_of(op, {small}, {}), "vectorized") << op;
      Tensor fast = apply1(op, {small});
      EXPECT_EQ(fast.dtype(), DType::Float32) << op;
      shape_test::expect_values(fast, values(run_reference(op, {small})[0]), 1e-6, op);
    }
  }
  for (DType t : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::Bool}) {
    Tensor x = shape_test::random_tensor({999}, t, rng, -2, 2);
    if (is_floating(t)) x = where(gt(x, scalar_like(1.5, x)), full({999}, NAN, t), x);
    for (const char* op : {"logical_not", "isnan"}) {
      ASSERT_EQ(impl_of(op, {x}, {}), "vectorized") << op;
      Tensor fast = apply1(op, {x});
      EXPECT_EQ(fast.dtype(), DType::Bool);
      shape_test::expect_values(fast, values(run_reference(op, {x})[0]), 0.0, op);
    }
  }
}

TEST_P(ElementwiseIsa, SameBitsOnEveryThreadCount) {
  std::mt19937 rng(14);
  Tensor x = float32_inputs(300007, rng);
  const int saved = num_threads();
  for (const char* op : {"exp", "gelu", "tanh"}) {
    set_num_threads(1);
    Tensor one = apply1(op, {x});
    set_num_threads(3);
    Tensor three = apply1(op, {x});
    EXPECT_EQ(std::memcmp(one.raw_data(), three.raw_data(), one.nbytes()), 0) << op;
  }
  set_num_threads(saved);
}

// float16/bfloat16 compute in float32 and round once: the float64 reference
// rounds once too, so they differ by at most one unit of the 16-bit format.
TEST(ElementwiseHalf, UnaryBinaryWhereWithinOneUnit) {
  std::mt19937 rng(18);
  for (DType t : {DType::Float16, DType::BFloat16}) {
    const double unit = t == DType::Float16 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -7);
    Tensor x = shape_test::random_tensor({1003}, t, rng, -4, 4);
    for (const auto& c : float_unary_cases()) {
      ASSERT_EQ(impl_of(c.op, {x}, c.attrs), "vectorized") << c.op;
      Tensor fast = apply1(c.op, {x}, c.attrs);
      ASSERT_EQ(fast.dtype(), t);
      shape_test::expect_values(fast, values(run_reference(c.op, {x}, c.attrs)[0]), unit,
                                c.op + " " + dtype_name(t));
    }
    Tensor y = shape_test::random_tensor({7, 1003}, t, rng, 0.5, 4);
    for (const char* op : {"add", "sub", "mul", "div", "pow", "maximum", "mod", "lt", "eq"}) {
      ASSERT_EQ(impl_of(op, {x, y}, {}), "vectorized") << op;
      Tensor fast = apply1(op, {x, y});
      Tensor ref = run_reference(op, {x, y})[0];
      ASSERT_EQ(fast.dtype(), ref.dtype());
      shape_test::expect_values(fast, values(ref), unit, std::string(op) + " " + dtype_name(t));
    }
    Tensor c = shape_test::random_tensor({7, 1}, DType::Bool, rng);
    Tensor w = where(c, x, y);
    EXPECT_EQ(w.dtype(), t);
    shape_test::expect_values(w, values(run_reference("where", {c, x, y})[0]), 0.0, "where");
  }
}

// ---- binary

struct Operands {
  Shape a, b;
};
const Operands kShapes[] = {
    {{257, 129}, {257, 129}},   // same shape
    {{}, {31, 7}},              // scalar operand (left)
    {{9, 33}, {}},              // scalar operand (right)
    {{65, 130}, {130}},         // row broadcast
    {{65, 130}, {65, 1}},       // column broadcast
    {{5, 1, 7}, {3, 1}},        // both broadcast
    {{4, 3, 5, 2}, {3, 1, 2}},  // mixed, general strides
    {{0, 3}, {3}},              // empty
    {{1}, {1}},
    {{100003}, {100003}},  // spans several threads' chunks
};

void set_element(Tensor& t, int64_t i, double v) {
  visit_dtype(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    static_cast<T*>(t.raw_data())[i] = static_cast<T>(static_cast<float>(v));
  });
}

// Left operands get a NaN and -inf (floats); right operands a zero (division, mod).
Tensor operand(const Shape& s, DType t, std::mt19937& rng, const std::string& op, bool right) {
  if (op == "pow")
    return shape_test::random_tensor(s, t, rng, right ? -3 : (is_floating(t) ? 0.1 : -6),
                                     right ? 5 : 6);
  Tensor x = shape_test::random_tensor(s, t, rng, -50, 50);
  if (x.numel() > 2) {
    if (right) set_element(x, 2, 0.0);
    if (!right && is_floating(t)) {
      set_element(x, 0, NAN);
      set_element(x, 1, -INFINITY);
    }
  }
  return x;
}

TEST(ElementwiseBinary, FastMatchesReferenceOnBroadcastShapes) {
  const char* ops[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",     "mod",
                       "eq",  "ne",  "lt",  "le",  "gt",  "ge",      "logical_and", "logical_or"};
  std::mt19937 rng(15);
  for (DType t : {DType::Float32, DType::Float64, DType::Int32, DType::Int64}) {
    for (const char* op : ops) {
      for (const Operands& s : kShapes) {
        Tensor a = operand(s.a, t, rng, op, false);
        Tensor b = operand(s.b, t, rng, op, true);
        ASSERT_EQ(impl_of(op, {a, b}, {}), "vectorized") << op;
        Tensor fast = apply1(op, {a, b});
        Tensor ref = run_reference(op, {a, b})[0];
        ASSERT_EQ(fast.dtype(), ref.dtype()) << op;
        ASSERT_EQ(fast.shape(), ref.shape()) << op;
        const double tol = std::string(op) == "pow" && t == DType::Float32 ? 1.2e-7 : 0.0;
        shape_test::expect_values(
            fast, values(ref), tol,
            std::string(op) + " " + dtype_name(t) + " " + shape_str(s.a) + " " + shape_str(s.b));
      }
    }
  }
}

TEST(ElementwiseBinary, MixedDtypesAndBool) {
  std::mt19937 rng(16);
  Tensor i = shape_test::random_tensor({6, 5}, DType::Int32, rng, -9, 9);
  Tensor f = shape_test::random_tensor({5}, DType::Float32, rng, -9, 9);
  Tensor l = shape_test::random_tensor({6, 1}, DType::Int64, rng, -9, 9);
  Tensor b = shape_test::random_tensor({6, 5}, DType::Bool, rng);
  for (const char* op : {"add", "mul", "div", "maximum", "lt", "eq", "logical_and"}) {
    for (auto [x, y] : {std::pair{i, f}, std::pair{l, i}, std::pair{b, f}, std::pair{i, b}}) {
      ASSERT_EQ(impl_of(op, {x, y}, {}), "vectorized") << op;
      Tensor fast = apply1(op, {x, y});
      Tensor ref = run_reference(op, {x, y})[0];
      EXPECT_EQ(fast.dtype(), ref.dtype()) << op;
      shape_test::expect_values(fast, values(ref), 1e-7, op);
    }
  }
  Tensor bb = shape_test::random_tensor({6, 5}, DType::Bool, rng);
  shape_test::expect_values(logical_or(b, bb), values(run_reference("logical_or", {b, bb})[0]));
  EXPECT_EQ(impl_of("maximum", {b, bb}, {}), "reference");  // bool arithmetic
}

TEST_P(ElementwiseIsa, BinaryKnownValues) {
  Tensor a = Tensor::from_vector(std::vector<float>{-7, 7, -7, 7, 5.5f, kNaN, 0.0f}, {7});
  Tensor b = Tensor::from_vector(std::vector<float>{3, -3, -3, 3, 2, 1, -0.0f}, {7});
  shape_test::expect_values(mod(a, b), {2, -2, -1, 1, 1.5, NAN, NAN});
  shape_test::expect_values(maximum(a, b), {3, 7, -3, 7, 5.5, NAN, 0});
  // pow's special cases (vector lanes and the padded remainder) match the reference.
  const std::vector<float> base = {-8, 0, -2, kNaN, 1, kInf, -kInf, 0, -0.0f, 2, 1e-30f, 3};
  const std::vector<float> expo = {1.0f / 3, -1, 3, 0, kNaN, -1, 3, 0, -3, 200, 2, -200};
  for (size_t n : {base.size(), size_t{8}, size_t{3}}) {
    Tensor pb = Tensor::from_vector(std::vector<float>(base.begin(), base.begin() + n),
                                    {static_cast<int64_t>(n)});
    Tensor pe = Tensor::from_vector(std::vector<float>(expo.begin(), expo.begin() + n),
                                    {static_cast<int64_t>(n)});
    shape_test::expect_values(pow(pb, pe), values(run_reference("pow", {pb, pe})[0]), 0.0, "pow");
  }
  Tensor ia = Tensor::from_vector(std::vector<int32_t>{-7, 7, 5, INT32_MIN, 2}, {5});
  Tensor ib = Tensor::from_vector(std::vector<int32_t>{3, -3, 0, -1, -2}, {5});
  shape_test::expect_values(mod(ia, ib), {2, -2, 0, 0, 0});
  shape_test::expect_values(pow(ia, ib), {-343, 0, 1, 0, 0});
  shape_test::expect_values(
      add(Tensor::full({2}, INT32_MAX, DType::Int32), Tensor::full({2}, 1, DType::Int32)),
      {INT32_MIN, INT32_MIN});
}

TEST(ElementwiseBinary, WhereAndCast) {
  std::mt19937 rng(17);
  const DType types[] = {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::Bool};
  for (DType t : types) {
    for (const Operands& s : kShapes) {
      // -1, 0 or 1 as int32: nonzero is true.
      Tensor c = shape_test::random_tensor(s.a, DType::Int32, rng, -1, 2);
      Tensor a = shape_test::random_tensor(s.b, t, rng, -30, 30);
      Tensor b = shape_test::random_tensor({1}, t, rng, -30, 30);
      ASSERT_EQ(impl_of("where", {c, a, b}, {}), "vectorized");
      Tensor fast = where(c, a, b);
      shape_test::expect_values(fast, values(run_reference("where", {c, a, b})[0]), 0.0,
                                std::string("where ") + dtype_name(t));
    }
    for (DType from : types) {
      Tensor x = shape_test::random_tensor({1003}, from, rng, -100, 100);
      ASSERT_EQ(impl_of("cast", {x}, {{"dtype", t}}), "vectorized");
      Tensor fast = cast(x, t);
      EXPECT_EQ(fast.dtype(), t);
      shape_test::expect_values(fast, values(run_reference("cast", {x}, {{"dtype", t}})[0]), 0.0,
                                std::string("cast ") + dtype_name(from) + " -> " + dtype_name(t));
    }
  }
}

TEST(ElementwiseBinary, BadInputsNameOpAndShapes) {
  shape_test::expect_error<ShapeError>(
      [] {
        add(Tensor::zeros({2, 3}), Tensor::zeros({4}));
      },
      {"add", "[2, 3]", "[4]"});
  shape_test::expect_error<TypeError>([] { exp(Tensor::zeros({2}, DType::Bool)); },
                                      {"exp", "bool"});
}

}  // namespace
}  // namespace ds

namespace ds {
namespace {

// ---- gradients of the elementwise ops' VJP rules vs central differences

// float64 values in [lo, hi] at least 0.1 away from 0 (kinks of relu/abs/sign).
Tensor away_from_zero(const Shape& s, double lo, double hi, std::mt19937& rng) {
  Tensor t = shape_test::random_tensor(s, DType::Float64, rng, lo, hi);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (std::abs(p[i]) < 0.1) p[i] = p[i] < 0 ? -0.1 - p[i] : 0.1 + p[i];
  return t;
}

TEST(ElementwiseGrad, UnaryVjpsMatchFiniteDifferences) {
  std::mt19937 rng(19);
  const Tensor any = away_from_zero({3, 5}, -2, 2, rng);
  const Tensor positive = shape_test::random_tensor({3, 5}, DType::Float64, rng, 0.3, 2);
  for (const auto& c : float_unary_cases()) {
    const bool needs_positive =
        c.op == "log" || c.op == "log1p" || c.op == "sqrt" || c.op == "rsqrt";
    shape_test::gradcheck(c.op, {needs_positive ? positive : any}, c.attrs, {0}, 1e-6, 1e-6);
  }
}

TEST(ElementwiseGrad, BinaryAndWhereVjpsMatchFiniteDifferences) {
  std::mt19937 rng(20);
  for (const char* op : {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "mod"}) {
    // Broadcasting both ways; positive operands keep pow and div smooth.
    for (auto [sa, sb] :
         {std::pair{Shape{3, 4}, Shape{4}}, std::pair{Shape{3, 1}, Shape{2, 1, 4}}}) {
      Tensor a = shape_test::random_tensor(sa, DType::Float64, rng, 0.5, 2);
      Tensor b = shape_test::random_tensor(sb, DType::Float64, rng, 0.5, 2);
      shape_test::gradcheck(op, {a, b}, {}, {0, 1}, 1e-6, 1e-6);
    }
  }
  Tensor cond = shape_test::random_tensor({3, 4}, DType::Bool, rng);
  Tensor a = shape_test::random_tensor({4}, DType::Float64, rng);
  Tensor b = shape_test::random_tensor({3, 1}, DType::Float64, rng);
  shape_test::gradcheck("where", {cond, a, b}, {}, {1, 2});
}

}  // namespace
}  // namespace ds
