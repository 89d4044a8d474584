// conv2d, conv_transpose2d and pooling: values against float64 loops written
// here, the fast (float32) kernels against the reference kernels, the backward
// ops (through each op's VJP) against finite differences, and bad-input messages.
#include <thread>

#include "op_check.h"

namespace ds {
namespace {

using test::random_tensor;
using test::rel_diff;
using test::values;

struct ConvCase {
  Shape x, w;
  Pair stride, padding, dilation;
  int64_t groups;
};

const std::vector<ConvCase> kConvCases = {
    {{2, 3, 7, 6}, {4, 3, 3, 3}, {1}, {0}, {1}, 1},
    {{1, 4, 9, 9}, {6, 2, 3, 3}, {2}, {1}, {1}, 2},
    {{2, 3, 8, 7}, {5, 3, 3, 2}, {1, 2}, {2, 1}, {2, 1}, 1},
    {{1, 6, 5, 5}, {6, 1, 3, 3}, {1}, {1}, {1}, 6},
    {{3, 5, 4, 4}, {7, 5, 1, 1}, {1}, {0}, {1}, 1},
    {{1, 2, 3, 3}, {3, 2, 5, 5}, {1}, {1}, {1}, 1},
    {{1, 1, 1, 1}, {1, 1, 1, 1}, {1}, {0}, {1}, 1},
    {{2, 4, 11, 10}, {8, 4, 3, 3}, {3, 2}, {0, 1}, {1, 2}, 1},
    {{2, 16, 9, 8}, {8, 16, 3, 3}, {1}, {1}, {1}, 1},   // blocked layouts in the fast kernels
    {{1, 16, 7, 7}, {16, 8, 3, 3}, {2}, {1}, {2}, 2},
};

Pair two(const Pair& p) { return p.size() == 2 ? p : Pair{p[0], p[0]}; }

// Direct convolution, written out.
std::vector<double> conv_expected(const Tensor& x, const Tensor& w, const Tensor& bias,
                                  const ConvCase& c, Shape* out) {
  const Pair s = two(c.stride), p = two(c.padding), d = two(c.dilation);
  const int64_t n = x.dim(0), ch = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t o = w.dim(0), kh = w.dim(2), kw = w.dim(3), cpg = ch / c.groups;
  const int64_t oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0] + 1;
  const int64_t ow = (wd + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1] + 1;
  *out = {n, o, oh, ow};
  const auto xv = values(x), wv = values(w);
  std::vector<double> y;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double acc = bias.defined() ? values(bias)[oc] : 0.0;
          const int64_t grp = oc / (o / c.groups);
          for (int64_t ic = 0; ic < cpg; ++ic)
            for (int64_t u = 0; u < kh; ++u)
              for (int64_t v = 0; v < kw; ++v) {
                const int64_t yy = i * s[0] - p[0] + u * d[0], xx = j * s[1] - p[1] + v * d[1];
                if (yy < 0 || yy >= h || xx < 0 || xx >= wd) continue;
                acc += xv[((b * ch + grp * cpg + ic) * h + yy) * wd + xx] *
                       wv[((oc * cpg + ic) * kh + u) * kw + v];
              }
          y.push_back(acc);
        }
  return y;
}

AttrMap conv_attrs(const ConvCase& c) {
  return {{"stride", c.stride}, {"padding", c.padding}, {"dilation", c.dilation}, {"groups", c.groups}};
}

TEST(ConvConv2d, MatchesFloat64Loops) {
  uint32_t seed = 1;
  for (const auto& c : kConvCases)
    for (bool with_bias : {false, true}) {
      const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.w, seed++);
      const Tensor b = with_bias ? random_tensor({c.w[0]}, seed++) : Tensor();
      Shape out;
      const auto want = conv_expected(x, w, b, c, &out);
      const Tensor y = conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups);
      ASSERT_EQ(y.shape(), out);
      EXPECT_LT(rel_diff(y, want), 1e-12) << shape_str(c.x) << " * " << shape_str(c.w);
      const Tensor b32 = with_bias ? b.to(DType::Float32) : Tensor();
      const Tensor y32 = conv2d(x.to(DType::Float32), w.to(DType::Float32), b32, c.stride,
                                c.padding, c.dilation, c.groups);
      EXPECT_LT(rel_diff(y32, want), 1e-4) << shape_str(c.x) << " * " << shape_str(c.w);
    }
}

