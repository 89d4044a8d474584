// softmax_cross_entropy and its backward: the reference and fast CPU kernels
// against float64 loops, finite-difference gradients, bad targets, nn::cross_entropy
// against the log_softmax + gather composition it replaced, the mixed-precision
// rewrite (cross_entropy_low_precision) and a bf16 GPT training step.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "ds/autodiff.h"
#include "ds/compile.h"
#include "ds/ds.h"
#include "ds/models.h"
#include "ds/nn/losses.h"
#include "ds/optim.h"
#include "gradcheck.h"
#include "ir/ops/softmax_cross_entropy.h"
#include "op_check.h"
#include "passes/cross_entropy_low_precision.h"
#include "passes/pass_manager.h"

namespace {

using ds::AttrMap;
using ds::DType;
using ds::Shape;
using ds::Tensor;

constexpr int64_t kIgnore = -100;

// Targets in [0, classes), every third row ignored.
Tensor targets(int64_t rows, int64_t classes, DType type) {
  std::vector<double> t(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    t[r] = r % 3 == 2 ? static_cast<double>(kIgnore) : static_cast<double>((r * 7 + 3) % classes);
  return Tensor::from_vector(t, {rows}).to(type);
}

struct Expected {
  std::vector<double> loss, lse, grad;
};

// Float64 loops over the logits as stored (after rounding to their dtype).
Expected expected(const Tensor& logits, const Tensor& target, const Tensor& dloss, double ls) {
  const int64_t n = logits.shape()[0], c = logits.shape()[1];
  const auto x = ds::test::values(logits), t = ds::test::values(target),
             d = ds::test::values(dloss);
  Expected e{std::vector<double>(n), std::vector<double>(n), std::vector<double>(n * c)};
  for (int64_t r = 0; r < n; ++r) {
    const double* row = x.data() + r * c;
    double m = -INFINITY, sum = 0, s = 0;
    for (int64_t j = 0; j < c; ++j) m = std::max(m, row[j]);
    for (int64_t j = 0; j < c; ++j) {
      s += std::exp(row[j] - m);
      sum += row[j];
    }
    e.lse[r] = m + std::log(s);
    const auto tr = static_cast<int64_t>(t[r]);
    if (tr == kIgnore) continue;
    e.loss[r] = e.lse[r] - (1 - ls) * row[tr] - ls * sum / static_cast<double>(c);
    for (int64_t j = 0; j < c; ++j)
      e.grad[r * c + j] =
          (std::exp(row[j] - e.lse[r]) - (j == tr ? 1 - ls : 0.0) - ls / static_cast<double>(c)) *
          d[r];
  }
  return e;
}

AttrMap attrs(double ls) { return {{"ignore_index", kIgnore}, {"label_smoothing", ls}}; }

// Every output of op's float64 reference kernel, called directly.
std::vector<Tensor> reference(const std::string& op, const std::vector<Tensor>& in,
                              const AttrMap& a) {
  const ds::OpDef& def = ds::get_op(op);
  const AttrMap full = ds::complete_attrs(def, a, op);
  ds::OpContext ctx{def, full, ds::test::types_of(in), ""};
  std::vector<Tensor> outs;
  for (const ds::TensorType& t : def.infer(ctx)) outs.push_back(Tensor::empty(t.shape, t.dtype));
  def.reference(ds::KernelCall{ctx, in, outs});
  return outs;
}

// Relative tolerance of a value rounded once to `t` (float32 row statistics).
double tol(DType t) {
  switch (t) {
    case DType::Float64: return 1e-12;
    case DType::BFloat16: return 8e-3;
    case DType::Float16: return 1e-3;
    default: return 2e-6;
  }
}

TEST(SoftmaxCrossEntropy, KernelsMatchFloat64Loops) {
  uint32_t seed = 1;
  for (DType type : {DType::Float64, DType::Float32, DType::BFloat16, DType::Float16})
    for (DType index : {DType::Int32, DType::Int64})
      for (int64_t c : {1, 10, 1001})
        for (int64_t n : {0, 1, 9})
          for (double ls : {0.0, 0.1}) {
            const std::string what = std::string(ds::dtype_name(type)) + " " +
                                     ds::dtype_name(index) + " [" + std::to_string(n) + ", " +
                                     std::to_string(c) + "] ls=" + std::to_string(ls);
            const Tensor x = ds::test::random_tensor({n, c}, ++seed, type) * 4.0;
            const Tensor t = targets(n, c, index);
            const DType stat = ds::ops::cross_entropy_stat_type(type);
            const Tensor d = ds::test::random_tensor({n}, ++seed, stat);
            const Expected e = expected(x, t, d, ls);
            const double stat_tol = type == DType::Float64 ? 1e-12 : 2e-6;
            const auto fast = ds::apply("softmax_cross_entropy", {x, t}, attrs(ls));
            const auto ref = reference("softmax_cross_entropy", {x, t}, attrs(ls));
            for (const auto& out : {fast, ref}) {
              ASSERT_EQ(out[0].dtype(), stat) << what;
              EXPECT_LE(ds::test::rel_diff(out[0], e.loss), stat_tol) << what;
              EXPECT_LE(ds::test::rel_diff(out[1], e.lse), stat_tol) << what;
            }
            const std::vector<Tensor> bin = {x, t, fast[1], d};
            const Tensor g = ds::apply1("softmax_cross_entropy_backward", bin, attrs(ls));
            const Tensor gref = reference("softmax_cross_entropy_backward", bin, attrs(ls))[0];
            ASSERT_EQ(g.dtype(), type) << what;
            EXPECT_LE(ds::test::rel_diff(g, e.grad), tol(type)) << what;
            EXPECT_LE(ds::test::rel_diff(gref, e.grad), tol(type)) << what;
          }
}

TEST(SoftmaxCrossEntropy, GradientsMatchFiniteDifferences) {
  const Tensor t = targets(5, 7, DType::Int64);
  const Tensor w = ds::testing::lcg_tensor({5}, 3), v = ds::testing::lcg_tensor({5}, 4);
  for (double ls : {0.0, 0.2}) {
    // Both outputs weighted: the loss's gradient (the backward op) and lse's.
    const ds::ScalarFn f = [&](const std::vector<Tensor>& a) {
      const auto r = ds::softmax_cross_entropy(a[0], t, kIgnore, ls);
      return ds::sum(r.loss * w) + ds::sum(r.lse * v);
    };
    ds::testing::expect_gradients_match(f, {ds::testing::lcg_tensor({5, 7}, 9, -3, 3)}, {0});
  }
}

TEST(SoftmaxCrossEntropy, BadInputsAreNamed) {
  const Tensor x = ds::test::random_tensor({4, 10}, 5, DType::Float32);
  for (DType index : {DType::Int32, DType::Int64}) {
    const Tensor bad = Tensor::from_vector(std::vector<double>{1, kIgnore, 10, -1}, {4}).to(index);
    const Tensor lse = ds::softmax_cross_entropy(x, targets(4, 10, index)).lse;
    const std::vector<std::function<void()>> calls = {
        [&] { ds::apply("softmax_cross_entropy", {x, bad}, attrs(0)); },
        [&] { reference("softmax_cross_entropy", {x, bad}, attrs(0)); },
        [&] { ds::apply("softmax_cross_entropy_backward", {x, bad, lse, lse}, attrs(0)); },
        [&] { reference("softmax_cross_entropy_backward", {x, bad, lse, lse}, attrs(0)); }};
    for (const auto& call : calls) {
      try {
        call();
        ADD_FAILURE() << "target 10 of 10 classes was accepted";
      } catch (const ds::ValueError& e) {
        EXPECT_NE(std::string(e.what()).find("target 10 at row 2 is out of range for 10 classes"),
                  std::string::npos)
            << e.what();
      }
    }
  }
  const Tensor t = targets(4, 10, DType::Int64);
  EXPECT_THROW(ds::softmax_cross_entropy(ds::reshape(x, {40}), t), ds::ShapeError);
  EXPECT_THROW(ds::softmax_cross_entropy(x, targets(3, 10, DType::Int64)), ds::ShapeError);
  EXPECT_THROW(ds::softmax_cross_entropy(x, ds::cast(t, DType::Float32)), ds::TypeError);
  EXPECT_THROW(ds::softmax_cross_entropy(ds::cast(x, DType::Int32), t), ds::TypeError);
  EXPECT_THROW(ds::softmax_cross_entropy(x, t, kIgnore, 1.5), ds::ValueError);
  const Tensor lse64 = ds::cast(ds::softmax_cross_entropy(x, t).lse, DType::Float64);
  EXPECT_THROW(ds::apply("softmax_cross_entropy_backward", {x, t, lse64, lse64}), ds::TypeError);
}

// The composition nn::cross_entropy used before the op: log_softmax, a gather of
// the target's entry, label smoothing from the row mean, masks for ignored rows.
Tensor old_cross_entropy(const Tensor& logits, const Tensor& target, double ls,
                         const std::string& reduction) {
  const Tensor logp = ds::log_softmax(logits, 1);
  const Tensor keep = ds::ne(target, ds::scalar_like(static_cast<double>(kIgnore), target));
  const Tensor safe = ds::where(keep, target, ds::scalar_like(0.0, target));
  const int64_t rows = logits.shape()[0];
  Tensor per = ds::neg(ds::reshape(ds::take_along_axis(logp, ds::reshape(safe, {rows, 1}), 1), {rows}));
  if (ls > 0) per = per * (1.0 - ls) + ds::neg(ds::mean(logp, {1})) * ls;
  const Tensor keepf = ds::cast(keep, logits.dtype());
  per = per * keepf;
  if (reduction == "mean") return ds::sum(per) / ds::sum(keepf);
  if (reduction == "sum") return ds::sum(per);
  return per;
}

TEST(SoftmaxCrossEntropy, CrossEntropyMatchesTheCompositionItReplaced) {
  const Tensor t = targets(9, 11, DType::Int64);
  for (DType type : {DType::Float64, DType::Float32})
    for (const std::string reduction : {"mean", "sum", "none"})
      for (double ls : {0.0, 0.1}) {
        const std::string what = std::string(ds::dtype_name(type)) + " " + reduction;
        const Tensor x = ds::test::random_tensor({9, 11}, 21, type) * 3.0;
        const ds::ScalarFn now = [&](const std::vector<Tensor>& a) {
          return ds::sum(ds::nn::cross_entropy(a[0], t, ls, kIgnore, reduction));
        };
        const ds::ScalarFn before = [&](const std::vector<Tensor>& a) {
          return ds::sum(old_cross_entropy(a[0], t, ls, reduction));
        };
        const Tensor per = ds::nn::cross_entropy(x, t, ls, kIgnore, reduction);
        EXPECT_EQ(per.dtype(), type) << what;
        EXPECT_LE(ds::test::rel_diff(per, ds::test::values(old_cross_entropy(x, t, ls, reduction))),
                  type == DType::Float64 ? 1e-12 : 1e-6)
            << what;
        auto [v1, g1] = ds::value_and_grad(now, {0})({x});
        auto [v0, g0] = ds::value_and_grad(before, {0})({x});
        EXPECT_LE(ds::test::rel_diff(g1[0], ds::test::values(g0[0])),
                  type == DType::Float64 ? 1e-12 : 1e-6)
            << what;
      }
  // bfloat16 logits: a bfloat16 result, as before.
  const Tensor xb = ds::test::random_tensor({9, 11}, 22, DType::BFloat16);
  const Tensor lb = ds::nn::cross_entropy(xb, t);
  EXPECT_EQ(lb.dtype(), DType::BFloat16);
  EXPECT_NEAR(lb.item<double>(), old_cross_entropy(xb.to(DType::Float64), t, 0, "mean").item<double>(),
              1e-2);
  // Every row ignored: 0 / 0, as before.
  const Tensor none = Tensor::from_vector(std::vector<double>(9, kIgnore), {9}).to(DType::Int64);
  EXPECT_TRUE(std::isnan(ds::nn::cross_entropy(xb.to(DType::Float32), none).item<double>()));
}

TEST(SoftmaxCrossEntropy, SymbolicBatchCompilesOnceForEveryBatch) {
  ds::CompiledFunction f = ds::compile(
      [](const std::vector<Tensor>& a) {
        return std::vector<Tensor>{ds::nn::cross_entropy(a[0], a[1], 0.1)};
      },
      "cpu", {}, /*symbolic_batch=*/true);
  for (int64_t n : {1, 7, 32}) {
    const Tensor x = ds::test::random_tensor({n, 6}, static_cast<uint32_t>(n), DType::Float32);
    const Tensor t = targets(n, 6, DType::Int64);
    EXPECT_NEAR(f({x, t})[0].item<double>(), ds::nn::cross_entropy(x, t, 0.1).item<double>(), 1e-6)
        << n;
  }
  EXPECT_EQ(f.compilations(), 1);
}

// ---- the mixed-precision rewrite

std::map<std::string, int> op_counts(const ds::Graph& g) {
  std::map<std::string, int> c;
  for (const ds::Node& n : g.nodes()) c[n.op->name]++;
  return c;
}

// loss and the bf16 gradient of bf16 logits [2, 3, 5] widened for the loss (what
// autocast leaves): reshape(cast_f32(x)) into softmax_cross_entropy and its
// backward, the gradient cast down; with `wide_reader`, the float32 gradient is
// also an output.
ds::Graph loss_graph(bool wide_reader) {
  ds::Graph g;
  const Tensor x = g.placeholder("x", {2, 3, 5}, DType::BFloat16);
  const Tensor t = g.placeholder("t", {6}, DType::Int64);
  const Tensor dl = g.placeholder("dl", {6}, DType::Float32);
  const Tensor wide = g.add("cast", {x}, {{"dtype", DType::Float32}})[0];
  const Tensor rows = g.add("reshape", {wide}, {{"shape", std::vector<int64_t>{-1, 5}}})[0];
  const auto out = g.add("softmax_cross_entropy", {rows, t}, attrs(0.1));
  const Tensor grad = g.add("softmax_cross_entropy_backward", {rows, t, out[1], dl}, attrs(0.1))[0];
  g.output(out[0], "loss");
  g.output(g.add("cast", {grad}, {{"dtype", DType::BFloat16}})[0], "grad");
  if (wide_reader) g.output(grad, "grad32");
  return g;
}

TEST(CrossEntropyLowPrecision, LossOpsReadTheNarrowLogitsWithTheSameResults) {
  const ds::Graph before = loss_graph(false);
  const ds::Graph after = ds::passes::dead_code_elimination(
      ds::passes::cross_entropy_low_precision(before));
  EXPECT_EQ(op_counts(before)["cast"], 2) << before.str();
  EXPECT_EQ(op_counts(after)["cast"], 0) << after.str();
  for (const ds::Node& n : after.nodes())
    if (n.op->name.rfind("softmax_cross_entropy", 0) == 0) {
      EXPECT_EQ(after.type(n.inputs[0]).dtype, DType::BFloat16) << after.str();
    }
  // Bit for bit: compiled at opt level 0 (the pass does not run there).
  const Tensor x = ds::test::random_tensor({2, 3, 5}, 31, DType::BFloat16) * 5.0;
  const std::map<std::string, Tensor> feeds = {{"x", x},
                                               {"t", targets(6, 5, DType::Int64)},
                                               {"dl", ds::test::random_tensor({6}, 32, DType::Float32)}};
  const auto a = ds::compile(before, "cpu", {.opt_level = 0}).run(feeds);
  const auto b = ds::compile(after, "cpu", {.opt_level = 0}).run(feeds);
  for (const char* name : {"loss", "grad"}) {
    ASSERT_EQ(a.at(name).dtype(), b.at(name).dtype()) << name;
    EXPECT_EQ(ds::test::values(a.at(name)), ds::test::values(b.at(name))) << name;
  }
}

TEST(CrossEntropyLowPrecision, AFloat32ReaderOfTheGradientKeepsTheBackwardWide) {
  const ds::Graph after = ds::passes::dead_code_elimination(
      ds::passes::cross_entropy_low_precision(loss_graph(true)));
  for (const ds::Node& n : after.nodes()) {
    if (n.op->name == "softmax_cross_entropy") {
      EXPECT_EQ(after.type(n.inputs[0]).dtype, DType::BFloat16) << after.str();
    }
    if (n.op->name == "softmax_cross_entropy_backward") {
      EXPECT_EQ(n.outputs[0].dtype, DType::Float32) << after.str();
    }
  }
}

TEST(CrossEntropyLowPrecision, Bf16GptTrainingStepUsesOneLossOpOnNarrowLogits) {
  ds::nn::manual_seed(5);
  auto model = ds::models::gpt2({.block_size = 16, .vocab_size = 50, .n_layer = 2, .n_head = 2,
                                 .n_embd = 16});
  ds::optim::AdamW adamw({.lr = 1e-2, .weight_decay = 0.0});
  ds::optim::TrainStep step(*model, adamw, ds::models::lm_loss, {.precision = "bf16"});
  const Tensor seq = ds::cast(ds::floor(ds::random_uniform({4, 13}, 8, 0.0, 50.0 - 1e-3)),
                              DType::Int64);
  const Tensor x = ds::slice(seq, 1, 0, 12).contiguous(), y = ds::slice(seq, 1, 1, 13).contiguous();
  std::vector<double> losses;
  for (int i = 0; i < 8; ++i) losses.push_back(step.step(x, y).loss.item<double>());
  EXPECT_LT(losses.back(), 0.8 * losses.front());
  const ds::Graph& g = step.executable({DType::Int64, {4, 12}}, {DType::Int64, {4, 12}}).graph();
  const auto counts = op_counts(g);
  EXPECT_EQ(counts.at("softmax_cross_entropy"), 1) << g.str();
  EXPECT_EQ(counts.at("softmax_cross_entropy_backward"), 1) << g.str();
  // The logits are cast to float32 only for the step's float32 'output' (the
  // model output it returns); neither the loss nor its gradient reads a cast.
  int output_node = -1;
  for (const auto& [name, v] : g.outputs())
    if (name == "output") output_node = v.node;
  for (const ds::Node& n : g.nodes()) {
    if (n.op->name.rfind("softmax_cross_entropy", 0) == 0) {
      EXPECT_EQ(g.type(n.inputs[0]).dtype, DType::BFloat16) << g.str();
    }
    if (n.op->name == "cast" && n.outputs[0].shape.back() == 50) {
      EXPECT_EQ(n.id, output_node) << n.label() << "\n" << g.str();
    }
  }
}

}  // namespace
