// The CUDA emitter of fused regions (codegen/cuda). Where CUDA is built the
// emitted source must compile cleanly with NVRTC for sm_90a (no GPU needed);
// on a GPU every region runs through the `fused` CUDA kernel and must match the
// float64 reference interpreter, on the vectorized and the scalar path.
// float16/bfloat16 regions (autocast's casts fused with the ops around them)
// round where the reference rounds: outputs agree to an ulp of the narrow type.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "codegen/cuda/emit_cuda.h"
#include "codegen/kernel_ir.h"
#include "ds/cuda.h"
#include "ds/ds.h"
#include "op_check.h"
#include "passes/pass_manager.h"

using ds::DType;
using ds::Shape;
using ds::Tensor;
namespace codegen = ds::codegen;

#define DS_REQUIRE_GPU()             \
  if (ds::cuda::device_count() == 0) \
  GTEST_SKIP() << "no CUDA device: " << ds::cuda::unavailable_reason()

namespace {

constexpr DType F32 = DType::Float32, F64 = DType::Float64, B = DType::Bool;
constexpr DType BF16 = DType::BFloat16, F16 = DType::Float16;

codegen::KernelInst inst(const std::string& op, std::vector<int> args, DType t,
                         ds::AttrMap attrs = {}) {
  return {op, std::move(attrs), std::move(args), t};
}

// gelu(x + bias) * scale over [rows, cols].
codegen::KernelIR gelu_bias_scale(int64_t rows, int64_t cols, DType t = F32) {
  codegen::KernelIR ir;
  ir.shape = {rows, cols};
  ir.inputs = {{t, {rows, cols}}, {t, {cols}}, {t, {}}};
  ir.insts = {inst("add", {0, 1}, t), inst("gelu", {3}, t), inst("mul", {4, 2}, t)};
  ir.outputs = {5};
  return ir;
}

// Every unary op on x (positive), every binary op on (x, y broadcast along rows),
// comparisons, logic, where, casts: one output per instruction.
codegen::KernelIR all_ops(int64_t rows, int64_t cols) {
  codegen::KernelIR ir;
  ir.shape = {rows, cols};
  ir.inputs = {{F32, {rows, cols}}, {F32, {cols}}};
  auto add = [&](codegen::KernelInst in) {
    ir.insts.push_back(std::move(in));
    const int r = ir.num_registers() - 1;
    ir.outputs.push_back(r);
    return r;
  };
  for (const char* op : {"neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin",
                         "cos", "tanh", "sigmoid", "relu", "elu", "gelu", "silu", "softplus",
                         "erf", "floor", "ceil", "round", "sign", "reciprocal", "square"})
    add(inst(op, {0}, F32));
  add(inst("leaky_relu", {0}, F32, {{"negative_slope", 0.2}}));
  add(inst("gelu", {0}, F32, {{"approximate", std::string("tanh")}}));
  add(inst("softplus", {0}, F32, {{"beta", 2.0}, {"threshold", 3.0}}));
  int shifted = add(inst("sub", {0, 1}, F32));  // values of both signs
  add(inst("sign", {shifted}, F32));
  add(inst("relu", {shifted}, F32));
  add(inst("elu", {shifted}, F32, {{"alpha", 0.5}}));
  for (const char* op : {"add", "sub", "mul", "div", "pow", "maximum", "minimum"})
    add(inst(op, {0, 1}, F32));
  add(inst("mod", {shifted, 1}, F32));
  add(inst("mod", {1, shifted}, F32));
  std::vector<int> flags;
  for (const char* op : {"eq", "ne", "lt", "le", "gt", "ge"})
    flags.push_back(add(inst(op, {0, 1}, B)));
  const int both = add(inst("logical_and", {flags[2], flags[5]}, B));
  add(inst("logical_or", {flags[0], flags[4]}, B));
  add(inst("logical_not", {both}, B));
  add(inst("isnan", {0}, B));
  add(inst("where", {flags[2], 0, shifted}, F32));
  const int wide = add(inst("cast", {shifted}, F64, {{"dtype", F64}}));
  add(inst("exp", {wide}, F64));
  add(inst("cast", {flags[3]}, F32, {{"dtype", F32}}));
  add(inst("cast", {shifted}, B, {{"dtype", B}}));
  return ir;
}

// x[a,b,c] * y[a,1,c] + z[b,1]: strides that are neither full nor one row.
codegen::KernelIR middle_broadcast(int64_t a, int64_t b, int64_t c) {
  codegen::KernelIR ir;
  ir.shape = {a, b, c};
  ir.inputs = {{F32, {a, b, c}}, {F32, {a, 1, c}}, {F32, {b, 1}}};
  ir.insts = {inst("mul", {0, 1}, F32), inst("add", {3, 2}, F32)};
  ir.outputs = {4};
  return ir;
}

// exp(x - bias) reduced over rows (sum, mean or max), with the elementwise value out too.
codegen::KernelIR row_reduction(int64_t rows, int64_t len, const std::string& op, bool keepdims,
                                DType t = F32) {
  codegen::KernelIR ir;
  ir.shape = {rows, len};
  ir.inputs = {{t, {rows, len}}, {t, {rows, 1}}};
  ir.insts = {inst("sub", {0, 1}, t), inst("exp", {2}, t)};
  ir.outputs = {3};
  ir.reduce = codegen::KernelReduce{op, 3, keepdims};
  return ir;
}

// softmax of x * scale over rows: max, then sum of exp, then the quotient.
codegen::KernelIR softmax_rows(int64_t rows, int64_t len, DType t = F32) {
  codegen::KernelIR ir;
  ir.shape = {rows, len};
  ir.inputs = {{t, {rows, len}}, {t, {}}};
  ir.insts = {inst("mul", {0, 1}, t), inst("max", {2}, t), inst("sub", {2, 3}, t),
              inst("exp", {4}, t),    inst("sum", {5}, t), inst("div", {5, 6}, t)};
  ir.outputs = {7};
  return ir;
}

// gelu(layer_norm(x + residual) * gamma + beta), with the mean and rstd rows out too.
codegen::KernelIR layer_norm_rows(int64_t rows, int64_t len, DType t = F32) {
  codegen::KernelIR ir;
  ir.shape = {rows, len};
  ir.inputs = {{t, {rows, len}}, {t, {rows, len}}, {t, {len}}, {t, {len}}, {t, {}}};
  ir.insts = {inst("add", {0, 1}, t),     // %5 x + residual
              inst("mean", {5}, t),       // %6 row mean
              inst("sub", {5, 6}, t),     // %7
              inst("square", {7}, t),     // %8
              inst("mean", {8}, t),       // %9 row variance
              inst("add", {9, 4}, t),     // %10 + eps (a row register)
              inst("rsqrt", {10}, t),     // %11 rstd
              inst("mul", {7, 11}, t),    // %12
              inst("mul", {12, 2}, t),    // %13 * gamma
              inst("add", {13, 3}, t),    // %14 + beta
              inst("gelu", {14}, t)};     // %15
  ir.outputs = {15, 6, 11};
  return ir;
}

codegen::KernelInst cast(int arg, DType to) {
  return inst("cast", {arg}, to, {{"dtype", to}});
}

// Autocast's pattern around a matmul: a narrow x widened, gelu(x + bias) * scale
// in float32, narrowed back; the float32 value is an output too (as for a
// backward pass that reads it).
codegen::KernelIR widen_compute_narrow(int64_t rows, int64_t cols, DType low) {
  codegen::KernelIR ir;
  ir.shape = {rows, cols};
  ir.inputs = {{low, {rows, cols}}, {F32, {cols}}, {F32, {}}};
  ir.insts = {cast(0, F32),              // %3
              inst("add", {3, 1}, F32),  // %4
              inst("gelu", {4}, F32),    // %5
              inst("mul", {5, 2}, F32),  // %6
              cast(6, low)};             // %7
  ir.outputs = {7, 6};
  return ir;
}

// Arithmetic, compares, where and casts on narrow values: every instruction
// rounds to its narrow type (the other narrow type for one cast).
codegen::KernelIR narrow_ops(int64_t rows, int64_t cols, DType low) {
  const DType other = low == BF16 ? F16 : BF16;
  codegen::KernelIR ir;
  ir.shape = {rows, cols};
  ir.inputs = {{low, {rows, cols}}, {low, {cols}}, {F64, {rows, cols}}};
  ir.insts = {inst("sub", {0, 1}, low),      // %3
              inst("exp", {3}, low),         // %4
              inst("lt", {0, 1}, B),         // %5
              inst("where", {5, 4, 0}, low), // %6
              cast(6, other),                // %7
              cast(2, low),                  // %8 float64 -> narrow
              inst("mul", {6, 8}, low),      // %9
              cast(5, low),                  // %10 bool -> narrow
              inst("sigmoid", {3}, low),     // %11
              cast(9, F64)};                 // %12
  ir.outputs = {4, 5, 6, 7, 9, 10, 11, 12};
  return ir;
}

// layer_norm of a widened narrow row, narrowed back: the rows kernel reading
// and writing 16-bit values.
codegen::KernelIR narrow_layer_norm(int64_t rows, int64_t len, DType low) {
  codegen::KernelIR ir;
  ir.shape = {rows, len};
  ir.inputs = {{low, {rows, len}}, {F32, {}}};
  ir.insts = {cast(0, F32),              // %2
              inst("mean", {2}, F32),    // %3
              inst("sub", {2, 3}, F32),  // %4
              inst("square", {4}, F32),  // %5
              inst("mean", {5}, F32),    // %6
              inst("add", {6, 1}, F32),  // %7
              inst("rsqrt", {7}, F32),   // %8
              inst("mul", {4, 8}, F32),  // %9
              cast(9, low)};             // %10
  ir.outputs = {10, 3};
  return ir;
}

// The cross-entropy gradient rows of a GPT's logits: (p - onehot * sum) narrowed,
// p read by both passes (the sum, then the quotient).
codegen::KernelIR cross_entropy_grad_rows(int64_t rows, int64_t len, DType low) {
  codegen::KernelIR ir;
  ir.shape = {rows, len};
  ir.inputs = {{F32, {rows, len}}, {F32, {rows, len}}};
  ir.insts = {inst("sum", {0}, F32),       // %2
              inst("mul", {1, 2}, F32),    // %3
              inst("sub", {0, 3}, F32),    // %4
              cast(4, low)};               // %5
  ir.outputs = {5};
  return ir;
}

std::vector<codegen::KernelIR> regions() {
  std::vector<codegen::KernelIR> r = {gelu_bias_scale(1, 1),
                                      gelu_bias_scale(3, 7),
                                      gelu_bias_scale(37, 128),
                                      gelu_bias_scale(5, 64, F64),
                                      all_ops(3, 40),
                                      all_ops(2, 13),
                                      middle_broadcast(3, 5, 8),
                                      middle_broadcast(2, 3, 5)};
  for (const char* op : {"sum", "mean", "max"})
    for (bool keep : {false, true}) {
      r.push_back(row_reduction(6, 13, op, keep));
      r.push_back(row_reduction(3, 2051, op, keep));
    }
  r.push_back(row_reduction(1, 1, "sum", false));
  for (int64_t len : {1, 13, 1000, 4099}) {
    r.push_back(softmax_rows(5, len));
    r.push_back(layer_norm_rows(3, len));
  }
  r.push_back(softmax_rows(4, 64, F64));
  // Rows past the register cache: the shared-memory kernels.
  r.push_back(softmax_rows(3, 50257));
  r.push_back(layer_norm_rows(2, 9000));
  r.push_back(cross_entropy_grad_rows(2, 50257, BF16));
  r.push_back(narrow_layer_norm(2, 20000, BF16));
  r.push_back(layer_norm_rows(2, 2000, F64));
  r.push_back(row_reduction(4, 100, "mean", true, F64));
  r.push_back(row_reduction(4, 100, "max", false, F64));
  for (DType low : {BF16, F16}) {
    r.push_back(widen_compute_narrow(37, 128, low));
    r.push_back(widen_compute_narrow(3, 7, low));
    r.push_back(widen_compute_narrow(5, 36, low));
    r.push_back(gelu_bias_scale(5, 64, low));
    r.push_back(narrow_ops(4, 48, low));
    r.push_back(narrow_ops(3, 5, low));
    r.push_back(narrow_layer_norm(3, 1000, low));
    r.push_back(narrow_layer_norm(2, 4099, low));
    r.push_back(row_reduction(6, 13, "max", true, low));
    r.push_back(row_reduction(4, 100, "sum", false, low));
  }
  return r;
}

// Inputs of the region's types: values in [0.25, 2] (positive, so every unary op
// is defined), with some exact ties between x and y for the comparisons.
std::vector<Tensor> feeds_for(const codegen::KernelIR& ir, uint32_t seed) {
  std::vector<Tensor> f;
  for (const auto& t : ir.inputs) {
    Tensor x = ds::test::random_tensor(t.shape, seed++) * 0.875 + 1.125;
    x = ds::round(x * 8.0) / 8.0;  // eighths: ties across inputs
    f.push_back(x.to(t.dtype));
  }
  return f;
}

// How far a GPU result may be from the reference: a few ulps of float32 math,
// or two ulps of the narrow type once a narrow instruction other than a cast
// has rounded (float32 and float64 math may round a value to the other side).
double tolerance(const codegen::KernelIR& ir, DType out) {
  if (out == B) return 0;
  double narrow = 0;
  for (const codegen::KernelInst& in : ir.insts)
    if (codegen::is_low_precision(in.dtype) && (in.op != "cast" || in.dtype == out))
      narrow = std::max(narrow, in.dtype == BF16 ? 2.0 / 128 : 2.0 / 1024);
  if (narrow > 0) return narrow;
  return out == F64 ? 1e-13 : 4e-6;
}

bool built_with_cuda() {
  return ds::cuda::built_with_cuda();
}

}  // namespace

