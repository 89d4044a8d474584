// The CUDA kernels of the ResNet/GPT-2 training ops (cuDNN and cuBLASLt
// convolutions, gemm, fused linear, pooling, axis reductions, indexing, batch
// norm) against the CPU float64 reference kernel (cuda_dnn_check.h): fresh random
// inputs, NaN-poisoned outputs, odd shapes and every float dtype.
#include <iostream>
#include <set>

#include "cuda_dnn_check.h"
#include "ir/kernel_inventory.h"

using namespace cuda_dnn_test;

// The ops a ResNet-50 or GPT-2 training step runs (forward, backward through the
// VJPs, optimizer) must have a CUDA kernel; the rest of the registry is listed.
TEST(CudaKernelInventory, TrainingOpsHaveCudaKernels) {
  if (!ds::cuda::built_with_cuda()) GTEST_SKIP() << "built without CUDA";
  std::set<std::string> training = {
      // ResNet-50
      "max_pool2d",
      "max_pool2d_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
      "global_avg_pool2d", "batch_norm", "mean", "var", "sum", "linear", "matmul", "relu",
      "add", "sub", "mul", "div", "rsqrt", "sqrt",
      // GPT-2
      "embedding", "index_add", "layer_norm", "softmax", "log_softmax", "gelu", "one_hot",
      "exp", "neg", "max",
      // the bookkeeping around them: views, broadcasts, masks, casts
      "fused_linear", "gemm", "argmax", "reshape", "flatten", "squeeze", "permute", "broadcast_to", "slice", "concat", "split",
      "cast", "where", "eq", "ne", "full"};
#ifdef DS_HAVE_CUDNN
  training.insert({"conv2d", "conv2d_backward_input", "conv2d_backward_weight", "fused_conv2d"});
#endif
  std::vector<std::string> missing_training, missing_other;
  for (const std::string& name : ds::op_names()) {
    if (!ds::kernel_impls(name, ds::DeviceKind::CUDA).empty()) continue;
    (training.count(name) ? missing_training : missing_other).push_back(name);
  }
  std::string other;
  for (const auto& n : missing_other) other += " " + n;
  std::cout << "ops without a CUDA kernel (" << missing_other.size() << "):" << other << "\n";
  std::string list;
  for (const auto& n : missing_training) list += " " + n;
  EXPECT_TRUE(missing_training.empty()) << "training ops without a CUDA kernel:" << list;
}

namespace {

AttrMap conv_attrs(int64_t stride, int64_t pad, int64_t dil, int64_t groups) {
  return {{"stride", std::vector<int64_t>{stride}},
          {"padding", std::vector<int64_t>{pad}},
          {"dilation", std::vector<int64_t>{dil}},
          {"groups", groups}};
}

struct ConvCase {
  Shape x, w;
  int64_t stride, pad, dil, groups;
};

// ResNet-50's shapes in small: 7x7/2 stem, 3x3, 1x1/2 downsample; odd sizes,
// groups, dilation, an empty batch.
const std::vector<ConvCase> kConvCases = {
    {{2, 3, 23, 21}, {8, 3, 7, 7}, 2, 3, 1, 1},   {{2, 5, 9, 11}, {6, 5, 3, 3}, 1, 1, 1, 1},
    {{3, 16, 8, 7}, {32, 16, 1, 1}, 2, 0, 1, 1},  {{2, 4, 10, 9}, {6, 2, 3, 3}, 1, 2, 2, 2},
    {{1, 8, 13, 7}, {4, 8, 3, 1}, 2, 0, 1, 1},    {{0, 3, 5, 5}, {4, 3, 3, 3}, 1, 1, 1, 1},
    {{2, 24, 24, 23}, {40, 24, 1, 1}, 1, 0, 1, 1},  // 1x1 stride 1, >= 512 pixels: batched GEMM
    {{2, 24, 7, 9}, {40, 24, 1, 1}, 1, 0, 1, 1}};   // 1x1 stride 1 on a small plane: cuDNN

}  // namespace

