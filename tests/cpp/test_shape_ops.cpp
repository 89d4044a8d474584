// Shape, indexing and creation ops: values against direct float64 loops,
// gradients against central differences, and error messages.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "ds/autodiff.h"
#include "shape_test_util.h"

namespace ds {
namespace {

using shape_test::expect_error;
using shape_test::expect_values;
using shape_test::gradcheck;
using shape_test::random_tensor;
using shape_test::values;

const DType kDataTypes[] = {DType::Float32, DType::Float64, DType::Int32, DType::Int64};

// Element (row-major index) of a shape.
int64_t flat(const Shape& s, const std::vector<int64_t>& idx) {
  int64_t f = 0;
  for (size_t d = 0; d < s.size(); ++d) f = f * s[d] + idx[d];
  return f;
}
std::vector<int64_t> unflat(const Shape& s, int64_t f) {
  std::vector<int64_t> idx(s.size());
  for (int d = static_cast<int>(s.size()) - 1; d >= 0; --d) {
    idx[d] = f % s[d];
    f /= s[d];
  }
  return idx;
}

Tensor index_tensor(const std::vector<int64_t>& v, const Shape& shape, DType t = DType::Int64) {
  return Tensor::from_vector(v, shape).to(t);
}

TEST(ShapeOps, FlattenAndSqueezeKeepValues) {
  std::mt19937 rng(1);
  for (DType t : kDataTypes) {
    Tensor x = random_tensor({2, 3, 1, 5}, t, rng);
    Tensor f = flatten(x);
    EXPECT_EQ(f.shape(), (Shape{2, 15}));
    EXPECT_EQ(f.dtype(), t);
    expect_values(f, values(x));
    EXPECT_EQ(flatten(x, 0, -1).shape(), (Shape{30}));
    EXPECT_EQ(flatten(x, 1, 2).shape(), (Shape{2, 3, 5}));
    EXPECT_EQ(squeeze(x).shape(), (Shape{2, 3, 5}));
    EXPECT_EQ(squeeze(x, {-2}).shape(), (Shape{2, 3, 5}));
    expect_values(squeeze(x), values(x));
  }
  EXPECT_EQ(flatten(Tensor::zeros({0, 4, 2})).shape(), (Shape{0, 8}));
  EXPECT_EQ(squeeze(Tensor::zeros({1, 1})).shape(), (Shape{}));
}

TEST(ShapeOps, FlattenKeepsSymbolicBatch) {
  Graph g;
  Tensor x = g.placeholder("x", {dyn, 1, 28, 28});
  EXPECT_EQ(flatten(x).shape(), (Shape{dyn, 784}));
  EXPECT_EQ(squeeze(x, {1}).shape(), (Shape{dyn, 28, 28}));
  EXPECT_EQ(concat({x, x}, 1).shape(), (Shape{dyn, 2, 28, 28}));
  EXPECT_EQ(concat({x, x}, 0).shape(), (Shape{dyn, 1, 28, 28}));
}

TEST(ShapeOps, SqueezeRejectsNonUnitAxis) {
  expect_error<ShapeError>(
      [] {
        squeeze(Tensor::zeros({2, 3}), {1});
      },
      {"squeeze", "axis 1", "[2, 3]", "extent is 3"});
  expect_error<ValueError>(
      [] {
        flatten(Tensor::zeros({2, 3, 4}), 2, 1);
      },
      {"flatten", "start_axis 2"});
}

TEST(ShapeOps, ConcatMatchesLoops) {
  std::mt19937 rng(2);
  for (DType t : kDataTypes) {
    for (int axis : {0, 1, -1}) {
      Shape sa = {3, 4, 5}, sb = {3, 4, 5};
      const int ax = axis < 0 ? axis + 3 : axis;
      sa[ax] = 2;
      sb[ax] = ax == 1 ? 0 : 7;  // a zero-extent part too
      Tensor a = random_tensor(sa, t, rng), b = random_tensor(sb, t, rng);
      Tensor c = concat({a, b}, axis);
      Shape sc = sa;
      sc[ax] = sa[ax] + sb[ax];
      ASSERT_EQ(c.shape(), sc);
      std::vector<double> want(static_cast<size_t>(numel(sc)));
      auto av = values(a), bv = values(b);
      for (int64_t i = 0; i < numel(sc); ++i) {
        auto idx = unflat(sc, i);
        if (idx[ax] < sa[ax]) {
          want[i] = av[flat(sa, idx)];
        } else {
          idx[ax] -= sa[ax];
          want[i] = bv[flat(sb, idx)];
        }
      }
      expect_values(c, want);
    }
  }
}

TEST(ShapeOps, ConcatPromotesAndChecksShapes) {
  Tensor a = Tensor::full({2}, 3, DType::Int32);
  Tensor b = Tensor::full({1}, 0.5, DType::Float32);
  Tensor c = concat({a, b});
  EXPECT_EQ(c.dtype(), DType::Float32);
  expect_values(c, {3, 3, 0.5});
  expect_error<ShapeError>(
      [] {
        concat({Tensor::zeros({2, 3}), Tensor::zeros({2, 4})}, 0);
      },
      {"concat", "input 1", "[2, 4]", "axis 1"});
  expect_error<ShapeError>(
      [] {
        concat({Tensor::zeros({2, 3}), Tensor::zeros({3})}, 0);
      },
      {"concat", "rank"});
}

TEST(ShapeOps, StackAndSplitRoundTrip) {
  std::mt19937 rng(3);
  for (DType t : kDataTypes) {
    Tensor a = random_tensor({3, 5}, t, rng), b = random_tensor({3, 5}, t, rng);
    for (int axis : {0, 1, 2, -1}) {
      Tensor s = stack({a, b}, axis);
      Shape want = {3, 5};
      const int ax = axis < 0 ? 2 : axis;
      want.insert(want.begin() + ax, 2);
      ASSERT_EQ(s.shape(), want);
      auto parts = split(s, {1, 1}, axis);
      ASSERT_EQ(parts.size(), 2u);
      expect_values(parts[0], values(a));
      expect_values(parts[1], values(b));
    }
    Tensor x = random_tensor({4, 9}, t, rng);
    auto parts = split(x, {2, 0, 7}, 1);
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_EQ(parts[1].shape(), (Shape{4, 0}));
    expect_values(concat(parts, 1), values(x));
  }
  expect_error<ShapeError>(
      [] {
        split(Tensor::zeros({5}), {2, 2});
      },
      {"split", "add up to 4", "extent 5"});
  expect_error<ShapeError>(
      [] {
        stack({Tensor::zeros({2}), Tensor::zeros({3})});
      },
      {"stack", "input 1", "[3]"});
}

TEST(ShapeOps, TrilTriuMatchLoops) {
  std::mt19937 rng(4);
  for (DType t : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::Bool}) {
    for (int64_t k : {-2, -1, 0, 1, 3}) {
      Tensor x = random_tensor({2, 4, 5}, t, rng);
      auto xv = values(x);
      std::vector<double> lo(xv.size()), up(xv.size());
      for (size_t f = 0; f < xv.size(); ++f) {
        const int64_t j = f % 5, i = (f / 5) % 4;
        lo[f] = j - i <= k ? xv[f] : 0;
        up[f] = j - i >= k ? xv[f] : 0;
      }
      expect_values(tril(x, k), lo);
      expect_values(triu(x, k), up);
    }
  }
  expect_error<ShapeError>([] { tril(Tensor::zeros({3})); }, {"tril", "rank >= 2", "[3]"});
}

std::string kernel_impl(const std::string& op, const std::vector<Tensor>& in,
                        const AttrMap& attrs) {
  const OpDef& def = get_op(op);
  AttrMap full = complete_attrs(def, attrs, "");
  std::vector<TensorType> types;
  for (const Tensor& t : in) types.push_back({t.dtype(), t.shape()});
  return select_kernel(OpContext{def, full, types, ""}, DeviceKind::CPU).impl;
}

TEST(ShapeOps, FastKernelsMatchReference) {
  std::mt19937 rng(10);
  auto same = [](const std::vector<Tensor>& fast, const std::vector<Tensor>& ref,
                 const std::string& what) {
    ASSERT_EQ(fast.size(), ref.size()) << what;
    for (size_t i = 0; i < fast.size(); ++i) {
      ASSERT_EQ(fast[i].shape(), ref[i].shape()) << what;
      ASSERT_EQ(fast[i].dtype(), ref[i].dtype()) << what;
      EXPECT_EQ(std::memcmp(fast[i].raw_data(), ref[i].raw_data(), fast[i].nbytes()), 0) << what;
    }
  };
  for (DType t : {DType::Float32, DType::Float64, DType::Int64, DType::Float16, DType::Bool}) {
    for (int axis : {0, 1, 2}) {
      std::vector<Tensor> parts;
      for (int64_t n : {3, 0, 17, 1}) {
        Shape s = {5, 6, 70};
        s[axis] = n;
        parts.push_back(random_tensor(s, t, rng));
      }
      const AttrMap a = {{"axis", int64_t{axis}}};
      ASSERT_EQ(kernel_impl("concat", parts, a), "memcpy");
      same(apply("concat", parts, a), shape_test::run_reference("concat", parts, a), "concat");
      Tensor x = apply1("concat", parts, a);
      const AttrMap sa = {{"axis", int64_t{axis}}, {"sizes", std::vector<int64_t>{3, 0, 17, 1}}};
      same(apply("split", {x}, sa), shape_test::run_reference("split", {x}, sa), "split");
      std::vector<Tensor> equal = {random_tensor({4, 9, 33}, t, rng),
                                   random_tensor({4, 9, 33}, t, rng)};
      same(apply("stack", equal, a), shape_test::run_reference("stack", equal, a), "stack");
    }
    Tensor m = random_tensor({3, 37, 41}, t, rng);
    for (int64_t k : {-50, -3, 0, 5, 60}) {
      for (const char* op : {"tril", "triu"}) {
        ASSERT_EQ(kernel_impl(op, {m}, {{"k", k}}), "memcpy");
        same(apply(op, {m}, {{"k", k}}), shape_test::run_reference(op, {m}, {{"k", k}}), op);
      }
    }
  }
  // Mixed dtypes are converted by the reference kernel.
  std::vector<Tensor> mixed = {Tensor::zeros({2}, DType::Int32), Tensor::zeros({2})};
  EXPECT_EQ(kernel_impl("concat", mixed, {}), "reference");
}

TEST(ShapeOps, CompiledGraphWithSymbolicBatchMatchesEager) {
  Graph g;
  Tensor x = g.placeholder("x", {dyn, 6}, DType::Float32);
  Tensor idx = g.placeholder("idx", {dyn, 3}, DType::Int64);
  auto parts = split(x, {2, 4}, 1);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].shape(), (Shape{dyn, 4}));
  Tensor joined = concat({parts[1], parts[0]}, 1);
  Tensor picked = take_along_axis(joined, idx, 1);
  g.output(stack({picked, tril(picked)}, 0), "y");
  Executable exe = compile(g, "cpu");
  std::mt19937 rng(12);
  for (int64_t batch : {1, 5}) {
    Tensor xv = random_tensor({batch, 6}, DType::Float32, rng);
    std::vector<int64_t> iv(static_cast<size_t>(batch * 3));
    for (size_t i = 0; i < iv.size(); ++i) iv[i] = static_cast<int64_t>(i % 6) - 2;
    Tensor iv_t = index_tensor(iv, {batch, 3});
    Tensor got = exe.run(std::vector<Tensor>{xv, iv_t})[0];
    auto eager_parts = split(xv, {2, 4}, 1);
    Tensor eager = take_along_axis(concat({eager_parts[1], eager_parts[0]}, 1), iv_t, 1);
    Tensor want = stack({eager, tril(eager)}, 0);
    ASSERT_EQ(got.shape(), (Shape{2, batch, 3}));
    expect_values(got, values(want));
  }
}