TEST(CudaCodegen, EmittedRegionsCompileCleanlyWithNvrtcForSm90a) {
  if (!built_with_cuda()) GTEST_SKIP() << "built without CUDA: no NVRTC";
  for (const codegen::KernelIR& ir : regions()) {
    const auto r = codegen::cuda::emit_cuda_region(ir);
    std::string log;
    ASSERT_NO_THROW(log = codegen::cuda::nvrtc_compile_log(r.source, "sm_90a"))
        << ir.str() << "\n" << r.source;
    EXPECT_EQ(log, "") << ir.str() << "\n" << r.source;
  }
  // A broken program reports NVRTC's own message.
  try {
    codegen::cuda::nvrtc_compile_log("extern \"C\" __global__ void k() { undefined_name(); }",
                                     "sm_90a");
    ADD_FAILURE() << "an undefined name compiled";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find("undefined_name"), std::string::npos) << e.what();
  }
}

TEST(CudaCodegen, VectorizesWhereRowsSplitIntoSixteenByteSteps) {
  const auto f32 = codegen::cuda::emit_cuda_region(gelu_bias_scale(37, 128));
  EXPECT_EQ(f32.vector_lanes, 4);
  EXPECT_EQ(f32.vector_items, 37 * 128 / 4);
  EXPECT_EQ(f32.vector_inputs, (std::vector<bool>{true, true, false}));  // the scale is one value
  EXPECT_NE(f32.source.find("ds_vec<float, 4>"), std::string::npos);
  const auto f64 = codegen::cuda::emit_cuda_region(gelu_bias_scale(5, 64, F64));
  EXPECT_EQ(f64.vector_lanes, 2);
  // Rows of 7 floats do not split into float4 steps: scalar kernel only.
  const auto odd = codegen::cuda::emit_cuda_region(gelu_bias_scale(3, 7));
  EXPECT_TRUE(odd.vector_kernel.empty());
  EXPECT_EQ(odd.items, 21);
  EXPECT_FALSE(odd.wide_index);
  // Short rows: one warp each; long rows: one block each.
  const auto short_rows = codegen::cuda::emit_cuda_region(row_reduction(6, 13, "sum", false));
  EXPECT_TRUE(short_rows.rows);
  EXPECT_EQ(short_rows.rows_per_block, 8);
  EXPECT_EQ(short_rows.items, 6);
  EXPECT_EQ(codegen::cuda::emit_cuda_region(row_reduction(3, 2051, "max", true)).rows_per_block, 1);
  // softmax rows in registers compute each exp once: the sum's pass keeps it for the quotient's.
  const std::string sm = codegen::cuda::emit_cuda_region(softmax_rows(5, 4099)).source;
  EXPECT_EQ(sm.find("(exp("), sm.rfind("(exp(")) << sm;
  EXPECT_NE(sm.find("keep5[e] = r5;"), std::string::npos) << sm;
  // Rows past 32 elements a thread that several passes read: a shared-memory
  // kernel of 1024 threads holding the row (float32, 16-byte aligned: 201040 bytes).
  const auto vocab = codegen::cuda::emit_cuda_region(softmax_rows(3, 50257));
  EXPECT_EQ(vocab.shared_kernel, "ds_rows_smem_" + vocab.scalar_kernel.substr(8));
  EXPECT_EQ(vocab.shared_bytes, 201040);
  EXPECT_EQ(vocab.shared_threads, 1024);
  EXPECT_NE(vocab.source.find("extern __shared__"), std::string::npos);
  // Only the inputs several passes read: p, not the one-hot rows.
  EXPECT_EQ(codegen::cuda::emit_cuda_region(cross_entropy_grad_rows(2, 50257, BF16)).shared_bytes,
            201040);
  // Short enough for the registers, one pass, or too long for shared memory: none.
  EXPECT_EQ(codegen::cuda::emit_cuda_region(softmax_rows(5, 4099)).shared_kernel, "");
  EXPECT_EQ(codegen::cuda::emit_cuda_region(row_reduction(3, 50000, "sum", false)).shared_kernel, "");
  EXPECT_EQ(codegen::cuda::emit_cuda_region(softmax_rows(2, 60000)).shared_kernel, "");
  // Past 2^31 elements the index is 64-bit.
  EXPECT_TRUE(codegen::cuda::emit_cuda_region(gelu_bias_scale(int64_t{1} << 20, 4096)).wide_index);
  codegen::KernelIR empty = gelu_bias_scale(0, 8);
  EXPECT_THROW(codegen::cuda::emit_cuda_region(empty), ds::ValueError);
}