TEST(CudaDnnConv, ForwardAndBothBackwardsMatchTheReference) {
  DS_REQUIRE_GPU();
#ifndef DS_HAVE_CUDNN
  GTEST_SKIP() << "built without cuDNN: conv2d has no CUDA kernel";
#endif
  uint64_t seed = 7000;
  for (DType t : kFloats)
    for (const ConvCase& c : kConvCases) {
      const std::string what = " x " + ds::shape_str(c.x) + " w " + ds::shape_str(c.w) + at(t, {});
      const AttrMap attrs = conv_attrs(c.stride, c.pad, c.dil, c.groups);
      const Tensor x = uniform(c.x, ++seed, t), w = uniform(c.w, ++seed, t);
      const Tensor bias = uniform({c.w[0]}, ++seed, t);
      const Tensor y = ds::apply1("conv2d", {x, w}, attrs);
      const int64_t taps = c.w[1] * c.w[2] * c.w[3];
      const bool pointwise = c.w[2] == 1 && c.w[3] == 1 && c.stride == 1 && c.pad == 0 &&
                             c.groups == 1 && c.x[2] * c.x[3] >= 512;
      const std::string gemm_or_cudnn = pointwise ? "cublaslt-1x1" : "cudnn";
      check_op("conv2d", {x, w}, attrs, gemm_or_cudnn, sum_tol(t, taps), "conv2d" + what);
      check_op("conv2d", {x, w, bias}, attrs, "cudnn", sum_tol(t, taps), "conv2d bias" + what);
      const Tensor gy = uniform(y.shape(), ++seed, t);
      AttrMap in_attrs = attrs, w_attrs = attrs;
      in_attrs["input_size"] = std::vector<int64_t>{c.x[2], c.x[3]};
      w_attrs["kernel_size"] = std::vector<int64_t>{c.w[2], c.w[3]};
      check_op("conv2d_backward_input", {gy, w}, in_attrs, gemm_or_cudnn,
               sum_tol(t, c.w[0] * c.w[2] * c.w[3]), "conv2d_backward_input" + what);
      check_op("conv2d_backward_weight", {x, gy}, w_attrs, "cudnn",
               sum_tol(t, y.numel() / std::max<int64_t>(c.w[0], 1) * 4),
               "conv2d_backward_weight" + what);
    }
}

TEST(CudaDnnConv, FusedEpiloguesAndTransposeMatchTheReference) {
  DS_REQUIRE_GPU();
#ifndef DS_HAVE_CUDNN
  GTEST_SKIP() << "built without cuDNN: conv2d has no CUDA kernel";
#endif
  uint64_t seed = 8000;
  for (DType t : kFloats) {
    const Tensor x = uniform({2, 8, 11, 9}, ++seed, t), w = uniform({16, 8, 3, 3}, ++seed, t);
    const Tensor bias = uniform({16}, ++seed, t), res = uniform({2, 16, 11, 9}, ++seed, t);
    const double tl = sum_tol(t, 72) * 2;
    for (const char* act : {"relu", "none", "gelu", "silu", "leaky_relu"})
      for (int variant = 0; variant < 3; ++variant) {
        AttrMap attrs = conv_attrs(1, 1, 1, 1);
        attrs["activation"] = std::string(act);
        attrs["alpha"] = 0.1;
        attrs["has_bias"] = variant >= 1;
        attrs["has_residual"] = variant == 2;
        std::vector<Tensor> in = {x, w};
        if (variant >= 1) in.push_back(bias);
        if (variant == 2) in.push_back(res);
        check_op("fused_conv2d", in, attrs, "cudnn", tl,
                 std::string("fused_conv2d ") + act + " variant " + std::to_string(variant) +
                     at(t, {}));
      }
    // conv_transpose2d: stride 2 with output padding, and a bias.
    const Tensor xt = uniform({2, 6, 5, 7}, ++seed, t), wt = uniform({6, 4, 3, 3}, ++seed, t);
    AttrMap tattrs = conv_attrs(2, 1, 1, 1);
    tattrs["output_padding"] = std::vector<int64_t>{1};
    check_op("conv_transpose2d", {xt, wt, uniform({4}, ++seed, t)}, tattrs, "cudnn",
             sum_tol(t, 54), "conv_transpose2d" + at(t, {}));
  }
}

