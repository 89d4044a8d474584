// sum with a result type (`dtype`, torch.sum(x, dtype=...)): values against the
// float64 reference on random inputs, the CPU kernel against the reference kernel,
// the gradient (broadcast back in the input's type), bad result types, and the
// sum_low_precision pass: its IR before and after, and bf16 GPT training steps
// with and without it.
// Tolerances (relative, as tol * (1 + |want|)): a float32 result 2e-7 (the CPU
// accumulates in double and rounds once: half an ulp), a float64 result 1e-12.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "ds/autodiff.h"
#include "ds/compile.h"
#include "ds/ds.h"
#include "ds/models.h"
#include "ds/optim.h"
#include "gradcheck.h"
#include "passes/sum_low_precision.h"
#include "reduce_test_util.h"

namespace {

using ds::Axes;
using ds::DType;
using ds::Graph;
using ds::Shape;
using ds::Tensor;
using ds::reduce_test::expect_error;
using ds::reduce_test::expect_values;
using ds::reduce_test::kernel_impl;
using ds::reduce_test::random_tensor;
using ds::reduce_test::run_reference;
using ds::reduce_test::values;

ds::AttrMap sum_attrs(const Axes& axes, bool keepdims, const std::string& dtype) {
  return {{"axes", axes}, {"keepdims", keepdims}, {"dtype", dtype}};
}

double tolerance(DType out) { return out == DType::Float64 ? 1e-12 : 2e-7; }

// The float64 sums of x's values (the reference kernel on x widened to float64).
std::vector<double> float64_sums(const Tensor& x, const Axes& axes, bool keepdims) {
  return values(run_reference("sum", {x.to(DType::Float64)}, sum_attrs(axes, keepdims, ""))[0]);
}

struct Case {
  Shape shape;
  Axes axes;
};

// 0-size, single, odd extents, every merged layout (rows, columns, both), and runs
// long enough for the vector loads, the pairwise leaves and the split rows.
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {{0}, {0}},           {{3, 0, 5}, {1}},     {{3, 0, 5}, {0, 2}},   {{1}, {}},
      {{7}, {0}},           {{5, 7, 3}, {}},      {{5, 7, 3}, {1}},      {{5, 7, 3}, {0, 2}},
      {{5, 7, 3}, {-1}},    {{33, 65}, {0}},      {{33, 65}, {1}},       {{2, 3, 4, 5}, {0, 2}},
      {{2, 3, 4, 5}, {1, 3}}, {{4, 1, 9}, {1}},   {{3, 70001}, {1}},     {{301, 4099}, {0}},
      {{1031, 48}, {0}},
  };
  return c;
}

struct Pair {
  DType in, out;
};
const Pair kPairs[] = {{DType::BFloat16, DType::Float32}, {DType::Float16, DType::Float32},
                       {DType::BFloat16, DType::Float64}, {DType::Float32, DType::Float64},
                       {DType::Float32, DType::Float32},  {DType::Float64, DType::Float64}};

TEST(SumDtype, MatchesFloat64ReferenceAndReferenceKernel) {
  std::mt19937 rng(11);
  for (const Pair& p : kPairs)
    for (const Case& c : cases())
      for (bool keep : {false, true}) {
        const Tensor x = random_tensor(c.shape, p.in, rng);
        const auto attrs = sum_attrs(c.axes, keep, ds::dtype_name(p.out));
        const std::string what = std::string(ds::dtype_name(p.in)) + " -> " +
                                 ds::dtype_name(p.out) + " " + ds::shape_str(c.shape) +
                                 " keepdims " + (keep ? "1" : "0");
        EXPECT_EQ(kernel_impl("sum", attrs, {x}), "vectorized") << what;
        const Tensor got = ds::apply1("sum", {x}, attrs);
        const Tensor ref = run_reference("sum", {x}, attrs)[0];
        ASSERT_EQ(got.dtype(), p.out) << what;
        ASSERT_EQ(ref.dtype(), p.out) << what;
        const std::vector<double> want = float64_sums(x, c.axes, keep);
        ASSERT_EQ(got.shape(), run_reference("sum", {x.to(DType::Float64)},
                                             sum_attrs(c.axes, keep, ""))[0].shape())
            << what;
        expect_values(got, want, tolerance(p.out), what + " (kernel)");
        expect_values(ref, want, tolerance(p.out), what + " (reference)");
        expect_values(got, values(ref), tolerance(p.out), what + " (kernel vs reference)");
      }
}