TEST(ShapeOps, GraphGradientThroughSplitWithUnusedPartAndSymbolicBatch) {
  Graph g;
  Tensor x = g.placeholder("x", {dyn, 6}, DType::Float64);
  Tensor w = g.placeholder("w", {5, 3}, DType::Float64);
  Tensor ids = g.placeholder("ids", {dyn}, DType::Int64);
  auto parts = split(x, {2, 3, 1}, 1);
  Tensor e = embedding(ids, w);  // [batch, 3]
  Tensor loss = sum(mul(mul(parts[0], parts[0]), scalar_like(1.0, x))) + sum(mul(e, parts[1]));
  auto grads = grad(g, loss, {x, w});
  g.output(grads[0], "dx");
  g.output(grads[1], "dw");
  Executable exe = compile(g, "cpu");
  std::mt19937 rng(13);
  for (int64_t batch : {1, 4}) {
    Tensor xv = random_tensor({batch, 6}, DType::Float64, rng);
    Tensor wv = random_tensor({5, 3}, DType::Float64, rng);
    std::vector<int64_t> iv;
    for (int64_t b = 0; b < batch; ++b) iv.push_back((3 * b + 1) % 5);
    auto out = exe.run(std::vector<Tensor>{xv, wv, index_tensor(iv, {batch})});
    auto xs = values(xv), ws = values(wv);
    std::vector<double> dx(xs.size(), 0.0), dw(ws.size(), 0.0);
    for (int64_t b = 0; b < batch; ++b) {
      for (int j = 0; j < 2; ++j) dx[b * 6 + j] = 2 * xs[b * 6 + j];
      for (int j = 0; j < 3; ++j) {
        dx[b * 6 + 2 + j] = ws[iv[b] * 3 + j];
        dw[iv[b] * 3 + j] += xs[b * 6 + 2 + j];
      }
    }
    expect_values(out[0], dx, 1e-12, "dx");
    expect_values(out[1], dw, 1e-12, "dw");
  }
}