TEST(CudaFusedRegions, MatchTheReferenceInterpreter) {
  DS_REQUIRE_GPU();
  uint32_t seed = 1;
  for (const codegen::KernelIR& ir : regions()) {
    ds::Graph g;
    std::vector<Tensor> ph;
    for (size_t i = 0; i < ir.inputs.size(); ++i)
      ph.push_back(g.placeholder("x" + std::to_string(i), ir.inputs[i].shape, ir.inputs[i].dtype));
    const auto outs = g.add("fused", ph, {{"region", ir.str()}});
    for (size_t o = 0; o < outs.size(); ++o) g.output(outs[o], "y" + std::to_string(o));
    const ds::Executable exe = ds::compile(g, "cuda", {.opt_level = 0});
    ASSERT_NE(exe.explain().find("nvrtc-fused [cuda]"), std::string::npos) << exe.explain();
    const auto feeds = feeds_for(ir, seed += 7);
    const auto got = exe.run(feeds);
    const auto want = codegen::interpret(ir, feeds);
    ASSERT_EQ(got.size(), want.size());
    for (size_t o = 0; o < want.size(); ++o) {
      ASSERT_EQ(got[o].dtype(), want[o].dtype()) << ir.str() << "output " << o;
      ASSERT_EQ(got[o].shape(), want[o].shape()) << ir.str() << "output " << o;
      // Device math is within a few ulps of the float64 reference rounded once.
      const double tol = tolerance(ir, want[o].dtype());
      const auto gv = ds::test::values(got[o]), wv = ds::test::values(want[o]);
      for (size_t i = 0; i < wv.size(); ++i) {
        if (std::isnan(wv[i])) {
          EXPECT_TRUE(std::isnan(gv[i])) << ir.str() << "output " << o << " element " << i;
          continue;
        }
        ASSERT_LE(std::abs(gv[i] - wv[i]), tol * (1 + std::abs(wv[i])))
            << ir.str() << "output " << o << " element " << i << ": got " << gv[i] << ", want "
            << wv[i];
      }
    }
  }
}