TEST(SumDtype, DefaultKeepsNumpysResultType) {
  std::mt19937 rng(3);
  for (DType t : {DType::BFloat16, DType::Float16, DType::Float32, DType::Float64})
    EXPECT_EQ(ds::sum(random_tensor({4, 5}, t, rng), {0}).dtype(), t);
  EXPECT_EQ(ds::sum(random_tensor({4, 5}, DType::Int32, rng), {0}).dtype(), DType::Int64);
  EXPECT_EQ(ds::sum(random_tensor({4, 5}, DType::Bool, rng)).dtype(), DType::Int64);
  // A result type equal to the input's is the default's.
  const Tensor x = random_tensor({4, 5}, DType::BFloat16, rng);
  const Tensor same = ds::apply1("sum", {x}, sum_attrs({1}, false, "bfloat16"));
  EXPECT_EQ(same.dtype(), DType::BFloat16);
  expect_values(same, values(ds::sum(x, {1})), 0.0, "bf16 -> bf16");
  // Only sum takes the attribute.
  expect_error<ds::ValueError>(
      [&] { ds::apply1("mean", {x}, sum_attrs({1}, false, "float32")); },
      {"mean", "unknown attribute 'dtype'"});
}

TEST(SumDtype, RejectsNarrowerOrNonFloatResultTypes) {
  std::mt19937 rng(5);
  const std::pair<DType, const char*> bad[] = {
      {DType::Float32, "bfloat16"}, {DType::Float32, "float16"}, {DType::Float64, "float32"},
      {DType::BFloat16, "float16"}, {DType::Float16, "bfloat16"}, {DType::Float32, "int64"},
      {DType::Int32, "float32"},    {DType::Int64, "float64"},    {DType::Bool, "float32"},
      {DType::Int32, "int64"}};
  for (const auto& [in, out] : bad) {
    const Tensor x = random_tensor({3, 4}, in, rng);
    expect_error<ds::TypeError>([&] { ds::apply1("sum", {x}, sum_attrs({0}, false, out)); },
                                {"sum", ds::dtype_name(in), out, "at least as wide"});
  }
  // In a graph the node is named too.
  Graph g;
  const Tensor p = g.placeholder("x", {3, 4}, DType::Float32);
  expect_error<ds::TypeError>([&] { ds::apply1("sum", {p}, sum_attrs({0}, false, "float16")); },
                              {"sum", "float32", "float16"});
  const Tensor x = random_tensor({3, 4}, DType::BFloat16, rng);
  expect_error<ds::TypeError>([&] { ds::apply1("sum", {x}, sum_attrs({0}, false, "float33")); },
                              {"sum", "unknown dtype 'float33'"});
  expect_error<ds::TypeError>(
      [&] { ds::apply1("sum", {x}, {{"axes", Axes{0}}, {"dtype", DType::Float32}}); },
      {"sum", "attribute 'dtype' expects string"});
}

// The gradient of sum(x, dtype=float32) is the float32 cotangent broadcast over
// the reduced axes and cast back to x's type (exact here: the cotangents are
// bfloat16 values).
TEST(SumDtype, GradientIsBroadcastInTheInputsType) {
  std::mt19937 rng(7);
  for (bool keep : {false, true}) {
    const Tensor x = random_tensor({4, 3, 5}, DType::BFloat16, rng);
    const Tensor w = random_tensor(keep ? Shape{1, 3, 1} : Shape{3}, DType::BFloat16, rng)
                         .to(DType::Float32);
    auto fn = [&](const std::vector<Tensor>& a) {
      return ds::sum(ds::mul(ds::apply1("sum", {a[0]}, sum_attrs({0, 2}, keep, "float32")), w));
    };
    auto [value, grads] = ds::value_and_grad(fn)({x});
    EXPECT_EQ(value.dtype(), DType::Float32);
    ASSERT_EQ(grads.size(), 1u);
    ASSERT_EQ(grads[0].dtype(), DType::BFloat16);
    ASSERT_EQ(grads[0].shape(), x.shape());
    const auto wv = values(w);
    std::vector<double> want;
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 5; ++k) want.push_back(wv[j]);
    expect_values(grads[0], want, 0.0, keep ? "keepdims" : "no keepdims");
  }
}

