// Random elementwise graphs with float16/bfloat16 casts between float32 ops (the
// values autocast leaves around matmuls, and more), for the loop fusion of CUDA
// targets, which takes the casts into its regions. On every machine the fused
// graph, each region run by the reference interpreter, must give exactly what
// the unfused graph's reference run gives (the regions round where the graph
// rounds); on a GPU the cuda executable (NVRTC regions) must match that to
// float32 math and a rounding of the narrow type. A failure prints the seed
// and the graph.
#include <gtest/gtest.h>

#include <cmath>
#include <iomanip>
#include <random>
#include <sstream>

#include "codegen/kernel_ir.h"
#include "ds/cuda.h"
#include "ds/ds.h"
#include "op_check.h"
#include "passes/pass_manager.h"
#include "reference_run.h"

using ds::DType;
using ds::Graph;
using ds::Shape;
using ds::Tensor;

namespace {

class NarrowGraphMaker {
 public:
  explicit NarrowGraphMaker(uint32_t seed) : rng_(seed) {}

  Graph make(std::map<std::string, Tensor>* feeds) {
    Graph g;
    // Rows of whole 16-byte vector steps mostly (the vector kernel), odd ones else.
    const Shape base = {pick(1, 6), coin(0.8) ? pick(1, 6) * 8 : pick(1, 13)};
    const int inputs = pick(1, 3);
    for (int i = 0; i < inputs; ++i) {
      Shape s = base;
      if (coin(0.3)) s = {base.back()};                           // a bias
      if (coin(0.15)) s[pick(0, static_cast<int>(s.size()) - 1)] = 1;  // a broadcast axis
      const DType dt = coin(0.4) ? narrow() : DType::Float32;
      const std::string name = "in" + std::to_string(i);
      pool_.push_back(g.placeholder(name, s, dt));
      (*feeds)[name] = ds::test::random_tensor(s, static_cast<uint32_t>(rng_()), dt);
    }
    const int ops = pick(4, 12);
    for (int i = 0; i < ops; ++i) pool_.push_back(step(g));
    g.output(pool_.back(), "out");
    if (coin(0.5)) g.output(pool_[pick(inputs, static_cast<int>(pool_.size()) - 1)], "side");
    return g;
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool coin(double p) { return std::bernoulli_distribution(p)(rng_); }
  DType narrow() { return coin(0.5) ? DType::BFloat16 : DType::Float16; }
  const Tensor& any() { return pool_[pick(0, static_cast<int>(pool_.size()) - 1)]; }
  Tensor partner(const Tensor& a) {
    for (int tries = 0; tries < 8; ++tries) {
      const Tensor& b = any();
      try {
        ds::broadcast_shapes(a.shape(), b.shape());
        return b;
      } catch (const ds::ShapeError&) {
      }
    }
    return a;
  }

  Tensor step(Graph& g) {
    const Tensor a = any();
    switch (pick(0, 7)) {
      case 0:
      case 1: {  // a cast: narrowing float32, widening a narrow value, or across widths
        const bool is_narrow = a.dtype() == DType::BFloat16 || a.dtype() == DType::Float16;
        return ds::cast(a, is_narrow && coin(0.7) ? DType::Float32 : narrow());
      }
      case 2:
      case 3: {  // unary in a bounded domain
        static const char* ops[] = {"tanh", "sigmoid", "gelu", "silu", "erf", "relu", "neg", "abs"};
        if (coin(0.2)) return ds::exp(ds::tanh(a));
        return g.add(ops[pick(0, 7)], {a})[0];
      }
      case 4:
      case 5:
      case 6: {  // binary, broadcasting
        const Tensor b = partner(a);
        switch (pick(0, 4)) {
          case 0:
            return a + b;
          case 1:
            return a - b;
          case 2:
            return a * b;
          case 3:
            return ds::maximum(a, b);
          default:
            return ds::where(ds::gt(a, b), a, b);
        }
      }
      default:  // a row sum: a reduction region reading widened values
        return a.ndim() == 0 ? ds::sigmoid(a) : ds::sum(ds::cast(a, DType::Float32), {-1}, true);
    }
  }

  std::mt19937 rng_;
  std::vector<Tensor> pool_;
};

// "" when `got` matches `want` within tol * (1 + |want|) everywhere (NaN with NaN).
std::string compare(const std::map<std::string, Tensor>& got,
                    const std::map<std::string, Tensor>& want, double tol) {
  for (const auto& [name, ref] : want) {
    if (got.at(name).dtype() != ref.dtype() || got.at(name).shape() != ref.shape())
      return name + ": " + ds::dtype_name(got.at(name).dtype()) +
             ds::shape_str(got.at(name).shape()) + ", the reference has " +
             ds::dtype_name(ref.dtype()) + ds::shape_str(ref.shape());
    const auto r = ds::test::values(ref), v = ds::test::values(got.at(name));
    for (size_t i = 0; i < r.size(); ++i) {
      const bool ok = (std::isnan(r[i]) && std::isnan(v[i])) ||
                      std::abs(v[i] - r[i]) <= tol * (1 + std::abs(r[i]));
      if (!ok) {
        std::ostringstream os;
        os << std::setprecision(9) << name << "[" << i << "]: got " << v[i] << ", reference "
           << r[i];
        return os.str();
      }
    }
  }
  return "";
}

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

}  // namespace

TEST(CudaFusedFuzz, RegionsWithNarrowCastsRoundWhereTheGraphRounds) {
  constexpr uint32_t kFirstSeed = 500;
  int regions_with_casts = 0, failures = 0;
  for (uint32_t seed = kFirstSeed; seed < kFirstSeed + 150 && failures < 3; ++seed) {
    std::map<std::string, Tensor> feeds;
    const Graph g = NarrowGraphMaker(seed).make(&feeds);
    const Graph fused = ds::passes::loop_fusion_regions(g);
    EXPECT_LE(count_op(fused, "cast"), count_op(g, "cast")) << fused.str();
    for (const auto& node : fused.nodes()) {
      if (node.op->name != "fused") continue;
      const auto& ir = ds::codegen::cached_kernel_ir(std::get<std::string>(node.attrs.at("region")));
      for (const auto& in : ir.insts)
        if (in.op == "cast") {
          ++regions_with_casts;
          break;
        }
    }
    const std::string problem =
        compare(ds::reference::reference_run(fused, feeds), ds::reference::reference_run(g, feeds), 0);
    if (problem.empty()) continue;
    ++failures;
    ADD_FAILURE() << "seed " << seed << ": " << problem << "\ngraph:\n"
                  << g.str() << "fused:\n"
                  << fused.str();
  }
  EXPECT_GE(regions_with_casts, 50) << "the random graphs should put casts inside regions";
}

TEST(CudaFusedFuzz, NvrtcRegionsWithNarrowCastsMatchTheReference) {
  if (ds::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: " << ds::cuda::unavailable_reason();
  constexpr uint32_t kFirstSeed = 500;
  int failures = 0;
  for (uint32_t seed = kFirstSeed; seed < kFirstSeed + 40 && failures < 3; ++seed) {
    std::map<std::string, Tensor> feeds;
    const Graph g = NarrowGraphMaker(seed).make(&feeds);
    bool narrow = false;
    for (const auto& node : g.nodes())
      for (const auto& t : node.outputs)
        narrow |= t.dtype == DType::BFloat16 || t.dtype == DType::Float16;
    // float32 device math is a few ulps from float64; a narrow rounding it moves
    // to the neighbouring value (1/128 relative for bfloat16) travels on through
    // the bounded ops after it.
    const double tol = narrow ? 0.05 : 2e-4;
    std::string problem;
    try {
      problem = compare(ds::compile(g, "cuda").run(feeds), ds::reference::reference_run(g, feeds), tol);
    } catch (const std::exception& e) {
      problem = std::string("threw: ") + e.what();
    }
    if (problem.empty()) continue;
    ++failures;
    ADD_FAILURE() << "seed " << seed << ": " << problem << "\ngraph:\n" << g.str();
  }
}