TEST(ConvConv2d, FastKernelsMatchReference) {
  uint32_t seed = 50;
  for (const auto& c : kConvCases) {
    const Tensor x = random_tensor(c.x, seed++, DType::Float32);
    const Tensor w = random_tensor(c.w, seed++, DType::Float32);
    const Tensor b = random_tensor({c.w[0]}, seed++, DType::Float32);
    const AttrMap attrs = conv_attrs(c);
    if (test::built_with("oneDNN")) {
      // First layers (3x3, stride 1, <= 4 channels) have their own kernel.
      const std::string impl = test::kernel_impl("conv2d", {x, w, b}, attrs);
      EXPECT_TRUE(impl == "onednn" || impl == "direct-3x3-few-channels") << impl;
    }
    const Tensor y = apply1("conv2d", {x, w, b}, attrs);
    EXPECT_LT(rel_diff(y, values(test::run_reference("conv2d", {x, w, b}, attrs))), 1e-5);

    const Tensor gy = random_tensor(y.shape(), seed++, DType::Float32);
    AttrMap in_attrs = attrs, w_attrs = attrs;
    in_attrs["input_size"] = Pair{c.x[2], c.x[3]};
    w_attrs["kernel_size"] = Pair{c.w[2], c.w[3]};
    const Tensor gx = apply1("conv2d_backward_input", {gy, w}, in_attrs);
    EXPECT_EQ(gx.shape(), c.x);
    EXPECT_LT(rel_diff(gx, values(test::run_reference("conv2d_backward_input", {gy, w}, in_attrs))),
              1e-5);
    const Tensor gw = apply1("conv2d_backward_weight", {x, gy}, w_attrs);
    EXPECT_EQ(gw.shape(), c.w);
    EXPECT_LT(rel_diff(gw, values(test::run_reference("conv2d_backward_weight", {x, gy}, w_attrs))),
              1e-5);
  }
}

// The first-layer backward-weights kernel (3x3, stride 1, up to 4 input channels):
// plane sizes that are, and are not, a multiple of its 8-pixel vectors, with and
// without padding, one image and many; and the shapes it must leave to oneDNN.
TEST(ConvConv2d, FewChannelBackwardWeightMatchesReference) {
  const std::vector<ConvCase> cases = {
      {{128, 1, 28, 28}, {32, 1, 3, 3}, {1}, {1}, {1}, 1},  // Fashion-MNIST's first layer
      {{1, 1, 3, 3}, {1, 1, 3, 3}, {1}, {0}, {1}, 1},       // one pixel: all tail
      {{3, 3, 9, 7}, {5, 3, 3, 3}, {1}, {1}, {1}, 1},
      {{2, 4, 6, 10}, {3, 4, 3, 3}, {1}, {2}, {1}, 1},
      {{2, 2, 13, 11}, {7, 2, 3, 3}, {1}, {1, 0}, {1}, 1},
  };
  uint32_t seed = 700;
  for (const auto& c : cases) {
    const Tensor x = random_tensor(c.x, seed++, DType::Float32);
    Shape y_shape;
    conv_expected(x, random_tensor(c.w, seed, DType::Float64), Tensor{}, c, &y_shape);
    const Tensor gy = random_tensor(y_shape, seed++, DType::Float32);
    AttrMap w_attrs = conv_attrs(c);
    w_attrs["kernel_size"] = Pair{3, 3};
    EXPECT_EQ(test::kernel_impl("conv2d_backward_weight", {x, gy}, w_attrs),
              "direct-3x3-few-channels");
    const Tensor gw = apply1("conv2d_backward_weight", {x, gy}, w_attrs);
    EXPECT_EQ(gw.shape(), c.w);
    // The batch of 128 sums 100K products of random signs in float32:
    // the result is ~300x smaller than the sum of magnitudes.
    const double tolerance = c.x[0] == 128 ? 1e-4 : 1e-5;
    EXPECT_LT(rel_diff(gw, values(test::run_reference("conv2d_backward_weight", {x, gy}, w_attrs))),
              tolerance)
        << shape_str(c.x);
  }
  const ConvCase strided{{1, 1, 9, 9}, {2, 1, 3, 3}, {2}, {1}, {1}, 1};
  const ConvCase wide{{1, 8, 6, 6}, {2, 8, 3, 3}, {1}, {1}, {1}, 1};
  for (const auto& c : {strided, wide}) {
    const Tensor x = random_tensor(c.x, seed++, DType::Float32);
    Shape y_shape;
    conv_expected(x, random_tensor(c.w, seed, DType::Float64), Tensor{}, c, &y_shape);
    AttrMap w_attrs = conv_attrs(c);
    w_attrs["kernel_size"] = Pair{3, 3};
    EXPECT_NE(test::kernel_impl("conv2d_backward_weight",
                                {x, random_tensor(y_shape, seed++, DType::Float32)}, w_attrs),
              "direct-3x3-few-channels");
  }
}

