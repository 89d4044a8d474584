// Elementwise ops: unary math, binary arithmetic/comparison with NumPy
// broadcasting and promotion, where, cast. Each OpDef carries its reference
// kernel (float64) and VJP rule.
#include <cmath>
#include <functional>

#include "ir/ops/op_helpers.h"

namespace ds {
namespace ops {
namespace {

enum class ResultType { Same, Float, Bool };

DType result_dtype(ResultType r, DType in) {
  switch (r) {
    case ResultType::Same: return in;
    case ResultType::Float: return float_result(in);
    case ResultType::Bool: return DType::Bool;
  }
  return in;
}

// Written with erfc and the logistic form: 1 + erf(x) and 1 + tanh(u) cancel to
// 0 for x << 0 (below about -8), where gelu is still a normal float32.
double gelu_erf(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
double gelu_tanh(double x) {
  const double k = std::sqrt(2.0 / M_PI);  // 0.5 (1 + tanh(u)) = 1 / (1 + e^{-2u})
  return x / (1.0 + std::exp(-2.0 * k * (x + 0.044715 * x * x * x)));
}
double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct UnaryDef {
  const char* name;
  ResultType result;
  // f(x, ctx): attributes come from ctx (leaky_relu's slope, ...).
  std::function<double(double, const OpContext&)> f;
  VjpFn vjp;
  bool fusible = true;
};

Tensor G(const VjpArgs& a) { return a.grads[0]; }
Tensor X(const VjpArgs& a) { return a.inputs[0]; }
Tensor Y(const VjpArgs& a) { return a.outputs[0]; }
Tensor zeros_like(const Tensor& x) { return mul(x, scalar_like(0.0, x)); }

std::vector<UnaryDef> unary_defs() {
  using C = const OpContext&;
  return {
      {"neg", ResultType::Same, [](double x, C) { return -x; },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {neg(G(a))}; }},
      {"abs", ResultType::Same, [](double x, C) { return std::abs(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {mul(G(a), sign(X(a)))}; }},
      {"exp", ResultType::Float, [](double x, C) { return std::exp(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {mul(G(a), Y(a))}; }},
      {"log", ResultType::Float, [](double x, C) { return std::log(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {div(G(a), X(a))}; }},
      {"log1p", ResultType::Float, [](double x, C) { return std::log1p(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {div(G(a), X(a) + 1.0)}; }},
      {"expm1", ResultType::Float, [](double x, C) { return std::expm1(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {mul(G(a), Y(a) + 1.0)}; }},
      {"sqrt", ResultType::Float, [](double x, C) { return std::sqrt(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {div(G(a), Y(a) * 2.0)}; }},
      {"rsqrt", ResultType::Float, [](double x, C) { return 1.0 / std::sqrt(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {mul(G(a), div(Y(a), X(a)) * -0.5)};  // d x^(-1/2) = -x^(-3/2) / 2
       }},
      {"sin", ResultType::Float, [](double x, C) { return std::sin(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {mul(G(a), cos(X(a)))}; }},
      {"cos", ResultType::Float, [](double x, C) { return std::cos(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {neg(mul(G(a), sin(X(a))))}; }},
      {"tanh", ResultType::Float, [](double x, C) { return std::tanh(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {mul(G(a), 1.0 - square(Y(a)))};
       }},
      {"sigmoid", ResultType::Float, [](double x, C) { return sigmoid_d(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {mul(G(a), mul(Y(a), 1.0 - Y(a)))};
       }},
      {"relu", ResultType::Same, [](double x, C) { return x > 0 || std::isnan(x) ? x : 0.0; },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {where(gt(X(a), scalar_like(0.0, X(a))), G(a), scalar_like(0.0, G(a)))};
       }},
      {"leaky_relu", ResultType::Float,
       [](double x, C c) { return x > 0 ? x : x * c.f("negative_slope"); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {where(gt(X(a), scalar_like(0.0, X(a))), G(a),
                       G(a) * a.ctx.f("negative_slope"))};
       }},
      {"elu", ResultType::Float,
       [](double x, C c) { return x > 0 ? x : c.f("alpha") * std::expm1(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {where(gt(X(a), scalar_like(0.0, X(a))), G(a), mul(G(a), Y(a) + a.ctx.f("alpha")))};
       }},
      {"gelu", ResultType::Float,
       [](double x, C c) { return c.s("approximate") == "tanh" ? gelu_tanh(x) : gelu_erf(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         const Tensor& x = X(a);
         if (a.ctx.s("approximate") == "tanh") {
           const double k = std::sqrt(2.0 / M_PI);
           Tensor inner = (x + mul(square(x), x) * 0.044715) * k;
           Tensor t = tanh(inner);
           Tensor dinner = (1.0 + square(x) * (3 * 0.044715)) * k;
           Tensor d = 0.5 * (1.0 + t) + mul(0.5 * x, mul(1.0 - square(t), dinner));
           return {mul(G(a), d)};
         }
         Tensor cdf = 0.5 * (1.0 + erf(x * (1.0 / std::sqrt(2.0))));
         Tensor pdf = exp(square(x) * -0.5) * (1.0 / std::sqrt(2.0 * M_PI));
         return {mul(G(a), cdf + mul(x, pdf))};
       }},
      {"silu", ResultType::Float, [](double x, C) { return x * sigmoid_d(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         Tensor s = sigmoid(X(a));
         return {mul(G(a), mul(s, 1.0 + mul(X(a), 1.0 - s)))};
       }},
      {"softplus", ResultType::Float,
       [](double x, C c) {
         const double b = c.f("beta");
         return b * x > c.f("threshold") ? x : std::log1p(std::exp(b * x)) / b;
       },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         const double b = a.ctx.f("beta");
         Tensor s = sigmoid(X(a) * b);
         return {where(gt(X(a) * b, scalar_like(a.ctx.f("threshold"), X(a))), G(a), mul(G(a), s))};
       }},
      {"erf", ResultType::Float, [](double x, C) { return std::erf(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {mul(G(a), exp(neg(square(X(a)))) * (2.0 / std::sqrt(M_PI)))};
       }},
      {"floor", ResultType::Same, [](double x, C) { return std::floor(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {zeros_like(G(a))}; }},
      {"ceil", ResultType::Same, [](double x, C) { return std::ceil(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {zeros_like(G(a))}; }},
      {"round", ResultType::Same, [](double x, C) { return std::nearbyint(x); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {zeros_like(G(a))}; }},
      {"sign", ResultType::Same,
       [](double x, C) { return std::isnan(x) ? x : static_cast<double>((x > 0) - (x < 0)); },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {zeros_like(G(a))}; }},
      {"reciprocal", ResultType::Float, [](double x, C) { return 1.0 / x; },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {neg(mul(G(a), square(Y(a))))}; }},
      {"square", ResultType::Same, [](double x, C) { return x * x; },
       [](const VjpArgs& a) -> std::vector<Tensor> { return {mul(G(a), X(a) * 2.0)}; }},
      {"logical_not", ResultType::Bool, [](double x, C) { return x == 0 ? 1.0 : 0.0; }, nullptr},
      {"isnan", ResultType::Bool, [](double x, C) { return std::isnan(x) ? 1.0 : 0.0; }, nullptr},
  };
}

std::vector<AttrSpec> unary_attrs(const std::string& name) {
  if (name == "leaky_relu") return {{"negative_slope", AttrKind::Float, 0.01}};
  if (name == "elu") return {{"alpha", AttrKind::Float, 1.0}};
  if (name == "gelu") return {{"approximate", AttrKind::String, std::string("none")}};
  if (name == "softplus")
    return {{"beta", AttrKind::Float, 1.0}, {"threshold", AttrKind::Float, 20.0}};
  return {};
}

void register_unary(const UnaryDef& d) {
  const ResultType result = d.result;
  const std::string name = d.name;
  auto f = d.f;
  register_op({
      .name = name,
      .traits = kElementwise | kFusible,
      .num_inputs = 1,
      .attrs = unary_attrs(name),
      .infer =
          [result, name](const OpContext& c) {
            const DType in = c.inputs[0].dtype;
            DS_CHECK(!(in == DType::Bool && (name == "neg" || result == ResultType::Float)) ||
                         name == "logical_not",
                     TypeError, c.where(), "input has dtype bool; expected a number");
            if (name == "gelu") {
              const std::string& ap = c.s("approximate");
              DS_CHECK(ap == "none" || ap == "tanh", ValueError, c.where(),
                       "approximate must be 'none' or 'tanh', got '", ap, "'");
            }
            return one(result_dtype(result, in), c.inputs[0].shape);
          },
      .reference =
          [f](const KernelCall& k) {
            auto x = to_f64(k.inputs[0]);
            for (double& v : x) v = f(v, k.ctx);
            from_f64(x, k.outputs[0]);
          },
      .vjp = d.vjp,
  });
}

// ---- binary
enum class BinaryKind { Arith, Div, Compare, Logical };

struct BinaryDef {
  const char* name;
  BinaryKind kind;
  double (*f)(double, double);
  VjpFn vjp;
  const char* onnx;
};

double py_mod(double a, double b) {
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

std::vector<BinaryDef> binary_defs() {
  return {
      {"add", BinaryKind::Arith, [](double a, double b) { return a + b; },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {unbroadcast(G(a), a.inputs[0].shape()), unbroadcast(G(a), a.inputs[1].shape())};
       },
       "Add"},
      {"sub", BinaryKind::Arith, [](double a, double b) { return a - b; },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {unbroadcast(G(a), a.inputs[0].shape()),
                 unbroadcast(neg(G(a)), a.inputs[1].shape())};
       },
       "Sub"},
      {"mul", BinaryKind::Arith, [](double a, double b) { return a * b; },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {unbroadcast(mul(G(a), a.inputs[1]), a.inputs[0].shape()),
                 unbroadcast(mul(G(a), a.inputs[0]), a.inputs[1].shape())};
       },
       "Mul"},
      {"div", BinaryKind::Div, [](double a, double b) { return a / b; },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         return {unbroadcast(div(G(a), a.inputs[1]), a.inputs[0].shape()),
                 unbroadcast(neg(mul(G(a), div(a.outputs[0], a.inputs[1]))), a.inputs[1].shape())};
       },
       "Div"},
      {"pow", BinaryKind::Arith, [](double a, double b) { return std::pow(a, b); },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         const Tensor &x = a.inputs[0], &p = a.inputs[1], &y = a.outputs[0];
         Tensor gx = mul(G(a), mul(p, pow(x, p - 1.0)));
         // d/dp x^p = x^p log x; where x == 0 the limit is 0 (for p > 0).
         Tensor safe_log = log(where(gt(x, scalar_like(0.0, x)), x, scalar_like(1.0, x)));
         Tensor gp = mul(G(a), mul(y, safe_log));
         return {unbroadcast(gx, x.shape()), unbroadcast(gp, p.shape())};
       },
       "Pow"},
      {"maximum", BinaryKind::Arith, [](double a, double b) {
         return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b);
       },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         Tensor pick_a = ge(a.inputs[0], a.inputs[1]);
         Tensor z = zeros_like(G(a));
         return {unbroadcast(where(pick_a, G(a), z), a.inputs[0].shape()),
                 unbroadcast(where(pick_a, z, G(a)), a.inputs[1].shape())};
       },
       "Max"},
      {"minimum", BinaryKind::Arith, [](double a, double b) {
         return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b);
       },
       [](const VjpArgs& a) -> std::vector<Tensor> {
         Tensor pick_a = le(a.inputs[0], a.inputs[1]);
         Tensor z = zeros_like(G(a));
         return {unbroadcast(where(pick_a, G(a), z), a.inputs[0].shape()),
                 unbroadcast(where(pick_a, z, G(a)), a.inputs[1].shape())};
       },
       "Min"},
      {"mod", BinaryKind::Arith, py_mod,
       [](const VjpArgs& a) -> std::vector<Tensor> {
         Tensor q = floor(div(a.inputs[0], a.inputs[1]));
         return {unbroadcast(G(a), a.inputs[0].shape()),
                 unbroadcast(neg(mul(G(a), q)), a.inputs[1].shape())};
       },
       "Mod"},
      {"eq", BinaryKind::Compare, [](double a, double b) { return a == b ? 1.0 : 0.0; }, nullptr, "Equal"},
      {"ne", BinaryKind::Compare, [](double a, double b) { return a != b ? 1.0 : 0.0; }, nullptr, ""},
      {"lt", BinaryKind::Compare, [](double a, double b) { return a < b ? 1.0 : 0.0; }, nullptr, "Less"},
      {"le", BinaryKind::Compare, [](double a, double b) { return a <= b ? 1.0 : 0.0; }, nullptr, "LessOrEqual"},
      {"gt", BinaryKind::Compare, [](double a, double b) { return a > b ? 1.0 : 0.0; }, nullptr, "Greater"},
      {"ge", BinaryKind::Compare, [](double a, double b) { return a >= b ? 1.0 : 0.0; }, nullptr, "GreaterOrEqual"},
      {"logical_and", BinaryKind::Logical,
       [](double a, double b) { return a != 0 && b != 0 ? 1.0 : 0.0; }, nullptr, "And"},
      {"logical_or", BinaryKind::Logical,
       [](double a, double b) { return a != 0 || b != 0 ? 1.0 : 0.0; }, nullptr, "Or"},
  };
}

void register_binary(const BinaryDef& d) {
  const BinaryKind kind = d.kind;
  const std::string name = d.name;
  auto f = d.f;
  register_op({
      .name = name,
      .traits = kElementwise | kFusible |
                ((name == "add" || name == "mul" || name == "maximum" || name == "minimum" ||
                  name == "eq" || name == "ne" || kind == BinaryKind::Logical)
                     ? kCommutative
                     : 0u),
      .num_inputs = 2,
      .infer =
          [kind, name](const OpContext& c) {
            const Shape s = broadcast_shapes(c.inputs[0].shape, c.inputs[1].shape, c.where());
            const DType p = promote_types(c.inputs[0].dtype, c.inputs[1].dtype);
            switch (kind) {
              case BinaryKind::Arith:
                DS_CHECK(p != DType::Bool || name == "maximum" || name == "minimum", TypeError,
                         c.where(), "both inputs are bool; expected numbers");
                return one(p, s);
              case BinaryKind::Div: return one(float_result(p), s);
              case BinaryKind::Compare:
              case BinaryKind::Logical: return one(DType::Bool, s);
            }
            return one(p, s);
          },
      .reference =
          [f](const KernelCall& k) {
            const Shape& out = k.outputs[0].shape();
            auto a = to_f64(k.inputs[0]), b = to_f64(k.inputs[1]);
            auto ia = broadcast_index(k.inputs[0].shape(), out);
            auto ib = broadcast_index(k.inputs[1].shape(), out);
            std::vector<double> r(ia.size());
            for (size_t i = 0; i < r.size(); ++i) r[i] = f(a[ia[i]], b[ib[i]]);
            from_f64(r, k.outputs[0]);
          },
      .vjp = d.vjp,
      .onnx = d.onnx,
  });
}

const OpRegistrar reg([] {
  for (const auto& d : unary_defs()) register_unary(d);
  for (const auto& d : binary_defs()) register_binary(d);

  register_op({
      .name = "where",
      .traits = kElementwise | kFusible,
      .num_inputs = 3,
      .infer =
          [](const OpContext& c) {
            Shape s = broadcast_shapes(c.inputs[0].shape, c.inputs[1].shape, c.where());
            s = broadcast_shapes(s, c.inputs[2].shape, c.where());
            return one(promote_types(c.inputs[1].dtype, c.inputs[2].dtype), s);
          },
      .reference =
          [](const KernelCall& k) {
            const Shape& out = k.outputs[0].shape();
            auto c = to_f64(k.inputs[0]), a = to_f64(k.inputs[1]), b = to_f64(k.inputs[2]);
            auto ic = broadcast_index(k.inputs[0].shape(), out);
            auto ia = broadcast_index(k.inputs[1].shape(), out);
            auto ib = broadcast_index(k.inputs[2].shape(), out);
            std::vector<double> r(ic.size());
            for (size_t i = 0; i < r.size(); ++i) r[i] = c[ic[i]] != 0 ? a[ia[i]] : b[ib[i]];
            from_f64(r, k.outputs[0]);
          },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            Tensor z = zeros_like(G(a));
            return {Tensor(), unbroadcast(where(a.inputs[0], G(a), z), a.inputs[1].shape()),
                    unbroadcast(where(a.inputs[0], z, G(a)), a.inputs[2].shape())};
          },
      .onnx = "Where",
  });

  register_op({
      .name = "cast",
      .traits = kElementwise | kFusible,
      .num_inputs = 1,
      .attrs = {{"dtype", AttrKind::DType, std::nullopt}},
      .infer = [](const OpContext& c) { return one(c.dtype("dtype"), c.inputs[0].shape); },
      .reference = [](const KernelCall& k) { copy_into(k.inputs[0], k.outputs[0]); },
      .vjp =
          [](const VjpArgs& a) -> std::vector<Tensor> {
            if (!is_floating(a.inputs[0].dtype())) return {Tensor()};
            return {cast(G(a), a.inputs[0].dtype())};
          },
      .onnx = "Cast",
  });
});

}  // namespace
}  // namespace ops

// ---- free functions
#define DS_UNARY(fn) \
  Tensor fn(const Tensor& x) { return apply1(#fn, {x}); }
DS_UNARY(neg)
DS_UNARY(abs)
DS_UNARY(exp)
DS_UNARY(log)
DS_UNARY(log1p)
DS_UNARY(expm1)
DS_UNARY(sqrt)
DS_UNARY(rsqrt)
DS_UNARY(sin)
DS_UNARY(cos)
DS_UNARY(tanh)
DS_UNARY(sigmoid)
DS_UNARY(relu)
DS_UNARY(silu)
DS_UNARY(erf)
DS_UNARY(floor)
DS_UNARY(ceil)
DS_UNARY(round)
DS_UNARY(sign)
DS_UNARY(reciprocal)
DS_UNARY(square)
DS_UNARY(logical_not)
DS_UNARY(isnan)
#undef DS_UNARY

Tensor leaky_relu(const Tensor& x, double s) { return apply1("leaky_relu", {x}, {{"negative_slope", s}}); }
Tensor elu(const Tensor& x, double alpha) { return apply1("elu", {x}, {{"alpha", alpha}}); }
Tensor gelu(const Tensor& x, const std::string& approximate) {
  return apply1("gelu", {x}, {{"approximate", approximate}});
}
Tensor softplus(const Tensor& x, double beta, double threshold) {
  return apply1("softplus", {x}, {{"beta", beta}, {"threshold", threshold}});
}
Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  return apply1("cast", {x}, {{"dtype", dtype}});
}

#define DS_BINARY(fn) \
  Tensor fn(const Tensor& a, const Tensor& b) { return apply1(#fn, {a, b}); }
DS_BINARY(add)
DS_BINARY(sub)
DS_BINARY(mul)
DS_BINARY(div)
DS_BINARY(pow)
DS_BINARY(maximum)
DS_BINARY(minimum)
DS_BINARY(mod)
DS_BINARY(eq)
DS_BINARY(ne)
DS_BINARY(lt)
DS_BINARY(le)
DS_BINARY(gt)
DS_BINARY(ge)
DS_BINARY(logical_and)
DS_BINARY(logical_or)
#undef DS_BINARY

Tensor where(const Tensor& c, const Tensor& a, const Tensor& b) { return apply1("where", {c, a, b}); }

Tensor scalar_like(double v, const Tensor& like) {
  DType t = like.dtype();
  if (!is_floating(t) && v != std::floor(v)) t = DType::Float32;
  if (t == DType::Bool) t = v == 0 || v == 1 ? DType::Bool : (v == std::floor(v) ? DType::Int64 : DType::Float32);
  return Tensor::scalar(v, t);
}

Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }

}  // namespace ds
