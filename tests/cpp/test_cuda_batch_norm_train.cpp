// The CUDA kernels of batch_norm_train and batch_norm_train_backward against the
// CPU float64 reference: odd extents (packs of one value), 16-byte packs, a
// channel spread over many blocks, one value per channel, one channel, an empty
// batch; float32, bfloat16, float16 and float64. The device code is also compiled
// with NVRTC for sm_90a, which needs no GPU.
#include <cmath>

#include "backends/cuda/batch_norm_train_source.h"
#include "codegen/cuda/emit_cuda.h"
#include "cuda_dnn_check.h"

using namespace cuda_dnn_test;

namespace {

TEST(CudaBatchNormTrainSource, CompilesWithNvrtcForEveryTypeAndPackWidth) {
  if (!ds::cuda::built_with_cuda()) GTEST_SKIP() << "built without CUDA";
  const std::pair<const char*, int> types[] = {
      {"float", 4}, {"double", 8}, {"ds_half", 2}, {"ds_bf16", 2}};
  for (const auto& [type, size] : types)
    for (int vec = 1; vec * size <= 16; vec *= 2)
      ASSERT_NO_THROW(ds::codegen::cuda::nvrtc_compile_log(ds::cuda::batch_norm_train_source(type, vec),
                                                           "sm_90a"))
          << type << " x" << vec;
}

// Runs `op` through its CUDA kernel and the reference (check_op): x without a
// spatial extent ([N, C], [N, C, 1, 1]) takes batch_norm_columns_kernels.cpp's
// kernel, any other x the plane kernel ("nvrtc"); `tols` per output.
void check(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<double>& tols,
           const std::string& what) {
  const Tensor& x = inputs[name == "batch_norm_train" ? 0 : 1];
  bool columns = true;
  for (int d = 2; d < x.ndim(); ++d) columns = columns && x.shape()[d] == 1;
  check_op(name, inputs, {{"eps", 1e-5}}, columns ? "nvrtc-columns" : "nvrtc", tols, what);
}

// {64, 3, 7, 7} and {96, 2, 14, 14}: channels of several chunks read as 2-byte
// and 8-byte bf16 packs (ResNet-50's 7x7 and 14x14 stages).
const Shape kShapes[] = {{3, 5, 7, 9},   {4, 8, 8, 8},   {1, 3, 1, 1}, {5, 1, 6, 6},
                         {32, 4, 64, 64}, {2, 6, 14, 14}, {0, 3, 2, 2}, {7, 6},
                         {64, 3, 7, 7},   {96, 2, 14, 14}};

DType stats_type(DType t) { return t == DType::Float64 ? DType::Float64 : DType::Float32; }

int64_t per_channel(const Shape& s) { return ds::numel(s) / std::max<int64_t>(s[1], 1); }

// float32 statistics: sums of M values; y and dx: the statistics' error, then
// one rounding to the data type.
double value_tol(DType t, int64_t m) {
  return t == DType::Float32 ? sum_tol(t, m) : std::max(tol(t), sum_tol(stats_type(t), m));
}

TEST(CudaBatchNormTrain, ForwardMatchesReference) {
  DS_REQUIRE_GPU();
  for (DType t : kFloats)
    for (const Shape& s : kShapes) {
      const DType st = stats_type(t);
      const Tensor x = uniform(s, 1, t, 1, 4);  // a mean away from 0
      const Tensor w = uniform({s[1]}, 2, st, 0.5, 1.5), b = uniform({s[1]}, 3, st);
      const int64_t m = per_channel(s);
      const double stat = sum_tol(st, m);
      check("batch_norm_train", {x, w, b}, {value_tol(t, m), stat, stat}, "forward" + at(t, s));
      check("batch_norm_train", {x}, {value_tol(t, m), stat, stat}, "forward, no affine" + at(t, s));
    }
}

TEST(CudaBatchNormTrain, BackwardMatchesReference) {
  DS_REQUIRE_GPU();
  for (DType t : kFloats)
    for (const Shape& s : kShapes) {
      const DType st = stats_type(t);
      const Tensor x = uniform(s, 4, t, -1, 3), dy = uniform(s, 5, t);
      const Tensor w = uniform({s[1]}, 6, st, 0.5, 1.5);
      const Tensor mean = uniform({s[1]}, 7, st, 0.9, 1.1), var = uniform({s[1]}, 8, st, 0.2, 1.5);
      const int64_t m = per_channel(s);
      const double stat = sum_tol(st, m);
      check("batch_norm_train_backward", {dy, x, mean, var, w}, {value_tol(t, m), stat, stat},
            "backward" + at(t, s));
      check("batch_norm_train_backward", {dy, x, mean, var}, {value_tol(t, m), stat, stat},
            "backward, no weight" + at(t, s));
    }
}

// The op eagerly on device tensors: the kernels run there and the results stay there.
TEST(CudaBatchNormTrain, EagerOnDeviceTensorsMatchesCpu) {
  DS_REQUIRE_GPU();
  const Tensor x = uniform({8, 16, 28, 28}, 9, DType::BFloat16, -2, 2);
  const Tensor w = uniform({16}, 10, DType::Float32), b = uniform({16}, 11, DType::Float32);
  const ds::Device gpu = ds::Device::cuda();
  const auto on_gpu = ds::apply("batch_norm_train", {x.to(gpu), w.to(gpu), b.to(gpu)});
  const auto on_cpu = ds::apply("batch_norm_train", {x, w, b});
  ASSERT_EQ(on_gpu[0].device(), gpu);
  const double m = 8 * 28 * 28;
  expect_close(on_gpu[0].to(ds::Device::cpu()), on_cpu[0], tol(DType::BFloat16), "y");
  expect_close(on_gpu[1].to(ds::Device::cpu()), on_cpu[1], sum_tol(DType::Float32, m), "mean");
  expect_close(on_gpu[2].to(ds::Device::cpu()), on_cpu[2], sum_tol(DType::Float32, m), "var");
}

}  // namespace