TEST(ShapeOps, Gradients) {
  std::mt19937 rng(5);
  auto r = [&](const Shape& s) { return random_tensor(s, DType::Float64, rng); };
  gradcheck("flatten", {r({2, 3, 4})}, {}, {0});
  gradcheck("squeeze", {r({2, 1, 3})}, {}, {0});
  gradcheck("concat", {r({2, 3}), r({2, 1}), r({2, 2})}, {{"axis", int64_t{1}}}, {0, 1, 2});
  gradcheck("stack", {r({2, 3}), r({2, 3})}, {{"axis", int64_t{1}}}, {0, 1});
  gradcheck("split", {r({5, 2})}, {{"sizes", std::vector<int64_t>{1, 3, 1}}}, {0});
  gradcheck("tril", {r({3, 4})}, {{"k", int64_t{0}}}, {0});
  gradcheck("triu", {r({2, 3, 3})}, {{"k", int64_t{1}}}, {0});
}

TEST(ShapeOps, SplitGradientWithUnusedPart) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {4});
  Tensor g0 = Tensor::from_vector(std::vector<double>{10, 20}, {2});
  auto grads =
      shape_test::vjp("split", {x}, {{"sizes", std::vector<int64_t>{2, 2}}}, {g0, Tensor()});
  expect_values(grads[0], {10, 20, 0, 0});
}

