// Random-graph fuzzer: seeded random DAGs of elementwise ops (with broadcasting),
// reductions, reshapes/permutes, matmul and softmax on random static shapes,
// compiled at opt_level 3 (every pass, fusion, generated kernels) and checked
// against a tiny interpreter that runs every node with its OpDef reference
// kernel (float64 math). A failure prints the seed, the smallest failing prefix
// of that random graph and the whole graph.
#include <gtest/gtest.h>

#include <cmath>
#include <iomanip>
#include <random>
#include <sstream>

#include "ds/ds.h"
#include "ds/op.h"
#include "op_check.h"
#include "reference_run.h"
#include "runtime/dispatch.h"

using ds::Graph;
using ds::Shape;
using ds::Tensor;

namespace {

using ds::reference::reference_run;

class GraphMaker {
 public:
  explicit GraphMaker(uint32_t seed) : rng_(seed) {}

  // At most `max_ops` ops: the same seed with a smaller limit gives a prefix of
  // the same graph (used to report the smallest failing graph).
  Graph make(std::map<std::string, Tensor>* feeds, int max_ops = 1 << 30) {
    Graph g;
    const int inputs = pick(1, 3);
    const Shape base = random_shape();
    for (int i = 0; i < inputs; ++i) {
      // Inputs share trailing extents with `base` often, so binary ops broadcast.
      Shape s = base;
      if (coin(0.3))
        s = Shape(base.begin() + pick(0, static_cast<int>(base.size()) - 1), base.end());
      if (coin(0.2) && !s.empty()) s[pick(0, static_cast<int>(s.size()) - 1)] = 1;
      const ds::DType dt = coin(0.15) ? ds::DType::Float64 : ds::DType::Float32;
      const std::string name = "in" + std::to_string(i);
      pool_.push_back(g.placeholder(name, s, dt));
      (*feeds)[name] = ds::test::random_tensor(s, static_cast<uint32_t>(rng_()), dt);
    }
    const int ops = std::min(pick(4, 14), max_ops);
    for (int i = 0; i < ops; ++i) pool_.push_back(step(g));
    g.output(pool_.back(), "out");
    if (ops < max_ops && coin(0.5))
      g.output(pool_[pick(inputs, static_cast<int>(pool_.size()) - 1)], "side");
    return g;
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool coin(double p) { return std::bernoulli_distribution(p)(rng_); }
  Shape random_shape() {
    Shape s(pick(1, 3));
    for (auto& d : s) d = pick(1, 9);
    return s;
  }
  const Tensor& any() { return pool_[pick(0, static_cast<int>(pool_.size()) - 1)]; }
  // A second operand that broadcasts against `a`.
  Tensor partner(Graph& g, const Tensor& a) {
    for (int tries = 0; tries < 8; ++tries) {
      const Tensor& b = any();
      try {
        ds::broadcast_shapes(a.shape(), b.shape());
        return b;
      } catch (const ds::ShapeError&) {
      }
    }
    Shape s = a.shape();  // a fresh constant of a trailing part of a's shape
    s.erase(s.begin(), s.begin() + pick(0, static_cast<int>(s.size())));
    return g.constant(ds::test::random_tensor(s, static_cast<uint32_t>(rng_()), a.dtype()));
  }

  Tensor step(Graph& g) {
    const Tensor a = any();
    const int rank = a.ndim();
    switch (pick(0, 9)) {
      case 0:
      case 1:
      case 2: {  // unary, kept in a safe domain
        static const char* bounded[] = {"tanh",     "sigmoid", "sin",   "cos",  "erf",
                                        "relu",     "abs",     "neg",   "gelu", "silu",
                                        "softplus", "square",  "floor", "sign"};
        static const char* positive[] = {"log", "sqrt", "rsqrt", "reciprocal", "log1p"};
        if (coin(0.3)) return g.add(positive[pick(0, 4)], {ds::abs(a) + 0.5})[0];
        if (coin(0.2)) return ds::exp(ds::tanh(a));
        return g.add(bounded[pick(0, 13)], {a})[0];
      }
      case 3:
      case 4:
      case 5: {  // binary with broadcasting
        const Tensor b = partner(g, a);
        switch (pick(0, 6)) {
          case 0:
            return a + b;
          case 1:
            return a - b;
          case 2:
            return a * b;
          case 3:
            return a / (ds::abs(b) + 0.5);
          case 4:
            return ds::maximum(a, b);
          case 5:
            return ds::where(ds::gt(a, b), a, b * 0.5);
          default:
            return ds::pow(ds::abs(a) + 0.5, ds::tanh(b));
        }
      }
      case 6: {  // reduction over one axis
        if (rank == 0) return ds::tanh(a);
        const int64_t axis = pick(0, rank - 1);
        const bool keep = coin(0.6);
        switch (pick(0, 2)) {
          case 0:
            return ds::sum(a, {axis}, keep);
          case 1:
            return ds::mean(a, {axis}, keep);
          default:
            return ds::max(a, {axis}, keep);
        }
      }
      case 7: {  // data movement
        if (rank >= 2 && coin(0.5)) {
          std::vector<int64_t> perm(rank);
          for (int i = 0; i < rank; ++i) perm[i] = rank - 1 - i;
          return ds::permute(a, perm);
        }
        return ds::reshape(a, {-1});
      }
      case 8: {  // matmul against a constant
        if (rank == 0) return a * 2.0;
        const int64_t k = a.shape().back();
        Tensor w = g.constant(
            ds::test::random_tensor({k, pick(1, 7)}, static_cast<uint32_t>(rng_()), a.dtype()));
        return ds::matmul(a, w);
      }
      default:
        return rank == 0 ? ds::sigmoid(a) : ds::softmax(a, -1);
    }
  }

  std::mt19937 rng_;
  std::vector<Tensor> pool_;
};

// Compiles `g` at opt_level 3 and compares with the reference interpreter; returns
// the first mismatch ("" when all outputs agree).
std::string mismatch(const Graph& g, const std::map<std::string, Tensor>& feeds) {
  std::map<std::string, Tensor> got, want;
  try {
    got = ds::compile(g, "cpu", {.opt_level = 3}).run(feeds);
    want = reference_run(g, feeds);
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
  bool all_float64 = true;
  for (const ds::Node& n : g.nodes())
    for (const auto& t : n.outputs) all_float64 &= t.dtype == ds::DType::Float64;
  // float32 fast kernels (matmul blocking, sum order, libmvec) vs float64 math.
  const double tol = all_float64 ? 1e-9 : 2e-4;
  for (const auto& [name, ref] : want) {
    if (got.at(name).shape() != ref.shape())
      return name + ": shape " + ds::shape_str(got.at(name).shape());
    const auto r = ds::test::values(ref), v = ds::test::values(got.at(name));
    for (size_t i = 0; i < r.size(); ++i) {
      const bool ok = (std::isnan(r[i]) && std::isnan(v[i])) ||
                      std::abs(v[i] - r[i]) <= tol * (1 + std::abs(r[i]));
      if (!ok) {
        std::ostringstream os;
        os << std::setprecision(9) << name << "[" << i << "]: compiled " << v[i] << ", reference "
           << r[i];
        return os.str();
      }
    }
  }
  return "";
}

}  // namespace

TEST(RandomGraphs, OptLevel3MatchesTheReferenceInterpreter) {
  constexpr uint32_t kFirstSeed = 1000;
  constexpr int kCases = 250;
  int failures = 0;
  for (uint32_t seed = kFirstSeed; seed < kFirstSeed + kCases && failures < 3; ++seed) {
    std::map<std::string, Tensor> feeds;
    const Graph g = GraphMaker(seed).make(&feeds);
    const std::string problem = mismatch(g, feeds);
    if (problem.empty()) continue;
    ++failures;
    // The smallest prefix of the same random graph that still fails.
    Graph smallest = g;
    for (int ops = 1; ops < static_cast<int>(g.nodes().size()); ++ops) {
      std::map<std::string, Tensor> f;
      const Graph p = GraphMaker(seed).make(&f, ops);
      if (!mismatch(p, f).empty()) {
        smallest = p;
        break;
      }
    }
    ADD_FAILURE() << "fuzzer seed " << seed << ": " << problem << "\nsmallest failing graph:\n"
                  << smallest.str() << "full graph:\n"
                  << g.str();
  }
}