TEST(ConvConv2d, GradientsMatchFiniteDifferences) {
  uint32_t seed = 100;
  for (const auto& c : kConvCases) {
    if (numel(c.x) > 300) continue;
    test::expect_vjp_matches_fd(
        "conv2d", {random_tensor(c.x, seed++), random_tensor(c.w, seed++), random_tensor({c.w[0]}, seed++)},
        conv_attrs(c));
  }
}

TEST(ConvConv2d, BadInputsNameTheOpAndShapes) {
  test::expect_error<ShapeError>(
      [] { conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({4, 1, 3, 3}), {}, {1}, {0}, {1}, 2); },
      {"conv2d", "[1, 3, 5, 5]", "not divisible by groups=2"});
  test::expect_error<ShapeError>(
      [] { conv2d(Tensor::zeros({1, 3, 2, 2}), Tensor::zeros({4, 3, 3, 3})); },
      {"conv2d", "kernel 3x3", "padded input 2x2"});
  test::expect_error<ShapeError>([] { conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({4, 2, 3, 3})); },
                                 {"conv2d", "[4, 2, 3, 3]", "[1, 3, 5, 5]"});
  test::expect_error<ShapeError>([] { conv2d(Tensor::zeros({3, 5, 5}), Tensor::zeros({4, 3, 3, 3})); },
                                 {"conv2d", "4-D", "[3, 5, 5]"});
  test::expect_error<ValueError>(
      [] { conv2d(Tensor::zeros({1, 3, 5, 5}), Tensor::zeros({4, 3, 3, 3}), {}, {1, 2, 3}); },
      {"conv2d", "stride", "1 or 2 values"});
  test::expect_error<ShapeError>(
      [] {
        apply1("conv2d_backward_input", {Tensor::zeros({1, 4, 2, 2}), Tensor::zeros({4, 3, 3, 3})},
               {{"input_size", Pair{5, 5}}});
      },
      {"conv2d_backward_input", "grad_y [1, 4, 2, 2]", "[1, 4, 3, 3]"});
}

TEST(ConvConv2d, EmptyBatchGivesEmptyResults) {
  for (DType t : {DType::Float32, DType::Float64}) {
    const Tensor x = Tensor::zeros({0, 3, 5, 5}, t), w = Tensor::zeros({4, 3, 3, 3}, t);
    EXPECT_EQ(conv2d(x, w, {}, {1}, {1}).shape(), (Shape{0, 4, 5, 5}));
    EXPECT_EQ(max_pool2d(x, {2}).shape(), (Shape{0, 3, 2, 2}));
    EXPECT_EQ(avg_pool2d(x, {3}, {1}).shape(), (Shape{0, 3, 3, 3}));
    const AttrMap attrs{{"input_size", Pair{5, 5}}, {"padding", Pair{1}}};
    EXPECT_EQ(apply1("conv2d_backward_input", {Tensor::zeros({0, 4, 5, 5}, t), w}, attrs).shape(),
              (Shape{0, 3, 5, 5}));
    const Tensor gw = apply1("conv2d_backward_weight", {x, Tensor::zeros({0, 4, 5, 5}, t)},
                             {{"kernel_size", Pair{3}}, {"padding", Pair{1}}});
    EXPECT_EQ(values(gw), std::vector<double>(4 * 3 * 3 * 3, 0.0));
  }
}

