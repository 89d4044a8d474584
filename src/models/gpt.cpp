// GPT as nanoGPT builds it (karpathy/nanoGPT, model.py): the same module names,
// shapes and initialization; the output projection tied to the token embedding.
#include <cmath>
#include <sstream>

#include "ds/models.h"
#include "ir/ops/attention.h"

namespace ds::models {
namespace {

// nanoGPT's _init_weights: N(0, 0.02) weights, zero biases.
std::shared_ptr<nn::Linear> linear_layer(int64_t in, int64_t out, bool bias, double stddev) {
  auto l = std::make_shared<nn::Linear>(in, out, bias);
  l->weight = nn::init::normal({out, in}, 0.0, stddev, nn::next_seed());
  if (bias) l->bias = Tensor::zeros({out});
  return l;
}

std::shared_ptr<nn::LayerNorm> layer_norm_layer(const GPTConfig& c) {
  return std::make_shared<nn::LayerNorm>(Shape{c.n_embd}, 1e-5, true);
}

// The residual projections start smaller, N(0, 0.02 / sqrt(2 n_layer)), so the
// residual stream's variance does not grow with depth (GPT-2 paper).
double residual_stddev(const GPTConfig& c) { return 0.02 / std::sqrt(2.0 * double(c.n_layer)); }

}  // namespace

CausalSelfAttention::CausalSelfAttention(const GPTConfig& c) : n_head(c.n_head), n_embd(c.n_embd) {
  DS_CHECK(c.n_head > 0 && c.n_embd % c.n_head == 0, ValueError, "GPT: n_embd (", c.n_embd,
           ") must be divisible by n_head (", c.n_head, ")");
  c_attn = register_module("c_attn", linear_layer(c.n_embd, 3 * c.n_embd, c.bias, 0.02));
  c_proj = register_module("c_proj", linear_layer(c.n_embd, c.n_embd, c.bias, residual_stddev(c)));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  DS_CHECK(x.ndim() == 3 && x.shape()[2] == n_embd, ShapeError,
           "CausalSelfAttention: expected [batch, seq, ", n_embd, "], got ", shape_str(x.shape()));
  // -1 for the batch, so a graph traced with a symbolic batch reshapes too.
  const int64_t t = x.shape()[1], d = n_embd / n_head;
  const Tensor qkv = c_attn->forward(x);  // [B, T, 3C]
  auto head = [&](int64_t part) {         // -> [B, T, n_head, d]
    return reshape(slice(qkv, 2, part * n_embd, (part + 1) * n_embd), {-1, t, n_head, d});
  };
  const Tensor q = head(0), k = head(1), v = head(2);
  // One op (a flash-attention kernel on CUDA): softmax(q k^T / sqrt(d) + causal mask) v,
  // reading and writing [B, T, n_head, d] (layout "bshd"), so no transposes around it.
  const Tensor y = scaled_dot_product_attention(q, k, v, /*causal=*/true, 0, "bshd");
  return c_proj->forward(reshape(y, {-1, t, n_embd}));
}

std::string CausalSelfAttention::name() const {
  std::ostringstream os;
  os << "CausalSelfAttention(n_embd=" << n_embd << ", n_head=" << n_head << ")";
  return os.str();
}

MLP::MLP(const GPTConfig& c) {
  c_fc = register_module("c_fc", linear_layer(c.n_embd, 4 * c.n_embd, c.bias, 0.02));
  c_proj = register_module("c_proj", linear_layer(4 * c.n_embd, c.n_embd, c.bias, residual_stddev(c)));
}

Tensor MLP::forward(const Tensor& x) { return c_proj->forward(gelu(c_fc->forward(x), "tanh")); }

GPTBlock::GPTBlock(const GPTConfig& c) {
  ln_1 = register_module("ln_1", layer_norm_layer(c));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(c));
  ln_2 = register_module("ln_2", layer_norm_layer(c));
  mlp = register_module("mlp", std::make_shared<MLP>(c));
}

