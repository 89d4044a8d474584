// Every CUDA kernel against the CPU on random inputs: each case is compiled for
// the CPU and for cuda:0 (opt_level 0: one kernel per op), explain() must show
// the op on the GPU, and both runs must agree within the dtype's tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "cuda_dnn_check.h"  // DS_REQUIRE_GPU, kFloats, tol, expect_close

using ds::DType;
using ds::Shape;
using ds::Tensor;

namespace {

using cuda_dnn_test::expect_close;
using cuda_dnn_test::kFloats;
using cuda_dnn_test::tol;

using Build = std::function<Tensor(const std::vector<Tensor>&)>;
void check_graph(const std::string& what, const ds::Graph& g, const std::vector<Tensor>& feeds,
                 double t);

// Runs `build` over placeholders typed like `feeds` on the CPU and on the GPU.
void check(const std::string& what, const std::vector<Tensor>& feeds, const Build& build,
           double t) {
  ds::Graph g;
  std::vector<Tensor> ph;
  for (size_t i = 0; i < feeds.size(); ++i)
    ph.push_back(g.placeholder("x" + std::to_string(i), feeds[i].shape(), feeds[i].dtype()));
  g.output(build(ph), "y");
  check_graph(what, g, feeds, t);
}

// Random ops take no inputs: their nodes are added to the graph directly.
void check_random(const std::string& what, const std::string& op, const ds::AttrMap& attrs,
                  double t) {
  ds::Graph g;
  g.output(g.add(op, {}, attrs)[0], "y");
  check_graph(what, g, {}, t);
}

void check_graph(const std::string& what, const ds::Graph& g, const std::vector<Tensor>& feeds,
                 double t) {
  const ds::Executable cpu = ds::compile(g, "cpu", {.opt_level = 0});
  const ds::Executable gpu = ds::compile(g, "cuda", {.opt_level = 0});
  ASSERT_EQ(gpu.target(), "cuda:0");
  const std::string plan = gpu.explain();
  EXPECT_NE(plan.find("[cuda]"), std::string::npos) << what << "\n" << plan;
  EXPECT_EQ(plan.find("[cpu fallback"), std::string::npos) << what << "\n" << plan;
  expect_close(gpu.run(feeds)[0], cpu.run(feeds)[0], t, what);
}

Tensor uniform(const Shape& s, uint64_t seed, double lo, double hi, DType t) {
  return ds::random_uniform(s, seed, lo, hi, t);
}

const std::vector<Shape> kShapes = {{0}, {1}, {7, 13}, {3, 5, 129}, {(1 << 20) + 3}};

}  // namespace

TEST(CudaKernels, UnaryOpsMatchTheCpu) {
  DS_REQUIRE_GPU();
  using F = Tensor (*)(const Tensor&);
  const std::vector<std::pair<std::string, F>> signed_ops = {
      {"neg", ds::neg},         {"abs", ds::abs},     {"exp", ds::exp},     {"expm1", ds::expm1},
      {"sin", ds::sin},         {"cos", ds::cos},     {"tanh", ds::tanh},   {"erf", ds::erf},
      {"sigmoid", ds::sigmoid}, {"silu", ds::silu},   {"relu", ds::relu},   {"floor", ds::floor},
      {"ceil", ds::ceil},       {"round", ds::round}, {"square", ds::square}};
  const std::vector<std::pair<std::string, F>> positive_ops = {
      {"log", ds::log}, {"log1p", ds::log1p}, {"sqrt", ds::sqrt}, {"rsqrt", ds::rsqrt},
      {"reciprocal", ds::reciprocal}};
  uint64_t seed = 100;
  for (DType t : kFloats)
    for (const Shape& s : kShapes) {
      const std::string at = std::string(" ") + ds::dtype_name(t) + " " + ds::shape_str(s);
      const Tensor x = uniform(s, ++seed, -3, 3, t), p = uniform(s, ++seed, 0.1, 4, t);
      for (const auto& [name, f] : signed_ops)
        check(name + at, {x}, [f = f](const auto& in) { return f(in[0]); }, tol(t));
      for (const auto& [name, f] : positive_ops)
        check(name + at, {p}, [f = f](const auto& in) { return f(in[0]); }, tol(t));
      for (const char* ap : {"none", "tanh"})
        check(std::string("gelu ") + ap + at, {x},
              [ap](const auto& in) { return ds::gelu(in[0], ap); }, tol(t));
    }
}