TEST(CudaDnnLinear, FusedLinearEpiloguesMatchTheReference) {
  DS_REQUIRE_GPU();
  uint64_t seed = 8500;
  for (DType t : kFloats) {
    const Tensor x = uniform({3, 7, 40}, ++seed, t), w = uniform({24, 40}, ++seed, t);
    const Tensor bias = uniform({24}, ++seed, t), res = uniform({3, 7, 24}, ++seed, t);
    for (const char* act : {"none", "relu", "gelu_tanh", "gelu", "silu"})
      for (int variant = 0; variant < 3; ++variant) {
        if (t == DType::Float64 && variant >= 1) continue;  // no fp64 bias in cuBLASLt
        const AttrMap attrs = {{"base", std::string("linear")}, {"activation", std::string(act)},
                               {"has_bias", variant >= 1}, {"has_residual", variant == 2}};
        std::vector<Tensor> in = {x, w};
        if (variant >= 1) in.push_back(bias);
        if (variant == 2) in.push_back(res);
        check_op("fused_linear", in, attrs, "cublaslt", sum_tol(t, 40) * 2,
                 std::string("fused_linear ") + act + " variant " + std::to_string(variant) +
                     at(t, {}));
      }
  }
}

TEST(CudaDnnLinear, GemmMatchesTheReference) {
  DS_REQUIRE_GPU();
  uint64_t seed = 8700;
  for (DType t : kFloats)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (const Shape& cs : {Shape{}, Shape{3}, Shape{5, 1}, Shape{5, 3}}) {
          const Tensor a = uniform(ta ? Shape{7, 5} : Shape{5, 7}, ++seed, t);
          const Tensor b = uniform(tb ? Shape{3, 7} : Shape{7, 3}, ++seed, t);
          const AttrMap attrs = {{"alpha", 0.5}, {"beta", 2.0}, {"trans_a", ta}, {"trans_b", tb}};
          const std::string what = std::string("gemm") + (ta ? " ta" : "") + (tb ? " tb" : "") +
                                   " c " + ds::shape_str(cs) + at(t, {});
          check_op("gemm", {a, b, uniform(cs, ++seed, t)}, attrs, "cublaslt", sum_tol(t, 7) * 4,
                   what);
          if (cs.empty()) check_op("gemm", {a, b}, attrs, "cublaslt", sum_tol(t, 7) * 4, what + " no c");
        }
}

// Leading dimensions that are not a multiple of 16 bytes (a 50257-word vocabulary)
// go through padded copies (cublaslt_support.cpp): the output layer of a language
// model and its two gradients, with the bias epilogue.
TEST(CudaDnnLinear, UnalignedLeadingDimensionsMatchTheReference) {
  DS_REQUIRE_GPU();
  uint64_t seed = 8800;
  for (DType t : {DType::Float32, DType::BFloat16, DType::Float16}) {
    const Tensor x = uniform({2, 9, 45}, ++seed, t), w = uniform({1001, 45}, ++seed, t);
    const Tensor bias = uniform({1001}, ++seed, t), dy = uniform({18, 1001}, ++seed, t);
    check_op("linear", {x, w, bias}, {}, "cublaslt", sum_tol(t, 45) * 2, "linear 45->1001" + at(t, {}));
    check_op("matmul", {dy, w}, {}, "cublaslt", sum_tol(t, 1001) * 2, "dy @ w" + at(t, {}));
    // A batch of rows times one matrix runs as one padded product.
    check_op("matmul", {ds::reshape(dy, {2, 9, 1001}), w}, {}, "cublaslt",
             sum_tol(t, 1001) * 2, "dy[2, 9, 1001] @ w" + at(t, {}));
    const AttrMap ta = {{"alpha", 1.0}, {"beta", 0.0}, {"trans_a", true}, {"trans_b", false}};
    check_op("gemm", {dy, ds::reshape(x, {18, 45})}, ta, "cublaslt", sum_tol(t, 18) * 2,
             "dy^T @ x" + at(t, {}));
  }
}

TEST(CudaDnnConv, Tf32ConvolutionIsCloseToFloat32) {
  DS_REQUIRE_GPU();
#ifndef DS_HAVE_CUDNN
  GTEST_SKIP() << "built without cuDNN: conv2d has no CUDA kernel";
#endif
  const Tensor x = uniform({4, 64, 14, 14}, 1, DType::Float32);
  const Tensor w = uniform({64, 64, 3, 3}, 2, DType::Float32);
  ds::cuda::set_allow_tf32(true);
  // TF32 keeps 10 mantissa bits: ~1e-3 relative per product over 576 products.
  check_op("conv2d", {x, w}, conv_attrs(1, 1, 1, 1), "cudnn", 2e-2, "conv2d tf32");
  ds::cuda::set_allow_tf32(false);
}

