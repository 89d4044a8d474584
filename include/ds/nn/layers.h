// Layers, mirroring torch.nn names and arguments. Weights initialize as
// PyTorch's defaults do, from ds::random_* with seeds drawn from nn::next_seed()
// (set the sequence with nn::manual_seed).
#pragma once

#include <functional>

#include "ds/nn/module.h"
#include "ds/ops.h"

namespace ds::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;  // weight [out, in]
  int64_t in_features, out_features;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Pair kernel_size, Pair stride = {1},
         Pair padding = {0}, Pair dilation = {1}, int64_t groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;  // weight [out, in/groups, kh, kw]
  Pair stride, padding, dilation;
  int64_t groups;
};

class ConvTranspose2d : public Module {
 public:
  ConvTranspose2d(int64_t in_channels, int64_t out_channels, Pair kernel_size, Pair stride = {1},
                  Pair padding = {0}, Pair output_padding = {0}, int64_t groups = 1,
                  bool bias = true, Pair dilation = {1});
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;  // weight [in, out/groups, kh, kw]
  Pair stride, padding, output_padding, dilation;
  int64_t groups;
};

// Train mode: normalizes with the batch statistics and updates the running ones
// (momentum, unbiased variance, like PyTorch); eval mode: the running ones.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1,
                       bool affine = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias, running_mean, running_var;
  double eps, momentum;

 private:
  Tensor forward_nchw(const Tensor& x);  // x [N, C, H, W]
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;
  Shape normalized_shape;
  double eps;
};

class GroupNorm : public Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;
  int64_t num_groups;
  double eps;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(Shape normalized_shape, double eps = 1e-6, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight;
  Shape normalized_shape;
  double eps;
};

// Zeroes elements with probability p in train mode and scales the rest by
// 1/(1-p). The mask comes from bernoulli with a seed buffer that advances every
// call, so each step of a compiled training loop draws a fresh mask.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, uint64_t seed = 0);  // seed 0: nn::next_seed()
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  double p;
  Tensor seed;  // int64 scalar, a non-persistent buffer
};

// A parameter-free layer that applies a function (ReLU, GELU, ...).
class Lambda : public Module {
 public:
  Lambda(std::string name, std::function<Tensor(const Tensor&)> fn)
      : name_(std::move(name)), fn_(std::move(fn)) {}
  // A function of the layout too (pooling): fn(x, is_channels_last()).
  Lambda(std::string name, std::function<Tensor(const Tensor&, bool)> fn)
      : name_(std::move(name)), layout_fn_(std::move(fn)) {}
  Tensor forward(const Tensor& x) override {
    return fn_ ? fn_(x) : layout_fn_(x, is_channels_last());
  }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  std::function<Tensor(const Tensor&)> fn_;
  std::function<Tensor(const Tensor&, bool)> layout_fn_;
};

std::shared_ptr<Lambda> ReLU();
std::shared_ptr<Lambda> GELU(const std::string& approximate = "none");
std::shared_ptr<Lambda> SiLU();
std::shared_ptr<Lambda> Tanh();
std::shared_ptr<Lambda> Sigmoid();
std::shared_ptr<Lambda> Softmax(int64_t dim = -1);
std::shared_ptr<Lambda> Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
std::shared_ptr<Lambda> MaxPool2d(Pair kernel_size, Pair stride = {}, Pair padding = {0});
std::shared_ptr<Lambda> AvgPool2d(Pair kernel_size, Pair stride = {}, Pair padding = {0});
std::shared_ptr<Lambda> AdaptiveAvgPool2d(Pair output_size);

// Looks up rows of a [num_embeddings, embedding_dim] table by integer index.
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim);
  Tensor forward(const Tensor& indices) override;
  std::string name() const override;
  Tensor weight;
};

// Self-attention over x [batch, seq, embed] (batch_first), like
// torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True).
class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, bool causal = false, bool bias = true);
  Tensor forward(const Tensor& x) override;  // attend(x, x, x)
  Tensor attend(const Tensor& query, const Tensor& key, const Tensor& value);
  std::string name() const override;
  Tensor in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias;
  int64_t embed_dim, num_heads;
  bool causal;
};

// Runs children in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> modules);
  void push_back(ModulePtr m);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Sequential"; }
  size_t size() const { return modules_.size(); }
  Module& operator[](size_t i) const { return *modules_.at(i); }

 private:
  std::vector<ModulePtr> modules_;
};

// Holds modules (registered as "0", "1", ...) for a parent to call itself.
class ModuleList : public Module {
 public:
  ModuleList() = default;
  explicit ModuleList(std::vector<ModulePtr> modules);
  void push_back(ModulePtr m);
  Tensor forward(const Tensor& x) override;  // throws: a ModuleList is not callable
  std::string name() const override { return "ModuleList"; }
  size_t size() const { return modules_.size(); }
  Module& operator[](size_t i) const { return *modules_.at(i); }

 private:
  std::vector<ModulePtr> modules_;
};

}  // namespace ds::nn