// ---- indexing

TEST(ShapeIndex, TakeAlongAxisMatchesLoops) {
  std::mt19937 rng(6);
  for (DType t : kDataTypes) {
    for (DType it : {DType::Int32, DType::Int64}) {
      for (int axis : {0, 1, 2}) {
        const Shape xs = {3, 4, 5};
        Shape is = xs;
        is[axis] = 6;
        Tensor x = random_tensor(xs, t, rng);
        std::uniform_int_distribution<int64_t> pick(-xs[axis], xs[axis] - 1);
        std::vector<int64_t> iv(static_cast<size_t>(numel(is)));
        for (auto& v : iv) v = pick(rng);
        Tensor idx = index_tensor(iv, is, it);
        Tensor y = take_along_axis(x, idx, axis);
        ASSERT_EQ(y.shape(), is);
        auto xv = values(x);
        std::vector<double> want(iv.size());
        for (size_t f = 0; f < iv.size(); ++f) {
          auto c = unflat(is, static_cast<int64_t>(f));
          c[axis] = iv[f] < 0 ? iv[f] + xs[axis] : iv[f];
          want[f] = xv[flat(xs, c)];
        }
        expect_values(y, want);
        expect_values(
            shape_test::run_reference("take_along_axis", {x, idx}, {{"axis", int64_t{axis}}})[0],
            want);
      }
    }
  }
}