TEST(ConvConv2d, ConcurrentCallsMatchSerialOnes) {
  // Several threads share cached primitives (each call brings its own scratchpad).
  std::vector<Tensor> xs, ws, want;
  for (uint32_t i = 0; i < 4; ++i) {
    xs.push_back(random_tensor({2, 16, 12, 12}, 700 + i, DType::Float32));
    ws.push_back(random_tensor({8 + 8 * (i % 2), 16, 3, 3}, 710 + i, DType::Float32));
    want.push_back(conv2d(xs[i], ws[i], {}, {1}, {1}));
  }
  std::vector<double> worst(4, 0.0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        const size_t i = (t + rep) % 4;
        const Tensor y = max_pool2d(conv2d(xs[i], ws[i], {}, {1}, {1}), {2});
        worst[t] = std::max(worst[t], rel_diff(y, values(max_pool2d(want[i], {2}))));
      }
    });
  for (auto& th : threads) th.join();
  for (double w : worst) EXPECT_LT(w, 1e-6);
}

// conv_transpose2d, written out as a scatter of each input element.
std::vector<double> conv_transpose_expected(const Tensor& x, const Tensor& w, const Pair& s,
                                            const Pair& p, const Pair& op, const Pair& d,
                                            int64_t groups, Shape* out) {
  const int64_t n = x.dim(0), ci = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t opg = w.dim(1), co = opg * groups, kh = w.dim(2), kw = w.dim(3), cpg = ci / groups;
  const int64_t oh = (h - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + op[0] + 1;
  const int64_t ow = (wd - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + op[1] + 1;
  *out = {n, co, oh, ow};
  const auto xv = values(x), wv = values(w);
  std::vector<double> y(static_cast<size_t>(numel(*out)), 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t c = 0; c < ci; ++c)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < wd; ++j)
          for (int64_t oc = 0; oc < opg; ++oc)
            for (int64_t u = 0; u < kh; ++u)
              for (int64_t v = 0; v < kw; ++v) {
                const int64_t yy = i * s[0] - p[0] + u * d[0], xx = j * s[1] - p[1] + v * d[1];
                if (yy < 0 || yy >= oh || xx < 0 || xx >= ow) continue;
                const int64_t occ = (c / cpg) * opg + oc;
                y[((b * co + occ) * oh + yy) * ow + xx] +=
                    xv[((b * ci + c) * h + i) * wd + j] * wv[((c * opg + oc) * kh + u) * kw + v];
              }
  return y;
}

TEST(ConvTranspose2d, MatchesFloat64LoopsAndReference) {
  struct Case {
    Shape x, w;
    Pair s, p, op, d;
    int64_t groups;
  };
  const std::vector<Case> cases = {
      {{2, 3, 4, 5}, {3, 2, 3, 3}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 1},
      {{1, 4, 3, 3}, {4, 3, 3, 3}, {2, 2}, {1, 1}, {1, 0}, {1, 1}, 2},
      {{1, 2, 5, 4}, {2, 3, 2, 3}, {2, 3}, {0, 1}, {1, 2}, {2, 1}, 1},
      {{1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 1},
  };
  uint32_t seed = 200;
  for (const auto& c : cases) {
    const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.w, seed++);
    const Tensor b = random_tensor({c.w[1] * c.groups}, seed++);
    Shape out;
    auto want = conv_transpose_expected(x, w, c.s, c.p, c.op, c.d, c.groups, &out);
    const int64_t plane = out[2] * out[3];
    for (size_t i = 0; i < want.size(); ++i) want[i] += values(b)[(i / plane) % out[1]];
    const Tensor y = conv_transpose2d(x, w, b, c.s, c.p, c.op, c.d, c.groups);
    ASSERT_EQ(y.shape(), out);
    EXPECT_LT(rel_diff(y, want), 1e-12);
    const Tensor x32 = x.to(DType::Float32), w32 = w.to(DType::Float32), b32 = b.to(DType::Float32);
    const Tensor y32 = conv_transpose2d(x32, w32, b32, c.s, c.p, c.op, c.d, c.groups);
    EXPECT_LT(rel_diff(y32, want), 1e-4);
    const AttrMap attrs{{"stride", c.s}, {"padding", c.p}, {"output_padding", c.op},
                        {"dilation", c.d}, {"groups", c.groups}};
    EXPECT_LT(rel_diff(y32, values(test::run_reference("conv_transpose2d", {x32, w32, b32}, attrs))),
              1e-5);
    test::expect_vjp_matches_fd("conv_transpose2d", {x, w, b}, attrs);
  }
  test::expect_error<ValueError>(
      [] { conv_transpose2d(Tensor::zeros({1, 2, 3, 3}), Tensor::zeros({2, 2, 3, 3}), {}, {2}, {0}, {2}); },
      {"conv_transpose2d", "output_padding", "stride"});
}

// ---- pooling

struct PoolCase {
  Shape x;
  Pair kernel, stride, padding, dilation;
  bool ceil_mode;
};

const std::vector<PoolCase> kPoolCases = {
    {{2, 3, 6, 6}, {2}, {}, {0}, {1}, false},
    {{1, 2, 7, 5}, {3}, {2}, {1}, {1}, false},
    {{1, 2, 7, 5}, {3}, {2}, {1}, {1}, true},
    {{2, 1, 8, 9}, {3, 2}, {2, 3}, {1, 0}, {1}, true},
    {{1, 3, 9, 9}, {3}, {1}, {1}, {2}, false},
    {{1, 1, 1, 1}, {1}, {}, {0}, {1}, false},
    {{1, 2, 5, 5}, {5}, {}, {2}, {1}, true},
    {{2, 3, 7, 5}, {2}, {}, {0}, {1}, false},  // 2x2 fast path with uncovered last row/column
};

// Output extent of PyTorch's pooling (floor or ceil mode).
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t num = in + 2 * p - d * (k - 1) - 1;
  int64_t o = (ceil_mode ? (num + s - 1) / s : num / s) + 1;
  if (ceil_mode && (o - 1) * s >= in + p) --o;
  return o;
}

