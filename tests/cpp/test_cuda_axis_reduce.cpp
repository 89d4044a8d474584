// The CUDA axis reductions (backends/cuda/axis_reduce_kernels.cpp) against the
// float64 reference kernel: random shapes and axis sets (rows, columns, the
// per-channel NCHW pattern, all axes, size-0/1 extents, keepdims), the training
// shapes in small, special values, sums into a wider type (`dtype`: bfloat16
// gradients into float32 bias gradients), and one NVRTC compile check that runs
// where no GPU is present.
#include <random>

#include "backends/cuda/axis_reduce_source.h"
#include "codegen/cuda/emit_cuda.h"
#include "cuda_dnn_check.h"

using namespace cuda_dnn_test;

namespace {

using Axes = std::vector<int64_t>;

// Values per output; `axes` may count from the end.
int64_t reduced_count(const Shape& s, const Axes& axes) {
  const auto rank = static_cast<int64_t>(s.size());
  int64_t r = 1;
  for (int64_t d = 0; d < rank; ++d)
    if (axes.empty() || std::count(axes.begin(), axes.end(), d) ||
        std::count(axes.begin(), axes.end(), d - rank))
      r *= s[static_cast<size_t>(d)];
  return r;
}

// Every reduction the axis kernels serve (the row kernels take some trailing-axis
// cases: any CUDA kernel is accepted for those ops), on one input.
void check_all(const Tensor& x, const Axes& axes, bool keepdims, const std::string& what) {
  const int64_t r = reduced_count(x.shape(), axes);
  const DType t = x.dtype();
  const AttrMap attrs = {{"axes", axes}, {"keepdims", keepdims}};
  for (const char* op : {"sum", "mean", "max", "min", "logsumexp"}) {
    const bool extremum = std::string(op) == "max" || std::string(op) == "min";
    if (extremum && r == 0) continue;  // refused at inference: no value to take
    check_op(op, {x}, attrs, "", extremum ? 0 : sum_tol(t, r), op + what);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (int64_t ddof : {0, 1}) {
    AttrMap v = attrs;
    v["ddof"] = ddof;
    for (const char* op : {"var", "std"}) {
      check_op(op, {x}, v, "nvrtc-axes", sum_tol(t, r) * 4,
               op + (" ddof " + std::to_string(ddof)) + what);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

std::string describe(const Tensor& x, const Axes& axes, bool keepdims) {
  return at(x.dtype(), x.shape()) + " axes " + ds::shape_str(axes) + (keepdims ? " keepdims" : "");
}

}  // namespace

// Without a GPU the device code must still compile for the H200 (sm_90a).
TEST(CudaAxisReduce, SourceCompilesWithNvrtcForSm90a) {
  if (!ds::cuda::built_with_cuda()) GTEST_SKIP() << "built without CUDA: no NVRTC";
  struct Module {
    std::string in, out, fold;
  };
  std::vector<Module> modules;
  for (const char* op : ds::cuda::kAxisReduceOps) modules.push_back({"float", "float", op});
  // 16-byte packs of 2 and 8 values, and the float64 accumulators.
  modules.push_back({"ds_bf16", "ds_bf16", "ds_var"});
  modules.push_back({"double", "double", "ds_lse"});
  // Sums into a wider type: float accumulators, or double ones for a double result.
  modules.push_back({"ds_bf16", "float", "ds_sum"});
  modules.push_back({"ds_half", "float", "ds_sum"});
  modules.push_back({"ds_bf16", "double", "ds_sum"});
  modules.push_back({"float", "double", "ds_sum"});
  for (const Module& m : modules) {
    const std::string what = m.in + " -> " + m.out + " " + m.fold;
    std::string log;
    ASSERT_NO_THROW(log = ds::codegen::cuda::nvrtc_compile_log(
                        ds::cuda::axis_reduce_source(m.in, m.out, m.fold), "sm_90a"))
        << what;
    EXPECT_EQ(log, "") << what << ": NVRTC warnings";
  }
  ASSERT_NO_THROW(
      ds::codegen::cuda::nvrtc_compile_log(ds::cuda::arg_extremum_source("ds_bf16"), "sm_90a"));
}

TEST(CudaAxisReduce, RandomShapesAndAxisSetsMatchTheReference) {
  DS_REQUIRE_GPU();
  std::mt19937_64 rng(20261130);
  const int64_t sizes[] = {0, 1, 1, 2, 3, 4, 5, 7, 8, 16, 17, 33, 64, 96};
  for (int c = 0; c < 40; ++c) {
    const int rank = 1 + static_cast<int>(rng() % 5);
    Shape s;
    int64_t n = 1;
    for (int d = 0; d < rank; ++d) {
      int64_t e = sizes[rng() % std::size(sizes)];
      if (n * std::max<int64_t>(e, 1) > (1 << 16)) e = 1;
      s.push_back(e);
      n *= std::max<int64_t>(e, 1);
    }
    Axes axes;
    for (int d = 0; d < rank; ++d)
      if (rng() % 2) axes.push_back(rng() % 4 == 0 ? d - rank : d);  // negative axes too
    const bool keepdims = rng() % 2;
    const DType t = kFloats[c % 4];
    const Tensor x = uniform(s, 20000 + c, t, -2, 2);
    check_all(x, axes, keepdims, describe(x, axes, keepdims));
    if (HasFatalFailure()) return;
  }
}

// The training shapes of the profile, with a smaller batch: NCHW batch-norm
// statistics over {0, 2, 3} (runs of 196, 49 and 3136: 16-, 8-byte and element
// loads; with a batch of 32 or more, 7x7 and bf16 14x14 reduce the batch as columns),
// GPT-2 bias gradients over {0, 1} (a column reduction), and long single outputs
// (many slices merged by the second kernel).
TEST(CudaAxisReduce, TrainingShapesMatchTheReference) {
  DS_REQUIRE_GPU();
  struct Case {
    Shape x;
    Axes axes;
  };
  const std::vector<Case> cases = {{{4, 1024, 14, 14}, {0, 2, 3}},
                                   {{4, 2048, 7, 7}, {0, 2, 3}},
                                   {{2, 64, 56, 56}, {0, 2, 3}},
                                   {{2, 64, 768}, {0, 1}},
                                   {{3, 5, 2304}, {0, 1}},
                                   {{1 << 20}, {}},
                                   {{65536, 8}, {0}},
                                   {{3, 1000, 40}, {1}},
                                   {{2, 3, 4, 5, 6, 7}, {0, 2, 4}},
                                   {{7, 3, 5, 9, 2}, {1, 3}},
                                   {{40, 96, 7, 7}, {0, 2, 3}},
                                   {{32, 24, 14, 14}, {0, 2, 3}}};
  uint64_t seed = 21000;
  for (DType t : kFloats)
    for (const Case& c : cases)
      for (bool keepdims : {false, true}) {
        const Tensor x = uniform(c.x, ++seed, t, -2, 2);
        check_all(x, c.axes, keepdims, describe(x, c.axes, keepdims));
        if (HasFatalFailure()) return;
      }
}

// Whole-tensor sums and a few long rows: these kernels split each row over many
// blocks (the row kernels give a row one block).
TEST(CudaAxisReduce, FewLongRowsTakeTheSplitKernel) {
  DS_REQUIRE_GPU();
  uint64_t seed = 21500;
  for (DType t : {DType::Float32, DType::BFloat16})
    for (const auto& [s, axes] : std::vector<std::pair<Shape, Axes>>{
             {{3, 40000}, {1}}, {{5, 7, 4099}, {1, 2}}, {{1 << 20}, {}}}) {
      const Tensor x = uniform(s, ++seed, t, -2, 2);
      const int64_t r = reduced_count(s, axes);
      for (const char* op : {"sum", "mean", "max", "logsumexp"})
        check_op(op, {x}, {{"axes", axes}}, "nvrtc-axes",
                 std::string(op) == "max" ? 0 : sum_tol(t, r), op + describe(x, axes, false));
    }
}

// Kernel choice needs no GPU: a sum into a wider type takes the axis kernel on
// trailing axes too, where a sum of the input's own type keeps the row kernels.
TEST(CudaAxisReduce, SumIntoAWiderTypeTakesTheAxisKernelOnAnyAxes) {
  if (!ds::cuda::built_with_cuda()) GTEST_SKIP() << "built without CUDA: no CUDA kernels";
  const ds::OpDef& op = ds::get_op("sum");
  for (const Axes& axes : {Axes{2}, Axes{1, 2}, Axes{0, 1}, Axes{}})
    for (const char* dtype : {"float32", ""}) {
      const AttrMap full =
          ds::complete_attrs(op, {{"axes", axes}, {"dtype", std::string(dtype)}}, "sum");
      const ds::OpContext ctx{op, full, {{DType::BFloat16, {4, 6, 64}}}, ""};
      const bool rows = std::string(dtype).empty() && (axes.empty() || axes.back() == 2);
      EXPECT_EQ(ds::select_kernel(ctx, ds::DeviceKind::CUDA).impl, rows ? "nvrtc" : "nvrtc-axes")
          << "dtype '" << dtype << "' axes " << ds::shape_str(axes);
    }
}

// sum(x, dtype=...) into a wider type: every axis set takes this kernel (the row
// kernels would read such an x one value at a time), with 16-byte loads of x
// where the runs allow; float32 results accumulate in float, float64 ones in double.
TEST(CudaAxisReduce, SumIntoAWiderTypeMatchesTheReference) {
  DS_REQUIRE_GPU();
  struct Case {
    Shape x;
    Axes axes;
  };
  const std::vector<Case> cases = {{{2, 64, 768}, {0, 1}},   // GPT-2 bias gradients
                                   {{3, 5, 2304}, {0, 1}},   // qkv: 16-byte columns
                                   {{3, 1000, 40}, {2}},     // trailing: rows
                                   {{5, 7, 4099}, {1, 2}},   // odd rows: single loads
                                   {{1 << 20}, {}},          // one long row, split
                                   {{4, 96, 14, 14}, {0, 2, 3}},
                                   {{7, 3, 5}, {1}},
                                   {{0, 8}, {0}},
                                   {{3, 0}, {1}},
                                   {{1}, {0}}};
  struct Pair {
    DType in, out;
  };
  const Pair pairs[] = {{DType::BFloat16, DType::Float32},
                        {DType::Float16, DType::Float32},
                        {DType::BFloat16, DType::Float64},
                        {DType::Float32, DType::Float64}};
  uint64_t seed = 21700;
  for (const Pair& p : pairs)
    for (const Case& c : cases)
      for (bool keepdims : {false, true}) {
        const Tensor x = uniform(c.x, ++seed, p.in, -2, 2);
        const AttrMap attrs = {
            {"axes", c.axes}, {"keepdims", keepdims}, {"dtype", std::string(ds::dtype_name(p.out))}};
        check_op("sum", {x}, attrs, "nvrtc-axes", sum_tol(p.out, reduced_count(c.x, c.axes)),
                 "sum into " + std::string(ds::dtype_name(p.out)) + describe(x, c.axes, keepdims));
        if (HasFatalFailure()) return;
      }
}

// Values far from zero: var's per-thread shift keeps float32 sums of squares exact enough.
TEST(CudaAxisReduce, VarianceOfOffsetValuesMatchesTheReference) {
  DS_REQUIRE_GPU();
  uint64_t seed = 22000;
  for (DType t : {DType::Float32, DType::Float64})
    for (const auto& [s, axes] : std::vector<std::pair<Shape, Axes>>{
             {{8, 32, 14, 14}, {0, 2, 3}}, {{512, 96}, {0}}, {{3, 50000}, {}}}) {
      const Tensor x = uniform(s, ++seed, t, 999, 1001);
      const int64_t r = reduced_count(s, axes);
      for (const char* op : {"var", "std"})
        check_op(op, {x}, {{"axes", axes}, {"ddof", int64_t{1}}}, "nvrtc-axes", sum_tol(t, r) * 4,
                 op + describe(x, axes, false));
    }
}

// NaN wins max/min/sum/var; infinities give the reference's results (logsumexp of
// all -inf is -inf, of +inf is +inf).
TEST(CudaAxisReduce, SpecialValuesFollowTheReference) {
  DS_REQUIRE_GPU();
  std::vector<float> v(3 * 4 * 8);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 7) - 3.0f;
  v[5] = NAN;                                            // output (c=0) of axes {0, 2}
  v[8 * 1 + 2] = INFINITY;                               // c=1: +inf
  for (int i = 0; i < 8; ++i) v[8 * 2 + i] = -INFINITY;  // c=2 of batch 0: -inf ...
  v[32 + 8 * 3 + 1] = -INFINITY;
  const Tensor x = Tensor::from_vector<float>(v, {3, 4, 8});
  for (const Axes& axes : {Axes{0, 2}, Axes{0}, Axes{2}, Axes{}})
    for (DType t : {DType::Float32, DType::BFloat16})
      check_all(ds::cast(x, t), axes, false, describe(ds::cast(x, t), axes, false));
  // A channel of only -inf: logsumexp is -inf, max -inf.
  const Tensor m = Tensor::full({4, 3, 5}, -INFINITY, DType::Float32);
  check_op("logsumexp", {m}, {{"axes", Axes{0, 2}}}, "nvrtc-axes", 0, "logsumexp of -inf");
  check_op("max", {m}, {{"axes", Axes{0, 2}}}, "nvrtc-axes", 0, "max of -inf");
}

// Slices are merged in a fixed order: two runs give the same bits.
TEST(CudaAxisReduce, ResultsAreDeterministic) {
  DS_REQUIRE_GPU();
  for (const auto& [s, axes] : std::vector<std::pair<Shape, Axes>>{
           {{16, 256, 14, 14}, {0, 2, 3}}, {{4096, 768}, {0}}, {{1 << 22}, {}}}) {
    const Tensor x = uniform(s, 23000, DType::Float32).to(ds::Device::cuda());
    for (const bool var : {false, true}) {
      const auto run = [&] {
        return (var ? ds::var(x, axes) : ds::sum(x, axes)).to(ds::Device::cpu());
      };
      const Tensor a = run(), b = run();
      for (int64_t i = 0; i < a.numel(); ++i)
        ASSERT_EQ(ds::element_as_double(a, i), ds::element_as_double(b, i))
            << (var ? "var" : "sum") << at(DType::Float32, s) << " element " << i;
    }
  }
}