TEST(ShapeIndex, IndexSelectAndEmbeddingMatchLoops) {
  std::mt19937 rng(7);
  for (DType t : kDataTypes) {
    Tensor x = random_tensor({4, 6, 3}, t, rng);
    auto xv = values(x);
    Tensor idx = index_tensor({5, 0, -1, 2, 5}, {5});
    Tensor y = index_select(x, 1, idx);
    ASSERT_EQ(y.shape(), (Shape{4, 5, 3}));
    std::vector<double> want;
    for (int64_t o = 0; o < 4; ++o)
      for (int64_t j : {5, 0, 5, 2, 5})
        for (int64_t i = 0; i < 3; ++i) want.push_back(xv[(o * 6 + j) * 3 + i]);
    expect_values(y, want);

    Tensor w = random_tensor({7, 3}, t, rng);
    auto wv = values(w);
    Tensor ids = index_tensor({6, 0, 3, 3, 1, 2}, {2, 3}, DType::Int32);
    Tensor e = embedding(ids, w);
    ASSERT_EQ(e.shape(), (Shape{2, 3, 3}));
    std::vector<double> ewant;
    for (int64_t j : {6, 0, 3, 3, 1, 2})
      for (int64_t i = 0; i < 3; ++i) ewant.push_back(wv[j * 3 + i]);
    expect_values(e, ewant);
    expect_values(shape_test::run_reference("embedding", {ids, w})[0], ewant);
  }
  EXPECT_EQ(embedding(Tensor::zeros({0}, DType::Int64), Tensor::zeros({4, 2})).shape(),
            (Shape{0, 2}));
}

TEST(ShapeIndex, ScatterAddsAccumulateDuplicates) {
  Tensor idx = index_tensor({1, 1, 0, 3}, {4});
  Tensor upd = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 10, 20, 30, 40}, {2, 4});
  Tensor out = apply1("index_add", {idx, upd}, {{"axis", int64_t{1}}, {"size", int64_t{5}}});
  expect_values(out, {3, 3, 0, 4, 0, 30, 30, 0, 40, 0});

  Tensor idx2 = index_tensor({2, 2, 0, 1, 1, 1}, {2, 3});
  Tensor upd2 = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor s =
      apply1("scatter_add_along_axis", {idx2, upd2}, {{"axis", int64_t{1}}, {"size", int64_t{3}}});
  expect_values(s, {3, 0, 3, 0, 15, 0});
  expect_values(shape_test::run_reference("scatter_add_along_axis", {idx2, upd2},
                                          {{"axis", int64_t{1}}, {"size", int64_t{3}}})[0],
                {3, 0, 3, 0, 15, 0});
}

