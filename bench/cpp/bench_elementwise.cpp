// Elementwise kernels over 10^7 float32 elements at 2 threads, in GB/s (bytes
// read + written). `copy` (a parallel memcpy of the same bytes) is the memory
// roofline to compare against; `exp_reference` is the float64 reference kernel.
//   cmake -B build-bench -G Ninja -DDS_BUILD_BENCH=ON -DDS_BUILD_PYTHON=OFF
//   ninja -C build-bench ds_bench_elementwise && build-bench/ds_bench_elementwise
#include <benchmark/benchmark.h>

#include <cstring>

#include "core/thread_pool.h"
#include "ds/ds.h"

namespace {

constexpr int64_t kN = 10'000'000;
constexpr int kThreads = 2;

ds::Tensor input(uint64_t seed) {
  return ds::random_uniform({kN}, seed, -3.0, 3.0);
}

void report(benchmark::State& state, int operands) {
  state.SetBytesProcessed(state.iterations() * kN * static_cast<int64_t>(sizeof(float)) *
                          (operands + 1));
}

void unary(benchmark::State& state, ds::Tensor (*op)(const ds::Tensor&)) {
  ds::set_num_threads(kThreads);
  const ds::Tensor x = input(1);
  for (auto _ : state) {
    ds::Tensor y = op(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
  report(state, 1);
}

void binary(benchmark::State& state, ds::Tensor (*op)(const ds::Tensor&, const ds::Tensor&)) {
  ds::set_num_threads(kThreads);
  const ds::Tensor a = input(1), b = input(2);
  for (auto _ : state) {
    ds::Tensor y = op(a, b);
    benchmark::DoNotOptimize(y.raw_data());
  }
  report(state, 2);
}

void copy(benchmark::State& state) {
  ds::set_num_threads(kThreads);
  const ds::Tensor x = input(1);
  for (auto _ : state) {
    ds::Tensor y = ds::Tensor::empty({kN});
    const float* src = x.data<float>();
    float* dst = y.data<float>();
    ds::parallel_for(kN, 1 << 15, [&](int64_t b, int64_t e) {
      std::memcpy(dst + b, src + b, static_cast<size_t>(e - b) * sizeof(float));
    });
    benchmark::DoNotOptimize(y.raw_data());
  }
  report(state, 1);
}

void exp_reference(benchmark::State& state) {
  ds::set_num_threads(kThreads);
  const ds::Tensor x = input(1);
  const ds::OpDef& op = ds::get_op("exp");
  const ds::AttrMap attrs;
  const ds::OpContext ctx{op, attrs, {{ds::DType::Float32, {kN}}}, ""};
  const std::vector<ds::Tensor> in{x};
  for (auto _ : state) {
    std::vector<ds::Tensor> out{ds::Tensor::empty({kN})};
    op.reference(ds::KernelCall{ctx, in, out});
    benchmark::DoNotOptimize(out[0].raw_data());
  }
  report(state, 1);
}

ds::Tensor add(const ds::Tensor& a, const ds::Tensor& b) {
  return ds::add(a, b);
}
ds::Tensor mul(const ds::Tensor& a, const ds::Tensor& b) {
  return ds::mul(a, b);
}
ds::Tensor exp(const ds::Tensor& x) {
  return ds::exp(x);
}
ds::Tensor tanh(const ds::Tensor& x) {
  return ds::tanh(x);
}
ds::Tensor gelu(const ds::Tensor& x) {
  return ds::gelu(x);
}
ds::Tensor gelu_tanh(const ds::Tensor& x) {
  return ds::gelu(x, "tanh");
}

}  // namespace

BENCHMARK(copy)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(binary, add, add)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(binary, mul, mul)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(unary, exp, exp)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(unary, tanh, tanh)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(unary, gelu, gelu)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(unary, gelu_tanh, gelu_tanh)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(exp_reference)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