TEST(SumDtype, GradientMatchesFiniteDifferences) {
  const Tensor w = ds::testing::lcg_tensor({3}, 2);
  auto fn = [&](const std::vector<Tensor>& a) {
    return ds::sum(ds::square(
        ds::mul(ds::apply1("sum", {a[0]}, sum_attrs({0, 2}, false, "float64")), w)));
  };
  ds::testing::expect_gradients_match(fn, {ds::testing::lcg_tensor({4, 3, 5}, 1)}, {0});
}

// ---- the sum_low_precision pass

int count(const Graph& g, const std::string& op) {
  int n = 0;
  for (const ds::Node& node : g.nodes()) n += node.op->name == op;
  return n;
}

const ds::Node& only(const Graph& g, const std::string& op) {
  const ds::Node* found = nullptr;
  for (const ds::Node& n : g.nodes())
    if (n.op->name == op) {
      EXPECT_EQ(found, nullptr) << "more than one " << op << " in\n" << g.str();
      found = &n;
    }
  EXPECT_NE(found, nullptr) << "no " << op << " in\n" << g.str();
  return *found;
}

// Sets DS_DISABLE_PASSES (read when a graph compiles) for its lifetime.
struct DisabledPasses {
  explicit DisabledPasses(const char* names) {
    if (names) setenv("DS_DISABLE_PASSES", names, 1);
  }
  ~DisabledPasses() { unsetenv("DS_DISABLE_PASSES"); }
};

// The graph before the pass (compiled without it) and after it, run on the CPU
// (x: the placeholder "x"), give the same outputs.
void expect_same_outputs(const Graph& before, const Graph& after, const Tensor& x) {
  std::map<std::string, Tensor> ra;
  {
    const DisabledPasses scope("sum_low_precision");
    ra = ds::compile(before, "cpu").run({{"x", x}});
  }
  const auto rb = ds::compile(after, "cpu").run({{"x", x}});
  ASSERT_EQ(ra.size(), rb.size());
  for (const auto& [name, t] : ra) {
    ASSERT_TRUE(rb.count(name)) << name;
    EXPECT_EQ(rb.at(name).dtype(), t.dtype()) << name;
    expect_values(rb.at(name), values(t), 2e-7, name);
  }
}

TEST(SumLowPrecision, CastGoesWhenTheSumIsItsOnlyReader) {
  for (DType low : {DType::BFloat16, DType::Float16}) {
    Graph g;
    const Tensor x = g.placeholder("x", {6, 8}, low);
    g.output(ds::sum(ds::cast(x, DType::Float32), {0}), "db");
    const Graph after = ds::passes::sum_low_precision(g);
    EXPECT_EQ(count(after, "cast"), 0) << after.str();
    const ds::Node& s = only(after, "sum");
    EXPECT_EQ(s.inputs[0].node, only(after, "placeholder").id) << after.str();
    EXPECT_EQ(std::get<std::string>(s.attrs.at("dtype")), "float32");
    EXPECT_EQ(s.outputs[0].dtype, DType::Float32);
    EXPECT_EQ(s.outputs[0].shape, (Shape{8}));
    std::mt19937 rng(1);
    expect_same_outputs(g, after, random_tensor({6, 8}, low, rng));
  }
}

// The linear backward's bias gradient of a [B, T, C] activation: the gradient
// reshaped to [B*T, C] after the cast up, then summed over the rows.
TEST(SumLowPrecision, ThroughReshapes) {
  Graph g;
  const Tensor x = g.placeholder("x", {2, 3, 8}, DType::BFloat16);
  const Tensor r = ds::reshape(ds::reshape(ds::cast(x, DType::Float32), {6, 8}), {3, 2, 8});
  g.output(ds::sum(r, {0, 1}, true), "db");
  const Graph after = ds::passes::sum_low_precision(g);
  EXPECT_EQ(count(after, "cast"), 0) << after.str();
  EXPECT_EQ(count(after, "reshape"), 2) << after.str();
  for (const ds::Node& n : after.nodes()) {
    if (n.op->name != "reshape") continue;
    EXPECT_EQ(n.outputs[0].dtype, DType::BFloat16) << after.str();
  }
  EXPECT_EQ(only(after, "sum").outputs[0].dtype, DType::Float32);
  std::mt19937 rng(2);
  expect_same_outputs(g, after, random_tensor({2, 3, 8}, DType::BFloat16, rng));
}