TEST(CudaDnnPool, PoolingForwardAndBackwardMatchTheReference) {
  DS_REQUIRE_GPU();
  struct PoolCase {
    Shape x;
    int64_t k, s, p, d;
    bool ceil;
  };
  const std::vector<PoolCase> cases = {{{2, 3, 13, 11}, 3, 2, 1, 1, false},  // ResNet stem
                                       {{1, 2, 9, 8}, 2, 2, 0, 1, true},
                                       {{2, 2, 11, 10}, 3, 1, 1, 2, false},
                                       {{1, 1, 1, 1}, 1, 1, 0, 1, false},
                                       {{0, 3, 4, 4}, 2, 2, 0, 1, false}};
  uint64_t seed = 9000;
  for (DType t : kFloats)
    for (const PoolCase& c : cases) {
      const std::string what = at(t, c.x) + " k" + std::to_string(c.k) + " s" +
                               std::to_string(c.s) + " p" + std::to_string(c.p) + " d" +
                               std::to_string(c.d) + (c.ceil ? " ceil" : "");
      const Tensor x = uniform(c.x, ++seed, t);
      const AttrMap max_attrs = {{"kernel_size", std::vector<int64_t>{c.k}},
                                 {"stride", std::vector<int64_t>{c.s}},
                                 {"padding", std::vector<int64_t>{c.p}},
                                 {"dilation", std::vector<int64_t>{c.d}},
                                 {"ceil_mode", c.ceil}};
      const Tensor y = ds::apply1("max_pool2d", {x}, max_attrs);
      check_op("max_pool2d", {x}, max_attrs, "nvrtc", 0, "max_pool2d" + what);
      const Tensor gy = uniform(y.shape(), ++seed, t);
      check_op("max_pool2d_backward", {x, gy}, max_attrs, "nvrtc", tol(t) * 4,
               "max_pool2d_backward" + what);
      if (c.d != 1) continue;  // avg_pool2d has no dilation
      for (bool include_pad : {true, false}) {
        const AttrMap avg_attrs = {{"kernel_size", std::vector<int64_t>{c.k}},
                                   {"stride", std::vector<int64_t>{c.s}},
                                   {"padding", std::vector<int64_t>{c.p}},
                                   {"ceil_mode", c.ceil},
                                   {"count_include_pad", include_pad}};
        const std::string w2 = what + (include_pad ? " include_pad" : "");
        check_op("avg_pool2d", {x}, avg_attrs, "nvrtc", tol(t) * 4, "avg_pool2d" + w2);
        AttrMap back = avg_attrs;
        back["input_size"] = std::vector<int64_t>{c.x[2], c.x[3]};
        check_op("avg_pool2d_backward", {gy}, back, "nvrtc", tol(t) * 4,
                 "avg_pool2d_backward" + w2);
      }
    }
  for (DType t : kFloats)
    for (const auto& [in, out] : std::vector<std::pair<Shape, Shape>>{
             {{2, 3, 10, 7}, {4, 3}}, {{2, 5, 7, 7}, {1, 1}}, {{1, 2, 3, 5}, {6, 7}}}) {
      const std::string what = at(t, in) + " -> " + ds::shape_str(out);
      const Tensor x = uniform(in, ++seed, t);
      const AttrMap attrs = {{"output_size", std::vector<int64_t>(out.begin(), out.end())}};
      check_op("adaptive_avg_pool2d", {x}, attrs, "nvrtc", tol(t) * 4,
               "adaptive_avg_pool2d" + what);
      const Shape ys = {in[0], in[1], out[0], out[1]};
      check_op("adaptive_avg_pool2d_backward", {uniform(ys, ++seed, t)},
               {{"input_size", std::vector<int64_t>{in[2], in[3]}}}, "nvrtc", tol(t) * 4,
               "adaptive_avg_pool2d_backward" + what);
      check_op("global_avg_pool2d", {x}, {}, "nvrtc", sum_tol(t, in[2] * in[3]),
               "global_avg_pool2d" + what);
    }
}