TEST(CudaKernels, BinaryOpsMatchTheCpuWithBroadcasting) {
  DS_REQUIRE_GPU();
  using F = Tensor (*)(const Tensor&, const Tensor&);
  const std::vector<std::pair<std::string, F>> ops = {
      {"add", ds::add},         {"sub", ds::sub}, {"mul", ds::mul}, {"div", ds::div},
      {"maximum", ds::maximum}, {"minimum", ds::minimum},
      {"eq", ds::eq}, {"ne", ds::ne}, {"lt", ds::lt}, {"le", ds::le}, {"gt", ds::gt}, {"ge", ds::ge}};
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{0}, {0}}, {{1}, {1}}, {{7, 13}, {7, 13}}, {{5, 1, 7}, {3, 1}}, {{4, 1}, {1, 9}},
      {{(1 << 20) + 3}, {1}}, {{3, 129}, {129}}, {{6, 256}, {256}}, {{2, 3, 64}, {1, 64}},
      {{1000, 1024}, {1024}}};
  uint64_t seed = 500;
  for (DType t : kFloats)
    for (const auto& [sa, sb] : shapes) {
      const std::string at = std::string(" ") + ds::dtype_name(t) + " " + ds::shape_str(sa) +
                             " with " + ds::shape_str(sb);
      // Few distinct values so that comparisons see ties.
      const Tensor a = ds::round(uniform(sa, ++seed, -3, 3, t));
      const Tensor b = ds::round(uniform(sb, ++seed, -3, 3, t));
      for (const auto& [name, f] : ops)
        check(name + at, {a, b}, [f = f](const auto& in) { return f(in[0], in[1]); }, tol(t));
      const Tensor base = uniform(sa, ++seed, 0.5, 2, t);
      check("pow" + at, {base, b}, [](const auto& in) { return ds::pow(in[0], in[1]); }, tol(t));
    }
  // NaN propagates through maximum/minimum as on the CPU.
  Tensor a = Tensor::from_vector<float>({NAN, 1, 2, NAN}, {4});
  Tensor b = Tensor::from_vector<float>({0, NAN, 3, NAN}, {4});
  check("maximum NaN", {a, b}, [](const auto& in) { return ds::maximum(in[0], in[1]); }, 0);
  check("minimum NaN", {a, b}, [](const auto& in) { return ds::minimum(in[0], in[1]); }, 0);
}

TEST(CudaKernels, ReductionsSoftmaxAndNormsMatchTheCpu) {
  DS_REQUIRE_GPU();
  uint64_t seed = 900;
  for (DType t : kFloats)
    for (const Shape& s : {Shape{1, 1}, Shape{7, 13}, Shape{33, 64}, Shape{3, 5, 1000},
                           Shape{2, 4099}, Shape{16, 8192}, Shape{2, 40000}}) {
      const std::string at = std::string(" ") + ds::dtype_name(t) + " " + ds::shape_str(s);
      const Tensor x = uniform(s, ++seed, -4, 4, t);
      // Sums of n values round n times in the CPU's and the GPU's own order.
      const double rt = tol(t) * std::sqrt(static_cast<double>(s.back())) * 4;
      check("sum last" + at, {x}, [](const auto& in) { return ds::sum(in[0], {-1}); }, rt);
      check("sum all" + at, {x}, [](const auto& in) { return ds::sum(in[0]); }, rt * 8);
      check("mean last" + at, {x}, [](const auto& in) { return ds::mean(in[0], {-1}, true); }, rt);
      check("max last" + at, {x}, [](const auto& in) { return ds::max(in[0], {-1}); }, 0);
      check("logsumexp last" + at, {x}, [](const auto& in) { return ds::logsumexp(in[0], {-1}); }, rt);
      check("softmax" + at, {x}, [](const auto& in) { return ds::softmax(in[0], -1); }, rt);
      check("log_softmax" + at, {x}, [](const auto& in) { return ds::log_softmax(in[0], -1); }, rt);
      const Shape row{s.back()};
      const Tensor w = uniform(row, ++seed, 0.5, 1.5, t), b = uniform(row, ++seed, -1, 1, t);
      check("layer_norm" + at, {x}, [&](const auto& in) { return ds::layer_norm(in[0], row); }, rt);
      check("layer_norm affine" + at, {x, w, b},
            [&](const auto& in) { return ds::layer_norm(in[0], row, in[1], in[2]); }, rt);
      check("rms_norm" + at, {x, w},
            [&](const auto& in) { return ds::rms_norm(in[0], row, in[1]); }, rt);
    }
}

