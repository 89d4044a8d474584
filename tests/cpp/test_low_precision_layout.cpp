// The low_precision_layout and padded_sum_to_concat passes: IR before and after
// each rewrite, the cases where they must not fire, results bit for bit equal to
// the reference interpreter on the original graph, and a bf16 GPT training step
// with and without them.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "ds/ds.h"
#include "ds/models.h"
#include "ds/op.h"
#include "ds/optim.h"
#include "passes/low_precision_layout.h"
#include "passes/pass_manager.h"
#include "reference_run.h"

namespace {

using ds::DType;
using ds::Graph;
using ds::Tensor;
namespace passes = ds::passes;

// "op:dtype" of every node but the placeholders, in graph order.
std::string ir(const Graph& g) {
  std::string s;
  for (const ds::Node& n : g.nodes()) {
    if (n.op->name == "placeholder") continue;
    if (!s.empty()) s += " ";
    s += n.op->name + ":" + ds::dtype_name(n.outputs[0].dtype);
  }
  return s;
}

int count(const Graph& g, const std::string& op) {
  int k = 0;
  for (const ds::Node& n : g.nodes()) k += n.op->name == op;
  return k;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

// Random feeds for every placeholder of `g`, in its dtype (a symbolic extent: 3).
std::map<std::string, Tensor> feeds_for(const Graph& g, uint64_t seed) {
  std::map<std::string, Tensor> feeds;
  for (int id : g.placeholder_ids()) {
    const ds::Node& n = g.node(id);
    ds::Shape shape = n.outputs[0].shape;
    for (int64_t& e : shape) e = e == ds::dyn ? 3 : e;
    feeds[n.name] = ds::cast(ds::random_normal(shape, seed++), n.outputs[0].dtype);
  }
  return feeds;
}

// `rewritten` and the compiled `original` give the reference interpreter's results
// on `original`, bit for bit.
void expect_same_results(const Graph& original, const Graph& rewritten) {
  const auto feeds = feeds_for(original, 11);
  const auto want = ds::reference::reference_run(original, feeds);
  const auto got = ds::reference::reference_run(rewritten, feeds);
  const auto compiled = ds::compile(original, "cpu").run(feeds);
  for (const auto& [name, w] : want) {
    EXPECT_TRUE(same_bits(got.at(name), w)) << name << ": rewritten graph";
    EXPECT_TRUE(same_bits(compiled.at(name), w)) << name << ": compiled";
  }
}

Tensor widen(const Tensor& x) { return ds::cast(x, DType::Float32); }
Tensor bf16_input(Graph& g, const std::string& name, const ds::Shape& shape) {
  return g.placeholder(name, shape, DType::BFloat16);
}
Tensor narrow(const Tensor& x, DType low = DType::BFloat16) { return ds::cast(x, low); }

// GPT's head split: [b, t, 3c] -> part -> [b, heads, t, d].
Tensor head(const Tensor& qkv, int64_t part, int64_t c, int64_t heads) {
  const int64_t t = qkv.shape()[1];
  const Tensor p = ds::slice(qkv, 2, part * c, (part + 1) * c);
  return ds::permute(ds::reshape(p, {-1, t, heads, c / heads}), {0, 2, 1, 3});
}

TEST(LowPrecisionLayout, HeadSplitRunsOnNarrowValues) {
  for (DType low : {DType::BFloat16, DType::Float16}) {
    Graph g;
    const Tensor qkv = widen(g.placeholder("qkv", {2, 5, 12}, low));
    for (int64_t part = 0; part < 3; ++part)
      g.output(narrow(head(qkv, part, 4, 2), low), "h" + std::to_string(part));
    const std::string l = ds::dtype_name(low);
    ASSERT_EQ(ir(g), "cast:float32 slice:float32 reshape:float32 permute:float32 cast:" + l +
                         " slice:float32 reshape:float32 permute:float32 cast:" + l +
                         " slice:float32 reshape:float32 permute:float32 cast:" + l);
    const Graph out = passes::low_precision_layout(g);
    EXPECT_EQ(ir(out), "slice:" + l + " reshape:" + l + " permute:" + l + " slice:" + l +
                           " reshape:" + l + " permute:" + l + " slice:" + l + " reshape:" + l +
                           " permute:" + l);
    expect_same_results(g, out);
  }
}

TEST(LowPrecisionLayout, EveryLayoutOpRunsOnNarrowValues) {
  // split, squeeze, flatten, broadcast_to, reflect pad, stack.
  Graph g;
  const Tensor x = widen(bf16_input(g, "x", {3, 1, 6}));
  const auto parts = ds::split(x, {2, 4}, 2);
  const Tensor a = ds::squeeze(parts[0], {1});  // [3, 2]
  const Tensor b = ds::flatten(parts[1], 1);    // [3, 4]
  g.output(narrow(ds::broadcast_to(ds::unsqueeze(a, 1), {3, 5, 2})), "broadcast");
  g.output(narrow(ds::pad(b, {0, 0, 2, 1}, "reflect")), "reflect");
  g.output(narrow(ds::stack({ds::slice(b, 1, 0, 2), a}, 1)), "stack");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(count(out, "cast"), 0) << out.str();
  for (const ds::Node& n : out.nodes()) EXPECT_EQ(n.outputs[0].dtype, DType::BFloat16) << n.label();
  expect_same_results(g, out);
}

TEST(LowPrecisionLayout, SymbolicBatch) {
  Graph g;
  const Tensor x = widen(bf16_input(g, "x", {ds::dyn, 4, 6}));
  g.output(narrow(ds::reshape(ds::permute(x, {0, 2, 1}), {-1, 24})), "y");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(ir(out), "permute:bfloat16 reshape:bfloat16");
  // The reference interpreter needs static shapes: both graphs compiled without passes.
  const auto feeds = feeds_for(g, 3);
  const auto want = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds);
  const auto got = ds::compile(out, "cpu", {.opt_level = 0}).run(feeds);
  EXPECT_TRUE(same_bits(got.at("y"), want.at("y")));
}

TEST(LowPrecisionLayout, WidenedAgainAfterTheLayoutOpsForAFloat32Reader) {
  // y = permute(widen(x)) read by a narrowing cast and by neg: one widening cast,
  // after the narrow permute, serves neg.
  Graph g;
  const Tensor y = ds::permute(widen(bf16_input(g, "x", {3, 4})), {1, 0});
  g.output(narrow(y), "low");
  g.output(ds::neg(y), "negated");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(ir(out), "permute:bfloat16 cast:float32 neg:float32");
  expect_same_results(g, out);
}

TEST(LowPrecisionLayout, NarrowingHoistedToASharedCast) {
  // A float32 gradient narrowed for one matmul and, reshaped, for another: one
  // narrowing cast, the reshape on the narrow value.
  Graph g;
  const Tensor dy = ds::neg(g.placeholder("dy", {2, 3, 4}));
  g.output(narrow(dy), "a");
  g.output(narrow(ds::reshape(dy, {6, 4})), "b");
  ASSERT_EQ(ir(g), "neg:float32 cast:bfloat16 reshape:float32 cast:bfloat16");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(ir(out), "neg:float32 cast:bfloat16 reshape:bfloat16");
  expect_same_results(g, out);
}

TEST(LowPrecisionLayout, ConcatOfWidenedPartsBecomesANarrowConcat) {
  // The attention backward: three narrow gradients widened, moved, joined; the
  // joined value is narrowed for the matmuls and read in float32 (the bias
  // gradient's sum; neg here, exact in every kernel, for the bitwise check).
  Graph g;
  std::vector<Tensor> parts;
  for (const char* name : {"dq", "dk", "dv"}) {
    const Tensor d = widen(bf16_input(g, name, {2, 2, 5, 3}));
    parts.push_back(ds::reshape(ds::permute(d, {0, 2, 1, 3}), {2, 5, 6}));
  }
  const Tensor joined = ds::concat(parts, 2);
  g.output(narrow(joined), "for_matmul");
  g.output(ds::neg(joined), "float32_reader");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(ir(out),
            "permute:bfloat16 reshape:bfloat16 permute:bfloat16 reshape:bfloat16 "
            "permute:bfloat16 reshape:bfloat16 concat:bfloat16 cast:float32 neg:float32");
  expect_same_results(g, out);
}

TEST(LowPrecisionLayout, PadWithAValueTheNarrowTypeHolds) {
  Graph g;
  const Tensor x = widen(bf16_input(g, "x", {2, 3}));
  g.output(narrow(ds::pad(x, {0, 0, 1, 2}, "constant", 1.0)), "one");
  g.output(narrow(ds::pad(x, {1, 1}, "constant", 0.0)), "zero");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(ir(out), "pad:bfloat16 pad:bfloat16");
  expect_same_results(g, out);
}

TEST(LowPrecisionLayout, PadWithAValueTheNarrowTypeRoundsDoesNotMove) {
  // 0.1 written as float32 then narrowed is not 0.1 written as bfloat16 ... widened.
  Graph g;
  const Tensor x = widen(bf16_input(g, "x", {2, 3}));
  g.output(narrow(ds::pad(x, {0, 0, 1, 2}, "constant", 0.1)), "y");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(ir(out), ir(g));
  expect_same_results(g, out);
}

TEST(LowPrecisionLayout, NarrowThenWidenKeepsItsRounding) {
  // float32 -> bfloat16 -> float32 rounds: the pair stays (the pass may run the
  // layout op between on the narrow value, the rounding is unchanged).
  Graph g;
  const Tensor x = g.placeholder("x", {4, 6});
  g.output(ds::permute(widen(narrow(x)), {1, 0}), "y");
  g.output(widen(narrow(g.placeholder("z", {5}))), "z_rounded");
  const Graph out = passes::run_pipeline(g, 1, nullptr);
  EXPECT_EQ(count(out, "cast"), 4);
  for (const auto& [name, v] : out.outputs()) EXPECT_EQ(out.type(v).dtype, DType::Float32) << name;
  expect_same_results(g, out);
}

TEST(LowPrecisionLayout, WidenThenNarrowCancelsInThePipeline) {
  for (DType low : {DType::BFloat16, DType::Float16}) {
    Graph g;
    g.output(narrow(widen(g.placeholder("x", {7}, low)), low), "y");
    const Graph out = passes::run_pipeline(g, 1, nullptr);
    EXPECT_EQ(count(out, "cast"), 0) << ds::dtype_name(low);
    expect_same_results(g, out);
  }
}

TEST(LowPrecisionLayout, BroadcastReadInFloat32KeepsTheCastBeforeIt) {
  // Moving the cast after the broadcast would widen 64x the elements.
  Graph g;
  const Tensor b = ds::broadcast_to(widen(bf16_input(g, "b", {8})), {64, 8});
  g.output(b + g.placeholder("y", {64, 8}), "sum");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(ir(out), ir(g));
}

TEST(LowPrecisionLayout, Float32GraphWithoutCastsUnchanged) {
  Graph g;
  const Tensor x = g.placeholder("x", {3, 4});
  g.output(ds::exp(ds::reshape(ds::permute(x, {1, 0}), {12})), "y");
  EXPECT_EQ(ir(passes::low_precision_layout(g)), ir(g));
}

TEST(LowPrecisionLayout, ValueWithOtherFloat32ReadersKeepsItsCast) {
  // widen(x) is read by neg as well: the widening cast stays for it, the reshape
  // runs on x for the narrowing cast's reader.
  Graph g;
  const Tensor w = widen(bf16_input(g, "x", {2, 6}));
  g.output(ds::neg(w), "negated");
  g.output(narrow(ds::reshape(w, {3, 4})), "low");
  const Graph out = passes::low_precision_layout(g);
  EXPECT_EQ(ir(out), "cast:float32 neg:float32 reshape:bfloat16");
  expect_same_results(g, out);
}

TEST(LowPrecisionLayout, GraphOutputsKeepTheirTypes) {
  // A moved value that is also a graph output is widened for it.
  Graph g;
  const Tensor r = ds::reshape(widen(bf16_input(g, "x", {2, 6})), {3, 4});
  g.output(narrow(r), "low");
  g.output(r, "r");
  const Graph out = passes::low_precision_layout(g);
  ASSERT_EQ(out.outputs().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(out.outputs()[i].first, g.outputs()[i].first);
    EXPECT_EQ(out.type(out.outputs()[i].second), g.type(g.outputs()[i].second));
  }
  EXPECT_EQ(ir(out), "reshape:bfloat16 cast:float32");
  expect_same_results(g, out);
}

// ---- padded_sum_to_concat

// Pads `x` along `axis` (rank 3) to `extent`, starting at `at`.
Tensor pad_axis(const Tensor& x, int axis, int64_t at, int64_t extent, double value = 0.0) {
  std::vector<int64_t> pads(6, 0);
  pads[2 * axis] = at;
  pads[2 * axis + 1] = extent - at - x.shape()[axis];
  return ds::pad(x, pads, "constant", value);
}

TEST(PaddedSumToConcat, TiledZeroPaddingsBecomeAConcat) {
  Graph g;
  const Tensor a = g.placeholder("a", {2, 3, 4}), b = g.placeholder("b", {2, 3, 5}),
               c = g.placeholder("c", {2, 3, 2});
  // Any add order: c + (a + b).
  g.output(pad_axis(c, 2, 9, 11) + (pad_axis(a, 2, 0, 11) + pad_axis(b, 2, 4, 11)), "y");
  const Graph out = passes::padded_sum_to_concat(g);
  EXPECT_EQ(ir(out), "concat:float32");
  const ds::Node& concat = out.nodes().back();
  ASSERT_EQ(concat.inputs.size(), 3u);
  EXPECT_EQ(out.node(concat.inputs[0].node).name, "a");
  EXPECT_EQ(out.node(concat.inputs[2].node).name, "c");
  expect_same_results(g, out);
}

TEST(PaddedSumToConcat, GradientOfSlicesIsAConcat) {
  Graph g;
  const Tensor x = g.placeholder("x", {2, 9});
  // Gradients exact in every kernel (products with ones), for the bitwise check.
  Tensor loss = ds::sum(ds::slice(x, 1, 0, 3) * ds::slice(x, 1, 3, 6) - ds::slice(x, 1, 6, 9));
  g.output(ds::grad(g, loss, {x})[0], "dx");
  const int pads_before = count(g, "pad");
  ASSERT_EQ(pads_before, 3);
  const Graph out = passes::padded_sum_to_concat(g);
  EXPECT_EQ(count(out, "pad"), 0);
  EXPECT_EQ(count(out, "concat"), 1);
  expect_same_results(g, out);
}

TEST(PaddedSumToConcat, DoesNotFireUnlessTheZeroPaddingsTileOneAxis) {
  Graph g;
  const Tensor a = g.placeholder("a", {2, 3, 4}), b = g.placeholder("b", {2, 3, 5});
  g.output(pad_axis(a, 2, 0, 10) + pad_axis(b, 2, 5, 10), "gap");
  g.output(pad_axis(a, 2, 0, 8) + pad_axis(b, 2, 3, 8), "overlap");
  g.output(pad_axis(a, 2, 0, 9, 1.0) + pad_axis(b, 2, 4, 9), "one_padding");
  // The add broadcasts a [1, 3, 9] part over the batch.
  g.output(pad_axis(g.placeholder("a1", {1, 3, 4}), 2, 0, 9) + pad_axis(b, 2, 4, 9), "broadcast");
  // One part padded on two axes.
  const Tensor e = ds::pad(g.placeholder("e", {2, 3, 3}), {0, 0, 0, 1, 0, 1});
  g.output(e + pad_axis(g.placeholder("f", {2, 1, 4}), 1, 3, 4), "two_axes");
  const Graph out = passes::padded_sum_to_concat(g);
  EXPECT_EQ(count(out, "concat"), 0);
  EXPECT_EQ(ir(out), ir(g));
}

// ---- the pipeline on a bf16 GPT training step

struct GptRun {
  std::vector<double> losses;
  std::map<std::string, int> ops;  // in the compiled graph
};

// Sets DS_DISABLE_PASSES (read when a graph compiles) for its lifetime.
struct DisabledPasses {
  explicit DisabledPasses(const char* names) {
    if (names) setenv("DS_DISABLE_PASSES", names, 1);
  }
  ~DisabledPasses() { unsetenv("DS_DISABLE_PASSES"); }
};

GptRun train_gpt(const std::string& precision, const char* disabled) {
  const DisabledPasses scope(disabled);
  ds::nn::manual_seed(5);
  auto model = ds::models::gpt2({.block_size = 16, .vocab_size = 50, .n_layer = 2, .n_head = 2,
                                 .n_embd = 16});
  ds::optim::AdamW adamw({.lr = 1e-2, .weight_decay = 0.0});
  ds::optim::TrainStep step(*model, adamw, ds::models::lm_loss, {.precision = precision});
  const Tensor seq = ds::cast(
      ds::floor(ds::random_uniform({4, 13}, 8, 0.0, 50.0 - 1e-3)), DType::Int64);
  const Tensor x = ds::slice(seq, 1, 0, 12).contiguous(), y = ds::slice(seq, 1, 1, 13).contiguous();
  GptRun r;
  for (int i = 0; i < 2; ++i) r.losses.push_back(step.step(x, y).loss.item<double>());
  for (const ds::Node& n : step.executable({DType::Int64, {4, 12}}, {DType::Int64, {4, 12}})
                               .graph()
                               .nodes())
    r.ops[n.op->name]++;
  return r;
}

TEST(LowPrecisionLayout, GptTrainingStepsSameLossWithFewerCasts) {
  for (const std::string precision : {"bf16", "fp16"}) {
    GptRun on = train_gpt(precision, nullptr);
    GptRun off = train_gpt(precision, "low_precision_layout,padded_sum_to_concat");
    ASSERT_EQ(on.losses.size(), 2u);
    for (size_t i = 0; i < on.losses.size(); ++i)
      EXPECT_EQ(on.losses[i], off.losses[i]) << precision << " step " << i;
    for (const char* op : {"cast", "slice", "pad", "permute", "reshape", "concat"})
      std::printf("%s %-8s nodes: %3d with the passes, %3d without\n", precision.c_str(), op,
                  on.ops[op], off.ops[op]);
    EXPECT_LT(on.ops["cast"], off.ops["cast"]) << precision;
    EXPECT_EQ(on.ops["pad"], 0) << precision;
  }
}

}  // namespace
