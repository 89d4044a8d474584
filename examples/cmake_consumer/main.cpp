// A program built against an installed deepseek through find_package(deepseek):
// the product-description example in C++.
#include <cmath>
#include <iostream>
#include <random>

#include <ds/ds.h>

int main() {
  ds::Graph graph;
  ds::Tensor a = graph.placeholder("a", {1024, 1024}, ds::DType::Float32);
  ds::Tensor b = graph.placeholder("b", {1024, 1024}, ds::DType::Float32);
  graph.matmul(a, b, "c");
  ds::Executable compiled = ds::compile(graph, "cpu");  // or "gpu", "npu": errors list targets

  std::mt19937 rng(0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> av(1024 * 1024), bv(1024 * 1024);
  for (auto& v : av) v = u(rng);
  for (auto& v : bv) v = u(rng);
  // float64 feeds are cast to the float32 placeholders.
  auto out = compiled.run({{"a", ds::Tensor::from_vector(av, {1024, 1024})},
                           {"b", ds::Tensor::from_vector(bv, {1024, 1024})}});
  const ds::Tensor& c = out.at("c");

  double expected = 0;  // c[3, 5] in float64
  for (int k = 0; k < 1024; ++k) expected += av[3 * 1024 + k] * bv[k * 1024 + 5];
  const double got = c.data<float>()[3 * 1024 + 5];
  std::cout << "c: " << ds::shape_str(c.shape()) << " " << ds::dtype_name(c.dtype())
            << ", c[3,5] = " << got << " (float64 reference " << expected << ")\n";
  return std::abs(got - expected) < 1e-3 * expected ? 0 : 1;
}