TEST(CudaKernels, MatmulAndLinearMatchTheCpu) {
  DS_REQUIRE_GPU();
  struct Case { Shape a, b; };
  const std::vector<Case> cases = {{{1, 1}, {1, 1}},        {{37, 53}, {53, 29}},
                                   {{4, 17, 33}, {33, 9}},  {{4, 17, 33}, {4, 33, 9}},
                                   {{17, 33}, {3, 33, 9}},  {{64}, {64, 16}},
                                   {{5, 0}, {0, 6}},        {{256, 512}, {512, 384}}};
  uint64_t seed = 1300;
  for (DType t : kFloats)
    for (const auto& c : cases) {
      const std::string at = std::string(" ") + ds::dtype_name(t) + " " + ds::shape_str(c.a) +
                             " @ " + ds::shape_str(c.b);
      const Tensor a = uniform(c.a, ++seed, -1, 1, t), b = uniform(c.b, ++seed, -1, 1, t);
      const double k = static_cast<double>(c.a.back());
      check("matmul" + at, {a, b}, [](const auto& in) { return ds::matmul(in[0], in[1]); },
            tol(t) * std::sqrt(k + 1) * 8);
    }
  for (DType t : kFloats) {
    const Tensor x = uniform({3, 7, 40}, ++seed, -1, 1, t), w = uniform({24, 40}, ++seed, -1, 1, t);
    const Tensor bias = uniform({24}, ++seed, -1, 1, t);
    const std::string at = std::string(" ") + ds::dtype_name(t);
    check("linear" + at, {x, w}, [](const auto& in) { return ds::linear(in[0], in[1]); },
          tol(t) * 64);
    if (t != DType::Float64)  // no fp64 bias epilogue: that case runs on the CPU (below)
      check("linear bias" + at, {x, w, bias},
            [](const auto& in) { return ds::linear(in[0], in[1], in[2]); }, tol(t) * 64);
  }
  ds::Graph g;
  Tensor x = g.placeholder("x", {5, 8}, DType::Float64), w = g.placeholder("w", {3, 8}, DType::Float64);
  g.output(ds::linear(x, w, g.placeholder("b", {3}, DType::Float64)), "y");
  const ds::Executable exe = ds::compile(g, "cuda", {.opt_level = 0});
  EXPECT_NE(exe.explain().find("[cpu fallback"), std::string::npos) << exe.explain();
  const std::vector<Tensor> feeds = {uniform({5, 8}, 1, -1, 1, DType::Float64),
                                     uniform({3, 8}, 2, -1, 1, DType::Float64),
                                     uniform({3}, 3, -1, 1, DType::Float64)};
  expect_close(exe.run(feeds)[0], ds::compile(g, "cpu", {.opt_level = 0}).run(feeds)[0], 1e-12,
               "linear fp64 bias (CPU fallback)");
}

TEST(CudaKernels, FusedLinearEpiloguesMatchTheCpu) {
  DS_REQUIRE_GPU();
  const Tensor x = uniform({31, 64}, 1, -1, 1, DType::Float32);
  const Tensor w = uniform({48, 64}, 2, -1, 1, DType::Float32);
  const Tensor b = uniform({48}, 3, -1, 1, DType::Float32);
  const ds::Device gpu = ds::Device::cuda();
  using A = ds::cuda::Activation;
  const Tensor lin = ds::linear(x, w, b), lin_nb = ds::linear(x, w);
  const std::vector<std::tuple<std::string, A, bool, Tensor>> cases = {
      {"none", A::None, false, lin_nb},      {"bias", A::None, true, lin},
      {"relu", A::Relu, false, ds::relu(lin_nb)}, {"relu bias", A::Relu, true, ds::relu(lin)},
      {"gelu", A::Gelu, false, ds::gelu(lin_nb, "tanh")},
      {"gelu bias", A::Gelu, true, ds::gelu(lin, "tanh")}};
  for (const auto& [name, act, with_bias, want] : cases) {
    const Tensor got = ds::cuda::fused_linear(x.to(gpu), w.to(gpu), with_bias ? b.to(gpu) : Tensor(), act);
    expect_close(got.to(ds::Device::cpu()), want, 1e-4, "fused_linear " + name);
  }
  EXPECT_THROW(ds::cuda::fused_linear(x.to(gpu), w, b.to(gpu), A::Relu), ds::ValueError);
}

TEST(CudaKernels, Tf32MatmulIsCloseToFloat32) {
  DS_REQUIRE_GPU();
  const Tensor a = uniform({128, 256}, 4, -1, 1, DType::Float32);
  const Tensor b = uniform({256, 64}, 5, -1, 1, DType::Float32);
  ds::cuda::set_allow_tf32(true);
  check("matmul tf32", {a, b}, [](const auto& in) { return ds::matmul(in[0], in[1]); }, 1e-2);
  ds::cuda::set_allow_tf32(false);
  EXPECT_FALSE(ds::cuda::allow_tf32());
}

TEST(CudaKernels, RandomOpsGiveTheCpuNumbersForTheSameSeed) {
  DS_REQUIRE_GPU();
  for (DType t : kFloats)
    for (const Shape& s : {Shape{0}, Shape{1}, Shape{7, 13}, Shape{100003}}) {
      const std::string at = std::string(" ") + ds::dtype_name(t) + " " + ds::shape_str(s);
      const std::vector<int64_t> shape(s.begin(), s.end());
      check_random("random_uniform" + at, "random_uniform",
                   {{"shape", shape}, {"seed", int64_t{42}}, {"low", -2.0}, {"high", 3.0},
                    {"dtype", t}}, 0);
      check_random("bernoulli" + at, "bernoulli",
                   {{"shape", shape}, {"seed", int64_t{7}}, {"p", 0.3}, {"dtype", t}}, 0);
      // Box-Muller in float64: the device's log/cos may differ from glibc's in the last bit.
      check_random("random_normal" + at, "random_normal",
                   {{"shape", shape}, {"seed", int64_t{9}}, {"mean", 1.0}, {"stddev", 2.0},
                    {"dtype", t}}, t == DType::Float64 ? 1e-14 : tol(t) / 2);
    }
}