TEST(ShapeIndex, FastKernelsMatchReference) {
  std::mt19937 rng(9);
  auto impl = [](const std::string& op, const std::vector<Tensor>& in, const AttrMap& attrs) {
    const OpDef& def = get_op(op);
    AttrMap full = complete_attrs(def, attrs, "");
    std::vector<TensorType> types;
    for (const Tensor& t : in) types.push_back({t.dtype(), t.shape()});
    return select_kernel(OpContext{def, full, types, ""}, DeviceKind::CPU).impl;
  };
  auto check = [&](const std::string& op, const std::vector<Tensor>& in, const AttrMap& attrs,
                   const std::string& want_impl, double tol) {
    ASSERT_EQ(impl(op, in, attrs), want_impl) << op;
    Tensor fast = apply1(op, in, attrs);
    Tensor ref = shape_test::run_reference(op, in, attrs)[0];
    ASSERT_EQ(fast.shape(), ref.shape()) << op;
    ASSERT_EQ(fast.dtype(), ref.dtype()) << op;
    expect_values(fast, values(ref), tol, op + " " + dtype_name(in[0].dtype()));
  };
  auto indices = [&](const Shape& s, int64_t extent, bool negative, DType t) {
    std::uniform_int_distribution<int64_t> pick(negative ? -extent : 0, extent - 1);
    std::vector<int64_t> v(static_cast<size_t>(numel(s)));
    for (auto& x : v) x = pick(rng);
    return index_tensor(v, s, t);
  };
  for (DType it : {DType::Int32, DType::Int64}) {
    for (DType t : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::Float16,
                    DType::Bool, DType::UInt8}) {
      Tensor x = random_tensor({7, 300, 5}, t, rng, t == DType::UInt8 ? 0 : -2, 2);
      check("take_along_axis", {x, indices({7, 41, 5}, 300, true, it)}, {{"axis", int64_t{1}}},
            "gather", 0.0);
      check("take_along_axis", {x, indices({7, 300, 9}, 5, true, it)}, {{"axis", int64_t{-1}}},
            "gather", 0.0);
      check("index_select", {x, indices({513}, 300, true, it)}, {{"axis", int64_t{1}}}, "gather",
            0.0);
      check("index_select", {x, indices({0}, 7, true, it)}, {{"axis", int64_t{0}}}, "gather", 0.0);
      check("embedding", {indices({33, 17}, 7, false, it), x}, {}, "gather", 0.0);
    }
    for (DType t : {DType::Float32, DType::Float64, DType::Int32, DType::Int64}) {
      const double tol = t == DType::Float32 ? 1e-5 : (t == DType::Float64 ? 1e-13 : 0.0);
      Tensor upd = random_tensor({6, 700, 3}, t, rng);
      check("scatter_add_along_axis", {indices({6, 700, 3}, 50, true, it), upd},
            {{"axis", int64_t{1}}, {"size", int64_t{50}}}, "scatter", tol);
      check("scatter_add_along_axis", {indices({6, 700, 3}, 4, true, it), upd},
            {{"axis", int64_t{2}}, {"size", int64_t{4}}}, "scatter", tol);
      check("index_add", {indices({700}, 90, true, it), upd},
            {{"axis", int64_t{1}}, {"size", int64_t{90}}}, "scatter", tol);
      check("index_add", {indices({6}, 2, false, it), upd},
            {{"axis", int64_t{0}}, {"size", int64_t{2}}}, "scatter", tol);
    }
  }
}

TEST(ShapeIndex, OutOfRangeIndicesNameOpIndexAndExtent) {
  Tensor x = Tensor::zeros({3, 4});
  expect_error<ValueError>(
      [&] {
        take_along_axis(x, index_tensor({0, 4, 1}, {3, 1}), 1);
      },
      {"take_along_axis", "index 4", "axis 1", "extent 4"});
  expect_error<ValueError>([&] { index_select(x, 0, index_tensor({-4}, {1})); },
                           {"index_select", "index -4", "axis 0", "extent 3"});
  expect_error<ValueError>(
      [&] {
        embedding(index_tensor({0, -1}, {2}), x);
      },
      {"embedding", "index -1", "extent 3", "0 <= index"});
  expect_error<ValueError>(
      [&] {
        apply1("index_add", {index_tensor({7}, {1}), Tensor::zeros({1, 2})},
               {{"axis", int64_t{0}}, {"size", int64_t{3}}});
      },
      {"index_add", "index 7", "extent 3"});
  expect_error<ValueError>(
      [&] {
        one_hot(index_tensor({0, 5}, {2}), 5);
      },
      {"one_hot", "index 5", "num_classes 5"});
  expect_error<TypeError>(
      [&] {
        take_along_axis(x, Tensor::zeros({3, 1}), 1);
      },
      {"take_along_axis", "indices must be an integer tensor", "float32"});
  expect_error<ShapeError>(
      [&] {
        take_along_axis(x, index_tensor({0, 0}, {1, 2}), 1);
      },
      {"take_along_axis", "differ on axis 0"});
  expect_error<ShapeError>(
      [&] {
        index_select(x, 0, index_tensor({0, 0}, {1, 2}));
      },
      {"index_select", "1-D", "[1, 2]"});
}