// Max or average pooling, written out (PyTorch's divisor rules for the average).
std::vector<double> pool_expected(const Tensor& x, const PoolCase& c, bool is_max,
                                  bool count_include_pad, Shape* out) {
  const Pair k = two(c.kernel), s = c.stride.empty() ? k : two(c.stride), p = two(c.padding);
  const Pair d = is_max ? two(c.dilation) : Pair{1, 1};
  const int64_t h = x.dim(2), w = x.dim(3);
  const int64_t oh = pool_out(h, k[0], s[0], p[0], d[0], c.ceil_mode);
  const int64_t ow = pool_out(w, k[1], s[1], p[1], d[1], c.ceil_mode);
  *out = {x.dim(0), x.dim(1), oh, ow};
  const auto xv = values(x);
  std::vector<double> y;
  for (int64_t nc = 0; nc < x.dim(0) * x.dim(1); ++nc)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        double best = -INFINITY, sum = 0;
        int64_t valid = 0;
        for (int64_t u = 0; u < k[0]; ++u)
          for (int64_t v = 0; v < k[1]; ++v) {
            const int64_t yy = i * s[0] - p[0] + u * d[0], xx = j * s[1] - p[1] + v * d[1];
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
            const double e = xv[(nc * h + yy) * w + xx];
            best = std::max(best, e);
            sum += e;
            ++valid;
          }
        const int64_t y0 = i * s[0] - p[0], x0 = j * s[1] - p[1];
        const int64_t padded = (std::min(y0 + k[0], h + p[0]) - y0) * (std::min(x0 + k[1], w + p[1]) - x0);
        y.push_back(is_max ? best : sum / static_cast<double>(count_include_pad ? padded : valid));
      }
  return y;
}

AttrMap max_attrs(const PoolCase& c) {
  return {{"kernel_size", c.kernel}, {"stride", c.stride}, {"padding", c.padding},
          {"dilation", c.dilation}, {"ceil_mode", c.ceil_mode}};
}

AttrMap avg_attrs(const PoolCase& c, bool include) {
  return {{"kernel_size", c.kernel}, {"stride", c.stride}, {"padding", c.padding},
          {"ceil_mode", c.ceil_mode}, {"count_include_pad", include}};
}

