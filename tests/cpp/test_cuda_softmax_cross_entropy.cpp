// The CUDA kernels of softmax_cross_entropy and its backward against the CPU
// float64 reference: a warp per row (short rows, a partial last block) and a block
// per row (odd lengths whose rows start off 16-byte boundaries, GPT-2's 50257
// classes), ignored rows, label smoothing, int32/int64 targets, every float type;
// out-of-range targets; the bf16 gradient equal to the float32 one rounded (what
// the cross_entropy_low_precision rewrite relies on), the loss equal up to rounding. The device code is also
// compiled with NVRTC for sm_90a, which needs no GPU.
#include <cmath>
#include <tuple>

#include "backends/cuda/softmax_cross_entropy_source.h"
#include "codegen/cuda/emit_cuda.h"
#include "cuda_dnn_check.h"
#include "ir/ops/softmax_cross_entropy.h"

using namespace cuda_dnn_test;

namespace {

constexpr int64_t kIgnore = -100;

TEST(CudaSoftmaxCrossEntropySource, CompilesWithNvrtcForSm90a) {
  if (!ds::cuda::built_with_cuda()) GTEST_SKIP() << "built without CUDA";
  // Every logits type with int targets at both group sizes; long long targets once.
  const std::tuple<const char*, const char*, int> cases[] = {
      {"float", "int", 32},      {"float", "int", 256},       {"double", "int", 32},
      {"double", "int", 256},    {"ds_half", "int", 32},      {"ds_half", "int", 256},
      {"ds_bf16", "int", 32},    {"ds_bf16", "int", 256},     {"ds_bf16", "long long", 256}};
  for (const auto& [type, index, tpr] : cases) {
    std::string log;
    ASSERT_NO_THROW(log = ds::codegen::cuda::nvrtc_compile_log(
                        ds::cuda::softmax_cross_entropy_source(type, index, tpr), "sm_90a"))
        << type << " " << index << " tpr " << tpr;
    EXPECT_EQ(log, "") << type << " " << index << " tpr " << tpr;
  }
}

Tensor targets(int64_t rows, int64_t classes, DType type) {
  std::vector<double> t(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    t[r] = r % 4 == 3 ? static_cast<double>(kIgnore) : static_cast<double>((r * 131 + 7) % classes);
  return Tensor::from_vector(t, {rows}).to(type);
}

AttrMap attrs(double ls) { return {{"ignore_index", kIgnore}, {"label_smoothing", ls}}; }

// Runs `name` through its CUDA kernel and its reference on the same inputs (the
// GPU outputs start as NaN); returns the GPU outputs, on the CPU.
std::vector<Tensor> check(const std::string& name, const std::vector<Tensor>& inputs, double ls,
                          double t, const std::string& what) {
  const ds::OpDef& op = ds::get_op(name);
  const AttrMap a = ds::complete_attrs(op, attrs(ls), name);
  std::vector<ds::TensorType> types;
  for (const Tensor& in : inputs) types.push_back({in.dtype(), in.shape()});
  const ds::OpContext ctx{op, a, types, what};
  const auto out_types = op.infer(ctx);
  std::vector<Tensor> want, got;
  for (const auto& o : out_types) want.push_back(Tensor::empty(o.shape, o.dtype));
  op.reference(ds::KernelCall{ctx, inputs, want});
  const ds::KernelEntry& k = ds::select_kernel(ctx, ds::DeviceKind::CUDA);
  EXPECT_EQ(k.impl, "nvrtc") << what;
  const ds::Device gpu = ds::Device::cuda();
  std::vector<Tensor> in_gpu;
  for (const Tensor& in : inputs) in_gpu.push_back(in.to(gpu));
  for (const auto& o : out_types) got.push_back(Tensor::full(o.shape, NAN, o.dtype).to(gpu));
  k.fn(ds::KernelCall{ctx, in_gpu, got});
  for (Tensor& g : got) g = g.to(ds::Device::cpu());
  for (size_t i = 0; i < got.size(); ++i)
    expect_close(got[i], want[i], t, what + " output " + std::to_string(i));
  return got;
}

// float32 row statistics with the fast exponential: a few 1e-6 relative.
double stat_tol(DType t) { return t == DType::Float64 ? 1e-12 : 2e-5; }
double grad_tol(DType t) { return t == DType::Float32 ? 2e-5 : tol(t); }

TEST(CudaSoftmaxCrossEntropy, KernelsMatchTheReference) {
  DS_REQUIRE_GPU();
  const Shape shapes[] = {{7, 1}, {13, 10}, {9, 100}, {5, 1001}, {3, 3001}, {2, 50257}, {0, 10}};
  uint64_t seed = 3;
  for (DType type : kFloats)
    for (DType index : {DType::Int32, DType::Int64})
      for (const Shape& s : shapes)
        for (double ls : {0.0, 0.1}) {
          const std::string what = at(type, s) + " " + ds::dtype_name(index) +
                                   " ls=" + std::to_string(ls);
          const Tensor x = ds::random_uniform(s, ++seed, -6, 6, type);
          const Tensor t = targets(s[0], s[1], index);
          const auto fwd = check("softmax_cross_entropy", {x, t}, ls, stat_tol(type), what);
          const DType stat = ds::ops::cross_entropy_stat_type(type);
          const Tensor d = ds::random_uniform({s[0]}, ++seed, -1, 1, stat);
          check("softmax_cross_entropy_backward", {x, t, fwd[1], d}, ls, grad_tol(type), what);
        }
}

TEST(CudaSoftmaxCrossEntropy, Bf16GradientIsTheFloat32GradientRounded) {
  DS_REQUIRE_GPU();
  const ds::Device gpu = ds::Device::cuda();
  for (int64_t classes : {10, 50257}) {
    const Tensor x = ds::random_uniform({6, classes}, 11, -8, 8, DType::BFloat16).to(gpu);
    const Tensor t = targets(6, classes, DType::Int64).to(gpu);
    const Tensor x32 = ds::cast(x, DType::Float32);
    const auto narrow = ds::softmax_cross_entropy(x, t, kIgnore, 0.1);
    const auto wide = ds::softmax_cross_entropy(x32, t, kIgnore, 0.1);
    const Tensor d = ds::random_uniform({6}, 12, -1, 1, DType::Float32).to(gpu);
    const Tensor g16 = ds::apply1("softmax_cross_entropy_backward", {x, t, wide.lse, d}, attrs(0.1));
    const Tensor g32 = ds::apply1("softmax_cross_entropy_backward", {x32, t, wide.lse, d}, attrs(0.1));
    const Tensor a = g16.to(ds::Device::cpu()), b = ds::cast(g32, DType::BFloat16).to(ds::Device::cpu());
    for (int64_t i = 0; i < a.numel(); ++i)
      ASSERT_EQ(ds::element_as_double(a, i), ds::element_as_double(b, i)) << classes << " at " << i;
    // The forward's row sums add 8 bf16 or 4 float32 values a pack: the same up to
    // float32 rounding, not bit for bit.
    const Tensor ln = narrow.loss.to(ds::Device::cpu()), lw = wide.loss.to(ds::Device::cpu());
    for (int64_t i = 0; i < 6; ++i)
      ASSERT_NEAR(ds::element_as_double(ln, i), ds::element_as_double(lw, i),
                  1e-6 * (1 + std::abs(ds::element_as_double(lw, i))))
          << classes << " row " << i;
  }
}

TEST(CudaSoftmaxCrossEntropy, OutOfRangeTargetNamesRowAndValue) {
  DS_REQUIRE_GPU();
  const ds::Device gpu = ds::Device::cuda();
  for (int64_t classes : {10, 3001}) {
    const Tensor x = ds::random_uniform({4, classes}, 13, -1, 1, DType::Float32).to(gpu);
    const Tensor bad =
        Tensor::from_vector(std::vector<double>{1, kIgnore, static_cast<double>(classes), -1}, {4})
            .to(DType::Int32)
            .to(gpu);
    try {
      ds::softmax_cross_entropy(x, bad, kIgnore, 0.0).loss.to(ds::Device::cpu());
      ADD_FAILURE() << "target " << classes << " of " << classes << " classes was accepted";
    } catch (const ds::ValueError& e) {
      const std::string want = "target " + std::to_string(classes) + " at row 2 is out of range";
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
}

}  // namespace