TEST(SumLowPrecision, CastStaysForItsOtherReaders) {
  Graph g;
  const Tensor x = g.placeholder("x", {5, 4}, DType::BFloat16);
  const Tensor up = ds::cast(x, DType::Float32);
  const Tensor rows = ds::reshape(up, {20});
  g.output(ds::sum(up, {0}), "a");
  g.output(ds::sum(rows), "b");
  g.output(ds::exp(up), "c");     // the cast has another reader
  g.output(ds::neg(rows), "d");   // and so has the reshape
  const Graph after = ds::passes::sum_low_precision(g);
  EXPECT_EQ(count(after, "cast"), 1) << after.str();
  EXPECT_EQ(count(after, "reshape"), 2) << after.str();  // one for neg, one for the sum
  for (const ds::Node& n : after.nodes()) {
    if (n.op->name != "sum") continue;
    EXPECT_EQ(after.type(n.inputs[0]).dtype, DType::BFloat16);
    EXPECT_EQ(std::get<std::string>(n.attrs.at("dtype")), "float32");
  }
  // A cast that is itself a graph output stays too.
  Graph h;
  const Tensor hx = h.placeholder("x", {5, 4}, DType::Float16);
  const Tensor hup = ds::cast(hx, DType::Float32);
  h.output(hup, "up");
  h.output(ds::sum(hup, {0}), "s");
  const Graph h_after = ds::passes::sum_low_precision(h);
  EXPECT_EQ(count(h_after, "cast"), 1) << h_after.str();
  EXPECT_EQ(h_after.type(only(h_after, "sum").inputs[0]).dtype, DType::Float16);
  std::mt19937 rng(3);
  expect_same_outputs(g, after, random_tensor({5, 4}, DType::BFloat16, rng));
  expect_same_outputs(h, h_after, random_tensor({5, 4}, DType::Float16, rng));
}

// A last-axis sum is rewritten when its cast goes; where the cast stays, the sum
// keeps reading it (a GPU's loop fusion may compute both in one region).
TEST(SumLowPrecision, LastAxisSumsOnlyWhereTheCastGoes) {
  Graph g;
  const Tensor x = g.placeholder("x", {5, 4}, DType::BFloat16);
  g.output(ds::sum(ds::cast(x, DType::Float32), {-1}), "alone");
  const Graph after = ds::passes::sum_low_precision(g);
  EXPECT_EQ(count(after, "cast"), 0) << after.str();
  EXPECT_EQ(after.type(only(after, "sum").inputs[0]).dtype, DType::BFloat16);

  Graph h;
  const Tensor hx = h.placeholder("x", {5, 4}, DType::BFloat16);
  const Tensor up = ds::cast(hx, DType::Float32);
  h.output(ds::sum(up, {1}, true), "rows");
  h.output(ds::sum(up, {0}), "columns");
  h.output(ds::mul(up, up), "square");
  const Graph h_after = ds::passes::sum_low_precision(h);
  EXPECT_EQ(count(h_after, "cast"), 1) << h_after.str();
  for (const ds::Node& n : h_after.nodes()) {
    if (n.op->name != "sum") continue;
    const bool rows = std::get<std::vector<int64_t>>(n.attrs.at("axes")) == std::vector<int64_t>{1};
    EXPECT_EQ(h_after.type(n.inputs[0]).dtype, rows ? DType::Float32 : DType::BFloat16)
        << h_after.str();
  }
  std::mt19937 rng(4);
  expect_same_outputs(g, after, random_tensor({5, 4}, DType::BFloat16, rng));
  expect_same_outputs(h, h_after, random_tensor({5, 4}, DType::BFloat16, rng));
}