TEST(ConvMaxPool2d, MatchesFloat64LoopsReferenceAndGradients) {
  uint32_t seed = 300;
  for (const auto& c : kPoolCases) {
    const Tensor x = random_tensor(c.x, seed++);
    Shape out;
    const auto want = pool_expected(x, c, true, false, &out);
    const Tensor y = max_pool2d(x, c.kernel, c.stride, c.padding, c.dilation, c.ceil_mode);
    ASSERT_EQ(y.shape(), out) << shape_str(c.x);
    EXPECT_LT(rel_diff(y, want), 1e-12);
    const Tensor x32 = x.to(DType::Float32);
    const AttrMap attrs = max_attrs(c);
    EXPECT_EQ(test::kernel_impl("max_pool2d", {x32}, attrs), "vectorized");
    EXPECT_LT(rel_diff(apply1("max_pool2d", {x32}, attrs), want), 1e-6);
    const Tensor gy = random_tensor(out, seed++, DType::Float32);
    EXPECT_LT(rel_diff(apply1("max_pool2d_backward", {x32, gy}, attrs),
                       values(test::run_reference("max_pool2d_backward", {x32, gy}, attrs))),
              1e-6);
    test::expect_vjp_matches_fd("max_pool2d", {x}, attrs);
  }
}

TEST(ConvMaxPool2d, NaNPropagatesAndTakesTheGradient) {
  // Windows with a NaN give NaN and route the gradient to the (first) NaN, in the
  // fast kernels (2x2 fast path and general path) as in the reference.
  // 46 columns: 2x2 windows 0-15 go through two full 8-wide chunks, 16-22 through
  // a masked partial one.
  for (const AttrMap& attrs : {AttrMap{{"kernel_size", Pair{2}}},
                               AttrMap{{"kernel_size", Pair{3}}, {"stride", Pair{1}}}}) {
    Tensor x = random_tensor({1, 2, 6, 46}, 900, DType::Float32);
    float* px = x.data<float>();
    for (int64_t i = 0; i < x.numel(); i += 3) px[i] = 0.0f;  // ties, as after a ReLU
    for (int64_t i : {7, 8, 36, 40, 77, 115, 300, 301, 339, 360, 407}) px[i] = NAN;
    const Tensor gy = random_tensor(apply1("max_pool2d", {x}, attrs).shape(), 901, DType::Float32);
    for (const auto& [op, in] : {std::pair{std::string("max_pool2d"), std::vector<Tensor>{x}},
                                 std::pair{std::string("max_pool2d_backward"), std::vector<Tensor>{x, gy}}}) {
      const auto fast = values(apply1(op, in, attrs)), ref = values(test::run_reference(op, in, attrs));
      ASSERT_EQ(fast.size(), ref.size());
      int nans = 0;
      for (size_t i = 0; i < fast.size(); ++i) {
        nans += std::isnan(ref[i]);
        // (Overlapping windows sum gradients in float here, in double in the reference.)
        EXPECT_TRUE(std::isnan(ref[i]) ? std::isnan(fast[i])
                                       : std::abs(fast[i] - ref[i]) <= 1e-6 * (1 + std::abs(ref[i])))
            << op << " at " << i << ": " << fast[i] << " vs " << ref[i];
      }
      if (op == "max_pool2d") {
        EXPECT_GT(nans, 0);
      }
    }
  }
}

TEST(ConvAvgPool2d, MatchesFloat64LoopsReferenceAndGradients) {
  uint32_t seed = 400;
  for (const auto& c : kPoolCases) {
    if (c.dilation[0] != 1) continue;  // avg_pool2d has no dilation (like PyTorch)
    for (bool include : {true, false}) {
      const Tensor x = random_tensor(c.x, seed++);
      Shape out;
      const auto want = pool_expected(x, c, false, include, &out);
      const Tensor y = avg_pool2d(x, c.kernel, c.stride, c.padding, c.ceil_mode, include);
      ASSERT_EQ(y.shape(), out) << shape_str(c.x);
      EXPECT_LT(rel_diff(y, want), 1e-12) << shape_str(c.x) << " include_pad=" << include;
      const Tensor x32 = x.to(DType::Float32);
      const AttrMap attrs = avg_attrs(c, include);
      EXPECT_LT(rel_diff(apply1("avg_pool2d", {x32}, attrs), want), 1e-6);
      AttrMap back = attrs;
      back["input_size"] = Pair{c.x[2], c.x[3]};
      const Tensor gy = random_tensor(out, seed++, DType::Float32);
      EXPECT_LT(rel_diff(apply1("avg_pool2d_backward", {gy}, back),
                         values(test::run_reference("avg_pool2d_backward", {gy}, back))),
                1e-6);
      test::expect_vjp_matches_fd("avg_pool2d", {x}, attrs);
    }
  }
}