TEST(CudaDnnReduce, ReductionsOverAnyAxesMatchTheReference) {
  DS_REQUIRE_GPU();
  struct RedCase {
    Shape x;
    std::vector<int64_t> axes;
  };
  // Batch-norm statistics {0, 2, 3}, bias gradients {0} (innermost kept: the
  // column kernel), inner runs, all axes, size-1 dims, empty extents.
  const std::vector<RedCase> cases = {
      {{4, 6, 5, 7}, {0, 2, 3}}, {{1000, 37}, {0}},      {{3, 70001}, {0}},
      {{4, 6, 5, 7}, {1, 3}},    {{4, 6, 5, 7}, {0, 1}}, {{5, 1, 9}, {0, 1}},
      {{2, 3, 4}, {}},           {{0, 5}, {0}},          {{7, 3, 300}, {1}},
      {{2, 3, 4, 8}, {0, 2, 3}}, {{3, 5, 16}, {0, 2}}};  // runs of 32 and 16: 16-byte loads
  uint64_t seed = 10000;
  for (DType t : kFloats)
    for (const RedCase& c : cases)
      for (bool keepdims : {false, true}) {
        const std::string what = at(t, c.x) + " axes " + ds::shape_str(c.axes) +
                                 (keepdims ? " keepdims" : "");
        const Tensor x = uniform(c.x, ++seed, t, -2, 2);
        int64_t r = 1;
        for (size_t d = 0; d < c.x.size(); ++d)
          if (c.axes.empty() || std::count(c.axes.begin(), c.axes.end(), static_cast<int64_t>(d)))
            r *= c.x[d];
        const AttrMap attrs = {{"axes", c.axes}, {"keepdims", keepdims}};
        // The row kernels take trailing axes, the axis kernels the rest: either.
        for (const char* op : {"sum", "mean", "max", "min"}) {
          const bool extremum = std::string(op) == "max" || std::string(op) == "min";
          if (extremum && r == 0) continue;  // refused at inference: no value to take
          check_op(op, {x}, attrs, "", extremum ? 0 : sum_tol(t, r), op + what);
        }
        if (r > 0 && c.axes.size() == 1 && !keepdims)
          for (const char* op : {"argmax", "argmin"})
            for (bool keep : {false, true})
              check_op(op, {x}, {{"axis", c.axes[0]}, {"keepdims", keep}}, "nvrtc", 0, op + what);
        check_op("logsumexp", {x}, attrs, "", sum_tol(t, r), "logsumexp" + what);
        for (int64_t ddof : {0, 1}) {
          AttrMap v = attrs;
          v["ddof"] = ddof;
          check_op("var", {x}, v, "nvrtc-axes", sum_tol(t, r) * 4,
                   "var ddof " + std::to_string(ddof) + what);
          check_op("std", {x}, v, "nvrtc-axes", sum_tol(t, r) * 4,
                   "std ddof " + std::to_string(ddof) + what);
        }
      }
}


TEST(CudaDnnReduce, ArgExtremaTakeTheFirstNanLikeTheCpu) {
  DS_REQUIRE_GPU();
  const Tensor x = Tensor::from_vector<float>({1, 3, NAN, 3, NAN, 0, -1, 2, 2, -1, 5, 5}, {3, 4});
  for (const char* op : {"argmax", "argmin"})
    for (int64_t axis : {0, 1, -1})
      check_op(op, {x}, {{"axis", axis}}, "nvrtc", 0, std::string(op) + " axis " + std::to_string(axis));
}

