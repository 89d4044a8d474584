// ds::models: reference architectures written with ds::nn layers.
//
// ResNet-18/34/50/101/152 follow torchvision's `torchvision.models.resnet*` and
// GPT follows nanoGPT's `model.GPT`: parameter and buffer names and shapes equal
// theirs, so a PyTorch state dict (saved as safetensors) loads with
// load_torch_state_dict. Weights initialize as those projects initialize them.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ds/nn.h"

namespace ds::models {

// ---- ResNet (torchvision's v1.5: a bottleneck strides in its 3x3 convolution)

// conv3x3 -> bn -> relu -> conv3x3 -> bn, plus the shortcut, -> relu.
class BasicBlock : public nn::Module {
 public:
  static constexpr int64_t expansion = 1;
  BasicBlock(int64_t in_channels, int64_t channels, int64_t stride);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "BasicBlock"; }

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::Sequential> downsample;  // null: the shortcut is the identity
};

// conv1x1 -> bn -> relu -> conv3x3 (stride) -> bn -> relu -> conv1x1 (4x) -> bn,
// plus the shortcut, -> relu.
class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t expansion = 4;
  Bottleneck(int64_t in_channels, int64_t channels, int64_t stride);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Bottleneck"; }

  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::Sequential> downsample;
};

enum class BlockKind { Basic, Bottleneck };

// Input [N, 3, H, W] (H, W >= 32 keep every stage non-empty), output logits
// [N, num_classes].
class ResNet : public nn::Module {
 public:
  ResNet(BlockKind block, std::vector<int64_t> blocks_per_stage, int64_t num_classes = 1000);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<nn::Linear> fc;
  BlockKind block;
  std::vector<int64_t> blocks_per_stage;
};

std::shared_ptr<ResNet> resnet18(int64_t num_classes = 1000);
std::shared_ptr<ResNet> resnet34(int64_t num_classes = 1000);
std::shared_ptr<ResNet> resnet50(int64_t num_classes = 1000);
std::shared_ptr<ResNet> resnet101(int64_t num_classes = 1000);
std::shared_ptr<ResNet> resnet152(int64_t num_classes = 1000);

// ---- GPT (nanoGPT): pre-norm transformer blocks, learned positions, GELU (tanh),
// the output projection tied to the token embedding.

struct GPTConfig {
  int64_t block_size = 1024;  // longest sequence
  int64_t vocab_size = 50257;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;
  bool bias = true;  // biases in the linear layers and layer norms (GPT-2 has them)
};

// Causal multi-head self-attention over [B, T, C]: c_attn projects to q, k, v
// at once ([3C, C]), c_proj projects the heads back.
class CausalSelfAttention : public nn::Module {
 public:
  explicit CausalSelfAttention(const GPTConfig& config);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

  std::shared_ptr<nn::Linear> c_attn, c_proj;
  int64_t n_head, n_embd;
};

class MLP : public nn::Module {
 public:
  explicit MLP(const GPTConfig& config);
  Tensor forward(const Tensor& x) override;  // c_proj(gelu_tanh(c_fc(x)))
  std::string name() const override { return "MLP"; }

  std::shared_ptr<nn::Linear> c_fc, c_proj;
};

// x + attn(ln_1(x)), then x + mlp(ln_2(x)).
class GPTBlock : public nn::Module {
 public:
  explicit GPTBlock(const GPTConfig& config);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Block"; }

  std::shared_ptr<nn::LayerNorm> ln_1, ln_2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
};

// nanoGPT's `transformer` ModuleDict: token ids [B, T] -> final hidden states [B, T, C].
class GPTTransformer : public nn::Module {
 public:
  explicit GPTTransformer(const GPTConfig& config);
  Tensor forward(const Tensor& idx) override;
  std::string name() const override { return "Transformer"; }

  std::shared_ptr<nn::Embedding> wte, wpe;
  std::shared_ptr<nn::ModuleList> h;
  std::shared_ptr<nn::LayerNorm> ln_f;
  int64_t block_size;
};

// Token ids [B, T] (integer, T <= block_size) -> logits [B, T, vocab_size].
// The logits are transformer.wte.weight applied to the last hidden states
// (nanoGPT's lm_head, tied), so the state dict has no separate lm_head.weight.
class GPT : public nn::Module {
 public:
  explicit GPT(GPTConfig config = {});
  Tensor forward(const Tensor& idx) override;
  std::string name() const override;
  // Parameters without the position embedding (nanoGPT's get_num_params()).
  int64_t num_params(bool non_embedding = true) const;

  GPTConfig config;
  std::shared_ptr<GPTTransformer> transformer;
};

std::shared_ptr<GPT> gpt2(GPTConfig config = {});  // defaults: GPT-2 124M

// Mean next-token cross entropy of logits [B, T, V] against targets [B, T].
Tensor lm_loss(const Tensor& logits, const Tensor& targets);

// ---- PyTorch checkpoints

// Loads a torchvision / nanoGPT state dict into `model` strictly, after dropping
// the entries that PyTorch keeps and these models do not: BatchNorm's
// `num_batches_tracked` counters, nanoGPT's causal-mask buffers (`*.attn.bias`
// of shape [1, 1, T, T]) and `lm_head.weight` when it equals the tied
// `transformer.wte.weight`. Anything else missing or left over throws.
void load_torch_state_dict(nn::Module& model, std::map<std::string, Tensor> state);

}  // namespace ds::models