Tensor GPTBlock::forward(const Tensor& x) {
  const Tensor h = x + attn->forward(ln_1->forward(x));
  return h + mlp->forward(ln_2->forward(h));
}

GPTTransformer::GPTTransformer(const GPTConfig& c) : block_size(c.block_size) {
  wte = register_module("wte", std::make_shared<nn::Embedding>(c.vocab_size, c.n_embd));
  wte->weight = nn::init::normal({c.vocab_size, c.n_embd}, 0.0, 0.02, nn::next_seed());
  wpe = register_module("wpe", std::make_shared<nn::Embedding>(c.block_size, c.n_embd));
  wpe->weight = nn::init::normal({c.block_size, c.n_embd}, 0.0, 0.02, nn::next_seed());
  h = register_module("h", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(std::make_shared<GPTBlock>(c));
  ln_f = register_module("ln_f", layer_norm_layer(c));
}

Tensor GPTTransformer::forward(const Tensor& idx) {
  DS_CHECK(idx.ndim() == 2, ShapeError, "GPT: expected token ids [batch, seq], got ",
           shape_str(idx.shape()));
  DS_CHECK(is_integral(idx.dtype()), TypeError, "GPT: token ids must be integers, got ",
           dtype_name(idx.dtype()));
  const int64_t t = idx.shape()[1];
  DS_CHECK(t >= 1 && t <= block_size, ShapeError, "GPT: sequence length ", t,
           " must be in [1, block_size = ", block_size, "]");
  const Tensor pos = arange(0, static_cast<double>(t), 1.0, DType::Int64);
  Tensor x = wte->forward(idx) + wpe->forward(pos);  // [B, T, C] + [T, C]
  for (size_t i = 0; i < h->size(); ++i) x = (*h)[i].forward(x);
  return ln_f->forward(x);
}

GPT::GPT(GPTConfig c) : config(c) {
  DS_CHECK(c.block_size > 0 && c.vocab_size > 0 && c.n_layer > 0 && c.n_embd > 0, ValueError,
           "GPT: block_size, vocab_size, n_layer and n_embd must be > 0, got ", c.block_size, ", ",
           c.vocab_size, ", ", c.n_layer, ", ", c.n_embd);
  DS_CHECK(c.n_head > 0 && c.n_embd % c.n_head == 0, ValueError, "GPT: n_embd (", c.n_embd,
           ") must be divisible by n_head (", c.n_head, ")");
  transformer = register_module("transformer", std::make_shared<GPTTransformer>(c));
}

Tensor GPT::forward(const Tensor& idx) {
  return linear(transformer->forward(idx), transformer->wte->weight);
}

std::string GPT::name() const {
  std::ostringstream os;
  os << "GPT(n_layer=" << config.n_layer << ", n_head=" << config.n_head
     << ", n_embd=" << config.n_embd << ", block_size=" << config.block_size
     << ", vocab_size=" << config.vocab_size << ")";
  return os.str();
}

int64_t GPT::num_params(bool non_embedding) const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return non_embedding ? n - transformer->wpe->weight.numel() : n;
}

std::shared_ptr<GPT> gpt2(GPTConfig c) { return std::make_shared<GPT>(c); }

Tensor lm_loss(const Tensor& logits, const Tensor& targets) {
  DS_CHECK(logits.ndim() == 3 && targets.ndim() == 2 &&
               logits.shape()[0] == targets.shape()[0] && logits.shape()[1] == targets.shape()[1],
           ShapeError, "lm_loss: expected logits [B, T, V] and targets [B, T], got ",
           shape_str(logits.shape()), " and ", shape_str(targets.shape()));
  const int64_t v = logits.shape()[2];
  return nn::cross_entropy(reshape(logits, {-1, v}), reshape(targets, {-1}));
}

}  // namespace ds::models