TEST(ShapeIndex, Gradients) {
  std::mt19937 rng(8);
  auto r = [&](const Shape& s) { return random_tensor(s, DType::Float64, rng); };
  Tensor gidx = index_tensor({0, 2, 2, -1, 1, 0}, {2, 3});
  gradcheck("take_along_axis", {r({2, 4}), gidx}, {{"axis", int64_t{1}}}, {0});
  gradcheck("take_along_axis", {r({3, 3}), index_tensor({0, 2, 2, 1, 1, 0}, {2, 3})},
            {{"axis", int64_t{0}}}, {0});
  gradcheck("scatter_add_along_axis", {gidx, r({2, 3})},
            {{"axis", int64_t{1}}, {"size", int64_t{4}}}, {1});
  Tensor sel = index_tensor({3, 0, 3, -2}, {4});
  gradcheck("index_select", {r({2, 5, 2}), sel}, {{"axis", int64_t{1}}}, {0});
  gradcheck("index_add", {sel, r({2, 4})}, {{"axis", int64_t{1}}, {"size", int64_t{5}}}, {1});
  gradcheck("embedding", {index_tensor({4, 1, 1, 0, 4, 2}, {3, 2}), r({5, 3})}, {}, {1});
}

// ---- creation

TEST(ShapeCreation, ArangeLikeNumpy) {
  Tensor a = arange(0, 1, 0.1, DType::Float64);
  ASSERT_EQ(a.shape(), (Shape{10}));
  for (int i = 0; i < 10; ++i) EXPECT_DOUBLE_EQ(a.data<double>()[i], i * 0.1);
  Tensor b = arange(5, -1, -2, DType::Int32);
  expect_values(b, {5, 3, 1});
  EXPECT_EQ(arange(3, 3).shape(), (Shape{0}));
  EXPECT_EQ(arange(3, 0).shape(), (Shape{0}));
  expect_values(arange(0, 5, 1, DType::Int64), {0, 1, 2, 3, 4});
  expect_error<ValueError>([] { arange(0, 1, 0); }, {"arange", "step", "non-zero"});
}

TEST(ShapeCreation, FullZerosOnesOneHot) {
  for (DType t : {DType::Float32, DType::Float64, DType::Int32, DType::Int64, DType::Bool,
                  DType::Float16, DType::BFloat16}) {
    Tensor f = full({2, 3}, 1.5 * (t != DType::Bool), t);
    EXPECT_EQ(f.dtype(), t);
    const double want = t == DType::Bool ? 0.0 : (is_floating(t) ? 1.5 : 1.0);
    expect_values(f, std::vector<double>(6, want));
    expect_values(zeros({4}, t), std::vector<double>(4, 0.0));
    expect_values(ones({0, 2}, t), {});
    expect_values(ones({2}, t), {1, 1});
  }
  Tensor oh = one_hot(index_tensor({2, 0, 1, 2}, {2, 2}, DType::Int32), 3, DType::Int64);
  EXPECT_EQ(oh.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(oh.dtype(), DType::Int64);
  expect_values(oh, {0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1});
  expect_error<ShapeError>([] { full({2, -3}, 1.0); }, {"full", "non-negative"});
  expect_error<ValueError>([] { one_hot(index_tensor({0}, {1}), 0); },
                           {"one_hot", "num_classes must be positive"});
}

}  // namespace
}  // namespace ds