TEST(CudaDnnIndex, GathersAndScatterAddsMatchTheReference) {
  DS_REQUIRE_GPU();
  uint64_t seed = 11000;
  for (DType it : {DType::Int64, DType::Int32})
    for (DType t : kFloats) {
      const std::string what = at(t, {}) + " indices " + ds::dtype_name(it);
      // Embedding rows of 64 (16-byte moves for every dtype) and of 7 (element moves).
      for (int64_t dim : {64, 7}) {
        const Tensor w = uniform({50, dim}, ++seed, t);
        const Tensor idx = indices({3, 5}, ++seed, 0, 50, it);
        check_op("embedding", {idx, w}, {}, "nvrtc", 0, "embedding dim " + std::to_string(dim) + what);
        const Tensor g = uniform({15, dim}, ++seed, t);
        // Its gradient: 15 rows scattered into 50 with repeats.
        check_op("index_add", {ds::reshape(idx, {15}), g},
                 {{"axis", int64_t{0}}, {"size", int64_t{50}}}, "nvrtc", tol(t) * 8,
                 "index_add dim " + std::to_string(dim) + what);
      }
      const Tensor x = uniform({4, 9, 5}, ++seed, t);
      const Tensor sel = indices({6}, ++seed, -9, 9, it);  // negative indices count from the end
      check_op("index_select", {x, sel}, {{"axis", int64_t{1}}}, "nvrtc", 0, "index_select" + what);
      const Tensor along = indices({4, 3, 5}, ++seed, -9, 9, it);
      check_op("take_along_axis", {x, along}, {{"axis", int64_t{1}}}, "nvrtc", 0,
               "take_along_axis" + what);
      check_op("scatter_add_along_axis", {along, uniform({4, 3, 5}, ++seed, t)},
               {{"axis", int64_t{1}}, {"size", int64_t{9}}}, "nvrtc", tol(t) * 4,
               "scatter_add_along_axis" + what);
      check_op("one_hot", {indices({7}, ++seed, 0, 10, it)},
               {{"num_classes", int64_t{10}}, {"dtype", t}}, "nvrtc", 0, "one_hot" + what);
    }
}

TEST(CudaDnnIndex, OutOfRangeIndicesAreReportedLikeOnTheCpu) {
  DS_REQUIRE_GPU();
  ds::Graph g;
  const Tensor idx = g.placeholder("idx", {4}, DType::Int64);
  g.output(ds::embedding(idx, g.placeholder("w", {10, 4}, DType::Float32)), "y");
  const ds::Executable exe = ds::compile(g, "cuda", {.opt_level = 0});
  const Tensor w = uniform({10, 4}, 1, DType::Float32);
  try {
    (void)exe.run(std::vector<Tensor>{Tensor::from_vector<int64_t>({1, 2, 10, 3}, {4}), w});
    FAIL() << "embedding took index 10 of 10 rows";
  } catch (const ds::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("index 10 (at position 2"), std::string::npos) << e.what();
  }
  // The device keeps working after the report (a fresh executable: this one's next
  // run would be captured into a CUDA graph, which is not what this test is about).
  const Tensor y = ds::compile(g, "cuda", {.opt_level = 0})
                       .run(std::vector<Tensor>{Tensor::from_vector<int64_t>({9, 0, 0, 9}, {4}), w})[0];
  EXPECT_EQ(ds::element_as_double(y, 0), ds::element_as_double(w, 36));
  ds::Graph h;
  h.output(ds::one_hot(h.placeholder("i", {2}, DType::Int64), 3), "y");
  EXPECT_THROW((void)ds::compile(h, "cuda", {.opt_level = 0})
                   .run(std::vector<Tensor>{Tensor::from_vector<int64_t>({0, -1}, {2})}),
               ds::ValueError);
}

TEST(CudaDnnNorm, BatchNormWithStatisticsMatchesTheReference) {
  DS_REQUIRE_GPU();
  uint64_t seed = 12000;
  for (DType t : kFloats)
    for (const Shape& s : {Shape{2, 5, 7, 3}, Shape{9, 4}, Shape{1, 3, 1, 1}}) {
      const int64_t c = s[1];
      const Tensor x = uniform(s, ++seed, t, -3, 3), mean = uniform({c}, ++seed, t);
      const Tensor var = uniform({c}, ++seed, t, 0.2, 2), w = uniform({c}, ++seed, t, 0.5, 1.5);
      const Tensor b = uniform({c}, ++seed, t);
      check_op("batch_norm", {x, mean, var}, {{"eps", 1e-5}}, "nvrtc", tol(t) * 4,
               "batch_norm" + at(t, s));
      check_op("batch_norm", {x, mean, var, w, b}, {{"eps", 1e-3}}, "nvrtc", tol(t) * 4,
               "batch_norm affine" + at(t, s));
    }
}