TEST(SumLowPrecision, LeavesOtherSumsAlone) {
  Graph g;
  const Tensor x = g.placeholder("x", {5, 4}, DType::Float32);
  const Tensor i = g.placeholder("i", {5, 4}, DType::Int32);
  g.output(ds::sum(ds::cast(x, DType::BFloat16), {0}), "narrowing");
  g.output(ds::sum(ds::cast(i, DType::Float32), {0}), "from_int");
  g.output(ds::sum(ds::exp(x), {0}), "no_cast");
  g.output(ds::mean(ds::cast(ds::cast(x, DType::BFloat16), DType::Float32), {0}), "mean");
  const Graph after = ds::passes::sum_low_precision(g);
  EXPECT_EQ(after.str(), g.str());
}

// ---- bf16 GPT training steps with and without the pass

struct GptRun {
  std::vector<double> losses;
  int casts = 0, sums_of_casts = 0, wide_sums = 0;
};

// sum(R(cast up)), R a chain of reshapes: what the pass rewrites.
bool sum_of_cast(const Graph& g, const ds::Node& n) {
  if (n.op->name != "sum") return false;
  const ds::Node* in = &g.node(n.inputs[0].node);
  while (in->op->name == "reshape") in = &g.node(in->inputs[0].node);
  return in->op->name == "cast" && ds::is_floating(g.type(in->inputs[0]).dtype) &&
         ds::dtype_size(in->outputs[0].dtype) > ds::dtype_size(g.type(in->inputs[0]).dtype);
}

GptRun train_gpt(const char* disabled) {
  const DisabledPasses scope(disabled);
  ds::nn::manual_seed(5);
  auto model = ds::models::gpt2({.block_size = 16, .vocab_size = 50, .n_layer = 2, .n_head = 2,
                                 .n_embd = 16});
  ds::optim::AdamW adamw({.lr = 1e-2, .weight_decay = 0.0});
  ds::optim::TrainStep step(*model, adamw, ds::models::lm_loss, {.precision = "bf16"});
  const Tensor seq = ds::cast(
      ds::floor(ds::random_uniform({4, 13}, 8, 0.0, 50.0 - 1e-3)), DType::Int64);
  const Tensor x = ds::slice(seq, 1, 0, 12).contiguous(), y = ds::slice(seq, 1, 1, 13).contiguous();
  GptRun r;
  for (int i = 0; i < 3; ++i) r.losses.push_back(step.step(x, y).loss.item<double>());
  const Graph& g =
      step.executable({DType::Int64, {4, 12}}, {DType::Int64, {4, 12}}).graph();
  for (const ds::Node& n : g.nodes()) {
    r.casts += n.op->name == "cast";
    r.sums_of_casts += sum_of_cast(g, n);
    r.wide_sums += n.op->name == "sum" && !std::get<std::string>(n.attrs.at("dtype")).empty();
  }
  return r;
}

TEST(SumLowPrecision, GptTrainingStepsSameLossWithoutTheCasts) {
  const GptRun on = train_gpt(nullptr), off = train_gpt("sum_low_precision");
  std::printf("bf16 GPT: %d casts with the pass, %d without; %d sums of casts without it, %d "
              "sums into a wider type with it\n",
              on.casts, off.casts, off.sums_of_casts, on.wide_sums);
  ASSERT_EQ(on.losses.size(), off.losses.size());
  for (size_t i = 0; i < on.losses.size(); ++i) {
    std::printf("step %zu loss %.9g with the pass, %.9g without\n", i, on.losses[i],
                off.losses[i]);
    // The CPU sums the same values in the same order either way: bit for bit.
    EXPECT_EQ(on.losses[i], off.losses[i]) << "step " << i;
  }
  // Per block: the qkv bias gradient sums the widened concat of the attention's
  // bf16 gradients (the cast read by nothing else: it goes), and the two layer-norm
  // bias gradients sum a widened matmul output (read by more: the cast stays);
  // one more for the final layer norm. The other linears' bias gradients sum
  // float32 elementwise results.
  const int blocks = 2;
  EXPECT_EQ(off.sums_of_casts, 3 * blocks + 1);
  EXPECT_EQ(on.sums_of_casts, 0);
  EXPECT_EQ(on.wide_sums, off.sums_of_casts);
  EXPECT_EQ(off.casts - on.casts, blocks);
}

}  // namespace
