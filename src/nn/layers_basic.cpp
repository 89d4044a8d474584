// Linear, Embedding, Dropout, parameter-free layers and containers.
#include <cmath>
#include <sstream>

#include "ds/channels_last.h"
#include "ds/nn/init.h"
#include "ds/nn/layers.h"
#include "nn/layer_helpers.h"

namespace ds::nn {
namespace {

// f (an NCHW-only op) on channels-last x: permuted to NCHW and back.
template <typename F> Tensor in_layout(const Tensor& x, bool channels_last, F&& f) {
  return channels_last ? to_channels_last(f(from_channels_last(x))) : f(x);
}

}  // namespace

std::string pair_str(const Pair& p) {
  std::ostringstream os;
  if (p.size() == 1) {
    os << p[0];
  } else {
    os << "(";
    for (size_t i = 0; i < p.size(); ++i) os << (i ? ", " : "") << p[i];
    os << ")";
  }
  return os.str();
}

Tensor default_bias(int64_t size, int64_t fan_in) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
  return init::uniform({size}, -bound, bound, next_seed());
}

Linear::Linear(int64_t in, int64_t out, bool has_bias) : in_features(in), out_features(out) {
  DS_CHECK(in >= 0 && out >= 0, ValueError, "Linear: features must be >= 0, got in=", in,
           " out=", out);
  weight = init::kaiming_uniform({out, in}, std::sqrt(5.0), next_seed());
  register_parameter("weight", &weight);
  if (has_bias) {
    bias = default_bias(out, in);
    register_parameter("bias", &bias);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

std::string Linear::name() const {
  std::ostringstream os;
  os << "Linear(in_features=" << in_features << ", out_features=" << out_features
     << ", bias=" << (bias.defined() ? "True" : "False") << ")";
  return os.str();
}

Embedding::Embedding(int64_t num, int64_t dim) {
  weight = init::normal({num, dim}, 0.0, 1.0, next_seed());
  register_parameter("weight", &weight);
}

Tensor Embedding::forward(const Tensor& indices) { return embedding(indices, weight); }

std::string Embedding::name() const {
  std::ostringstream os;
  os << "Embedding(" << weight.shape()[0] << ", " << weight.shape()[1] << ")";
  return os.str();
}

Dropout::Dropout(double p_, uint64_t seed_) : p(p_) {
  DS_CHECK(p >= 0 && p <= 1, ValueError, "Dropout: p must be in [0, 1], got ", p);
  seed = Tensor::scalar(static_cast<double>((seed_ ? seed_ : next_seed()) >> 12), DType::Int64);
  register_buffer("seed", &seed, /*persistent=*/false);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p == 0) return x;
  if (p == 1) return x * 0.0;
  Tensor keep = apply1("bernoulli", {seed},
                       {{"shape", x.shape()}, {"p", 1.0 - p}, {"dtype", x.dtype()}});
  seed = seed + Tensor::scalar(1, DType::Int64);
  return x * keep * (1.0 / (1.0 - p));
}

std::string Dropout::name() const {
  std::ostringstream os;
  os << "Dropout(p=" << p << ")";
  return os.str();
}

std::shared_ptr<Lambda> ReLU() {
  return std::make_shared<Lambda>("ReLU()", [](const Tensor& x) { return relu(x); });
}
std::shared_ptr<Lambda> GELU(const std::string& approximate) {
  return std::make_shared<Lambda>("GELU(approximate='" + approximate + "')",
                                  [approximate](const Tensor& x) { return gelu(x, approximate); });
}
std::shared_ptr<Lambda> SiLU() {
  return std::make_shared<Lambda>("SiLU()", [](const Tensor& x) { return silu(x); });
}
std::shared_ptr<Lambda> Tanh() {
  return std::make_shared<Lambda>("Tanh()", [](const Tensor& x) { return tanh(x); });
}
std::shared_ptr<Lambda> Sigmoid() {
  return std::make_shared<Lambda>("Sigmoid()", [](const Tensor& x) { return sigmoid(x); });
}
std::shared_ptr<Lambda> Softmax(int64_t dim) {
  return std::make_shared<Lambda>("Softmax(dim=" + std::to_string(dim) + ")",
                                  [dim](const Tensor& x) { return softmax(x, dim); });
}
std::shared_ptr<Lambda> Flatten(int64_t start, int64_t end) {
  return std::make_shared<Lambda>(
      "Flatten(start_dim=" + std::to_string(start) + ", end_dim=" + std::to_string(end) + ")",
      [start, end](const Tensor& x) { return flatten(x, start, end); });
}
std::shared_ptr<Lambda> MaxPool2d(Pair kernel, Pair stride, Pair padding) {
  return std::make_shared<Lambda>(
      "MaxPool2d(kernel_size=" + pair_str(kernel) + ", stride=" +
          pair_str(stride.empty() ? kernel : stride) + ", padding=" + pair_str(padding) + ")",
      [=](const Tensor& x, bool channels_last) {
        return channels_last ? max_pool2d_channels_last(x, kernel, stride, padding)
                             : max_pool2d(x, kernel, stride, padding);
      });
}
std::shared_ptr<Lambda> AvgPool2d(Pair kernel, Pair stride, Pair padding) {
  return std::make_shared<Lambda>(
      "AvgPool2d(kernel_size=" + pair_str(kernel) + ", stride=" +
          pair_str(stride.empty() ? kernel : stride) + ", padding=" + pair_str(padding) + ")",
      [=](const Tensor& x, bool channels_last) {
        return in_layout(x, channels_last,
                         [&](const Tensor& t) { return avg_pool2d(t, kernel, stride, padding); });
      });
}
std::shared_ptr<Lambda> AdaptiveAvgPool2d(Pair output_size) {
  return std::make_shared<Lambda>(
      "AdaptiveAvgPool2d(output_size=" + pair_str(output_size) + ")",
      [=](const Tensor& x, bool channels_last) {
        return in_layout(x, channels_last,
                         [&](const Tensor& t) { return adaptive_avg_pool2d(t, output_size); });
      });
}

Sequential::Sequential(std::vector<ModulePtr> modules) {
  for (auto& m : modules) push_back(std::move(m));
}

void Sequential::push_back(ModulePtr m) {
  add_child(std::to_string(modules_.size()), m);
  modules_.push_back(std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& m : modules_) y = m->forward(y);
  return y;
}

ModuleList::ModuleList(std::vector<ModulePtr> modules) {
  for (auto& m : modules) push_back(std::move(m));
}

void ModuleList::push_back(ModulePtr m) {
  add_child(std::to_string(modules_.size()), m);
  modules_.push_back(std::move(m));
}

Tensor ModuleList::forward(const Tensor&) {
  throw ValueError("ModuleList is a container, not a layer: call its modules (list[i]) instead");
}

}  // namespace ds::nn