TEST(ConvAdaptiveAvgPool2d, MatchesFloat64LoopsReferenceAndGradients) {
  const std::vector<std::pair<Shape, Pair>> cases = {
      {{2, 3, 6, 6}, {3, 3}}, {{1, 2, 7, 5}, {3, 2}}, {{1, 1, 4, 4}, {1}}, {{1, 2, 3, 3}, {5, 4}}};
  uint32_t seed = 500;
  for (const auto& [xs, os] : cases) {
    const Tensor x = random_tensor(xs, seed++);
    const Pair o = two(os);
    const auto xv = values(x);
    std::vector<double> want;
    for (int64_t nc = 0; nc < xs[0] * xs[1]; ++nc)
      for (int64_t i = 0; i < o[0]; ++i)
        for (int64_t j = 0; j < o[1]; ++j) {
          const int64_t y0 = i * xs[2] / o[0], y1 = ((i + 1) * xs[2] + o[0] - 1) / o[0];
          const int64_t x0 = j * xs[3] / o[1], x1 = ((j + 1) * xs[3] + o[1] - 1) / o[1];
          double s = 0;
          for (int64_t yy = y0; yy < y1; ++yy)
            for (int64_t xx = x0; xx < x1; ++xx) s += xv[(nc * xs[2] + yy) * xs[3] + xx];
          want.push_back(s / static_cast<double>((y1 - y0) * (x1 - x0)));
        }
    const Tensor y = adaptive_avg_pool2d(x, os);
    ASSERT_EQ(y.shape(), (Shape{xs[0], xs[1], o[0], o[1]}));
    EXPECT_LT(rel_diff(y, want), 1e-12);
    const Tensor x32 = x.to(DType::Float32);
    EXPECT_LT(rel_diff(adaptive_avg_pool2d(x32, os), want), 1e-6);
    const AttrMap back{{"input_size", Pair{xs[2], xs[3]}}};
    const Tensor gy = random_tensor(y.shape(), seed++, DType::Float32);
    EXPECT_LT(rel_diff(apply1("adaptive_avg_pool2d_backward", {gy}, back),
                       values(test::run_reference("adaptive_avg_pool2d_backward", {gy}, back))),
              1e-6);
    test::expect_vjp_matches_fd("adaptive_avg_pool2d", {x}, {{"output_size", os}});
  }
}

TEST(ConvGlobalAvgPool2d, MatchesMeanAndGradients) {
  const Tensor x = random_tensor({2, 3, 5, 4}, 600);
  const auto xv = values(x);
  std::vector<double> want(6, 0.0);
  for (size_t i = 0; i < xv.size(); ++i) want[i / 20] += xv[i] / 20.0;
  const Tensor y = global_avg_pool2d(x);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 1, 1}));
  EXPECT_LT(rel_diff(y, want), 1e-12);
  EXPECT_LT(rel_diff(global_avg_pool2d(x.to(DType::Float32)), want), 1e-6);
  test::expect_vjp_matches_fd("global_avg_pool2d", {x});
}

TEST(ConvPool, BadInputsNameTheOpAndShapes) {
  test::expect_error<ShapeError>([] { max_pool2d(Tensor::zeros({1, 1, 2, 2}), {3}); },
                                 {"max_pool2d", "kernel 3", "padded input 2", "[1, 1, 2, 2]"});
  test::expect_error<ValueError>([] { avg_pool2d(Tensor::zeros({1, 1, 6, 6}), {2}, {}, {2}); },
                                 {"avg_pool2d", "padding", "half the kernel"});
  test::expect_error<ShapeError>([] { max_pool2d(Tensor::zeros({4, 4}), {2}); },
                                 {"max_pool2d", "4-D", "[4, 4]"});
  test::expect_error<ShapeError>(
      [] { apply1("max_pool2d_backward", {Tensor::zeros({1, 1, 4, 4}), Tensor::zeros({1, 1, 3, 3})},
                  {{"kernel_size", Pair{2}}}); },
      {"max_pool2d_backward", "grad_y [1, 1, 3, 3]", "[1, 1, 2, 2]"});
  test::expect_error<TypeError>([] { max_pool2d(Tensor::zeros({1, 1, 4, 4}, DType::Int32), {2}); },
                                {"max_pool2d", "floating"});
}

}  // namespace
}  // namespace ds