TEST(CudaFusedRegions, GeluIsCloseToTheReferenceOverItsRange) {
  DS_REQUIRE_GPU();
  // Every 1/1024 over [-12, 12]: the tails, the fit's end at |x| = 5.54, zero.
  const int64_t n = 24 * 1024 + 1;
  codegen::KernelIR ir;
  ir.shape = {n};
  ir.inputs = {{F32, {n}}};
  ir.insts = {inst("gelu", {0}, F32)};
  ir.outputs = {1};
  std::vector<double> xs(n);
  for (int64_t i = 0; i < n; ++i) xs[i] = -12.0 + static_cast<double>(i) / 1024;
  const Tensor x = Tensor::from_vector(xs, {n}).to(F32);
  ds::Graph g;
  g.output(g.add("fused", {g.placeholder("x", {n}, F32)}, {{"region", ir.str()}})[0], "y");
  const auto got = ds::test::values(ds::compile(g, "cuda", {.opt_level = 0}).run({x})[0]);
  const auto want = ds::test::values(codegen::interpret(ir, {x})[0]);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_LE(std::abs(got[i] - want[i]), 4e-7 * (1 + std::abs(want[i])))
        << "gelu(" << xs[i] << "): got " << got[i] << ", want " << want[i];
}

TEST(CudaFusedRegions, DumpKernelsWritesTheGeneratedSource) {
  DS_REQUIRE_GPU();
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ds_cuda_dump_" + std::to_string(::getpid()));
  ::setenv("DS_DUMP_KERNELS", "1", 1);
  ::setenv("DS_DUMP_DIR", dir.c_str(), 1);
  const codegen::KernelIR ir = gelu_bias_scale(7, 40);  // a region no other test emits
  ds::Graph g;
  std::vector<Tensor> ph;
  for (size_t i = 0; i < ir.inputs.size(); ++i)
    ph.push_back(g.placeholder("x" + std::to_string(i), ir.inputs[i].shape, ir.inputs[i].dtype));
  g.output(g.add("fused", ph, {{"region", ir.str()}})[0], "y");
  ds::compile(g, "cuda", {.opt_level = 0});  // emits (and compiles) the region
  ::unsetenv("DS_DUMP_KERNELS");
  ::unsetenv("DS_DUMP_DIR");
  const auto r = codegen::cuda::emit_cuda_region(ir);
  std::ifstream in(dir / (r.scalar_kernel + ".cu"));
  ASSERT_TRUE(in.good()) << (dir / (r.scalar_kernel + ".cu"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, r.source);
  std::filesystem::remove_all(dir);
}

TEST(CudaFusedRegions, UnalignedOperandsTakeTheScalarKernel) {
  DS_REQUIRE_GPU();
  // A view one float into a buffer is not 16-byte aligned: the vector kernel
  // would fault or read the wrong lanes, so the scalar kernel must run.
  const codegen::KernelIR ir = gelu_bias_scale(4, 32);
  const auto feeds = feeds_for(ir, 99);
  const ds::Device gpu = ds::Device::cuda();
  const Tensor padded = ds::test::random_tensor({4 * 32 + 1}, 5).to(F32);
  const Tensor x = ds::reshape(ds::slice(padded, 0, 1, 4 * 32 + 1), {4, 32}).contiguous();
  const ds::OpDef& def = ds::get_op("fused");
  const ds::AttrMap attrs = {{"region", ir.str()}};
  const ds::OpContext ctx{def, attrs, ir.inputs, "fused region test"};
  const ds::KernelEntry& k = ds::select_kernel(ctx, ds::DeviceKind::CUDA);
  ASSERT_EQ(k.impl, "nvrtc-fused");
  // A contiguous [4, 32] view from element 1 of the device copy of `padded`.
  const Tensor big = padded.to(gpu);
  auto impl = std::make_shared<ds::TensorImpl>();
  impl->storage = big.storage();
  impl->offset = 1;
  impl->shape = {4, 32};
  impl->strides = {32, 1};
  impl->dtype = F32;
  const Tensor view(impl);
  ASSERT_NE(reinterpret_cast<uintptr_t>(view.raw_data()) % 16, 0u);
  const std::vector<Tensor> in = {view, feeds[1].to(gpu), feeds[2].to(gpu)};
  std::vector<Tensor> out = {Tensor::empty({4, 32}, F32, gpu)};
  k.fn(ds::KernelCall{ctx, in, out});
  const auto want = codegen::interpret(ir, {x, feeds[1], feeds[2]});
  const auto gv = ds::test::values(out[0].to(ds::Device::cpu())), wv = ds::test::values(want[0]);
  for (size_t i = 0; i < wv.size(); ++i)
    ASSERT_NEAR(gv[i], wv[i], 4e-6 * (1 + std::abs(wv[i]))) << "element " << i;
}

TEST(CudaFusedRegions, CompiledGraphsFuseTheirChainsOnTheGpu) {
  DS_REQUIRE_GPU();
  // gelu(x @ w + b) * 2 then layer_norm(h + x) and softmax: at opt_level 2 a cuda
  // target fuses the elementwise/row chains (one region here) into generated kernels.
  ds::Graph g;
  Tensor x = g.placeholder("x", {64, 96}), w = g.placeholder("w", {96, 96});
  Tensor b = g.placeholder("b", {96});
  Tensor h = ds::gelu(ds::matmul(x, w) + b) * 2.0;
  Tensor n = ds::layer_norm(h + x, {96});
  g.output(ds::softmax(n * 0.5, -1), "p");
  g.output(ds::sum(ds::exp(h - 1.0), {-1}), "s");
  const ds::Executable gpu = ds::compile(g, "cuda");
  int fused = 0;
  for (const auto& node : gpu.graph().nodes()) fused += node.op->name == "fused";
  EXPECT_GE(fused, 1) << gpu.explain();
  EXPECT_NE(gpu.explain().find("nvrtc-fused [cuda]"), std::string::npos) << gpu.explain();
  EXPECT_EQ(gpu.explain().find("[cpu fallback"), std::string::npos) << gpu.explain();
  const std::vector<Tensor> feeds = {ds::test::random_tensor({64, 96}, 1).to(F32),
                                     (ds::test::random_tensor({96, 96}, 2) * 0.1).to(F32),
                                     ds::test::random_tensor({96}, 3).to(F32)};
  const auto want = ds::compile(g, "cpu", {.opt_level = 0}).run(feeds);
  const auto got = gpu.run(feeds);
  for (size_t o = 0; o < want.size(); ++o) {
    const auto gv = ds::test::values(got[o]), wv = ds::test::values(want[o]);
    for (size_t i = 0; i < wv.size(); ++i)
      ASSERT_NEAR(gv[i], wv[i], 2e-5 * (1 + std::abs(wv[i]))) << "output " << o << " element " << i;
  }
}

TEST(CudaCodegen, NarrowRegionsMoveSixteenBitValues) {
  // All bfloat16: 8 lanes per 16-byte step; every instruction rounds its float result.
  const auto bf16 = codegen::cuda::emit_cuda_region(gelu_bias_scale(37, 128, BF16));
  EXPECT_EQ(bf16.vector_lanes, 8);
  EXPECT_NE(bf16.source.find("ds_vec<ds_bf16, 8>"), std::string::npos) << bf16.source;
  EXPECT_NE(bf16.source.find("ds_round_bf16("), std::string::npos) << bf16.source;
  // Narrow and float32 operands: 8 lanes, the float32 ones in two 16-byte chunks.
  const auto mixed = codegen::cuda::emit_cuda_region(widen_compute_narrow(37, 128, F16));
  EXPECT_EQ(mixed.vector_lanes, 8);
  EXPECT_NE(mixed.source.find("ds_vec<ds_half, 8>"), std::string::npos) << mixed.source;
  EXPECT_NE(mixed.source.find("ds_vec<float, 4>"), std::string::npos) << mixed.source;
  EXPECT_NE(mixed.source.find("ds_round_half("), std::string::npos) << mixed.source;
  // Rows of 36 do not split into 8-lane steps: 4 lanes (8-byte narrow accesses).
  EXPECT_EQ(codegen::cuda::emit_cuda_region(widen_compute_narrow(3, 36, BF16)).vector_lanes, 4);
}

namespace {

// y = linear(gelu(linear(x, w1, b1)), w2): under bf16 autocast the gelu sits
// between a widening and a narrowing cast.
ds::Graph linear_gelu_linear() {
  ds::Graph g;
  Tensor x = g.placeholder("x", {64, 96}), w1 = g.placeholder("w1", {128, 96});
  Tensor b1 = g.placeholder("b1", {128}), w2 = g.placeholder("w2", {96, 128});
  g.output(ds::linear(ds::gelu(ds::linear(x, w1, b1)), w2), "y");
  return g;
}

int count_op(const ds::Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

}  // namespace

TEST(CudaFusionPass, CudaRegionsAbsorbAutocastCasts) {
  // After autocast: x, w1, b1, w2 narrowed, each linear's output widened (6 casts),
  // plus the narrowing of gelu's output for the second linear: 7.
  const ds::Graph cast = ds::passes::run_pipeline(linear_gelu_linear(), 1, nullptr, BF16);
  ASSERT_EQ(count_op(cast, "cast"), 7) << cast.str();
  // CUDA regions: widen -> gelu -> narrow is one region from bfloat16 to bfloat16.
  const ds::Graph gpu = ds::passes::loop_fusion_regions(cast);
  EXPECT_EQ(count_op(gpu, "cast"), 5) << gpu.str();
  ASSERT_EQ(count_op(gpu, "fused"), 1) << gpu.str();
  for (const auto& node : gpu.nodes()) {
    if (node.op->name != "fused") continue;
    ASSERT_EQ(node.inputs.size(), 1u);
    EXPECT_EQ(gpu.node(node.inputs[0].node).op->name, "linear");
    EXPECT_EQ(gpu.type(node.inputs[0]).dtype, BF16);
    ASSERT_EQ(node.outputs.size(), 1u);
    EXPECT_EQ(node.outputs[0].dtype, BF16);
    const codegen::KernelIR& ir =
        codegen::cached_kernel_ir(std::get<std::string>(node.attrs.at("region")));
    ASSERT_EQ(ir.insts.size(), 3u);
    EXPECT_EQ(ir.insts[0].op, "cast");
    EXPECT_EQ(ir.insts[1].op, "gelu");
    EXPECT_EQ(ir.insts[1].dtype, F32);
    EXPECT_EQ(ir.insts[2].op, "cast");
    // The generated source compiles for the H200 (NVRTC needs no GPU).
    if (built_with_cuda()) {
      const auto r = codegen::cuda::emit_cuda_region(ir);
      EXPECT_EQ(codegen::cuda::nvrtc_compile_log(r.source, "sm_90a"), "") << r.source;
    }
  }
  // The CPU's regions (LLVM) keep to float32/float64/bool: the casts stay.
  const ds::Graph cpu = ds::passes::loop_fusion(cast);
  EXPECT_EQ(count_op(cpu, "cast"), 7) << cpu.str();
  for (const auto& node : cpu.nodes()) {
    if (node.op->name != "fused") continue;
    EXPECT_FALSE(codegen::uses_low_precision(
        codegen::cached_kernel_ir(std::get<std::string>(node.attrs.at("region")))));
  }
}

TEST(CudaFusedRegions, Bf16LinearGeluLinearMatchesTheCpu) {
  DS_REQUIRE_GPU();
  const ds::Graph g = linear_gelu_linear();
  const ds::Executable gpu = ds::compile(g, "cuda", {.precision = "bf16"});
  EXPECT_EQ(count_op(gpu.graph(), "fused"), 1) << gpu.explain();
  EXPECT_NE(gpu.explain().find("nvrtc-fused [cuda]"), std::string::npos) << gpu.explain();
  const std::vector<Tensor> feeds = {ds::test::random_tensor({64, 96}, 1).to(F32),
                                     (ds::test::random_tensor({128, 96}, 2) * 0.1).to(F32),
                                     ds::test::random_tensor({128}, 3).to(F32),
                                     (ds::test::random_tensor({96, 128}, 4) * 0.1).to(F32)};
  const auto want = ds::compile(g, "cpu", {.opt_level = 0, .precision = "bf16"}).run(feeds);
  const auto got = gpu.run(feeds);
  // Both round h to bfloat16 after the matmul, after gelu, and y after the last
  // matmul; their sums run in different orders, so roundings may flip an ulp apart.
  const auto gv = ds::test::values(got[0]), wv = ds::test::values(want[0]);
  for (size_t i = 0; i < wv.size(); ++i)
    ASSERT_NEAR(gv[i], wv[i], 2e-2 * (0.25 + std::abs(wv[i]))) << "element " << i;
}
