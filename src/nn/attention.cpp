// Multi-head attention (batch_first), with an optional causal mask.
#include <cmath>
#include <limits>
#include <sstream>

#include "ds/nn/init.h"
#include "ds/nn/layers.h"

namespace ds::nn {

MultiheadAttention::MultiheadAttention(int64_t e, int64_t h, bool causal_, bool has_bias)
    : embed_dim(e), num_heads(h), causal(causal_) {
  DS_CHECK(h > 0 && e % h == 0, ValueError, "MultiheadAttention: embed_dim (", e,
           ") must be divisible by num_heads (", h, ")");
  // PyTorch: xavier_uniform in-projection, zero biases, default-initialized out-projection.
  in_proj_weight = init::xavier_uniform({3 * e, e}, 1.0, next_seed());
  out_proj_weight = init::kaiming_uniform({e, e}, std::sqrt(5.0), next_seed());
  register_parameter("in_proj_weight", &in_proj_weight);
  if (has_bias) {
    in_proj_bias = Tensor::zeros({3 * e});
    register_parameter("in_proj_bias", &in_proj_bias);
  }
  register_parameter("out_proj.weight", &out_proj_weight);
  if (has_bias) {
    out_proj_bias = Tensor::zeros({e});
    register_parameter("out_proj.bias", &out_proj_bias);
  }
}

Tensor MultiheadAttention::forward(const Tensor& x) { return attend(x, x, x); }

Tensor MultiheadAttention::attend(const Tensor& query, const Tensor& key, const Tensor& value) {
  DS_CHECK(query.ndim() == 3 && key.ndim() == 3 && value.ndim() == 3, ShapeError,
           "MultiheadAttention: expected [batch, seq, embed] inputs, got ",
           shape_str(query.shape()), ", ", shape_str(key.shape()), ", ", shape_str(value.shape()));
  const int64_t e = embed_dim, h = num_heads, d = e / h;
  const int64_t b = query.shape()[0], sq = query.shape()[1], sk = key.shape()[1];
  auto project = [&](const Tensor& x, int64_t part, int64_t seq) {
    Tensor w = slice(in_proj_weight, 0, part * e, (part + 1) * e);
    Tensor bias = in_proj_bias.defined() ? slice(in_proj_bias, 0, part * e, (part + 1) * e) : Tensor();
    return permute(reshape(linear(x, w, bias), {b, seq, h, d}), {0, 2, 1, 3});  // [b, h, s, d]
  };
  Tensor q = project(query, 0, sq), k = project(key, 1, sk), v = project(value, 2, sk);
  Tensor scores = matmul(q, transpose(k, -2, -1)) * (1.0 / std::sqrt(static_cast<double>(d)));
  if (causal) {
    // -inf above the diagonal: position i attends to positions <= i.
    Tensor mask = Tensor::zeros({sq, sk}, DType::Float32);
    for (int64_t i = 0; i < sq; ++i)
      for (int64_t j = i + 1; j < sk; ++j)
        mask.data<float>()[i * sk + j] = -std::numeric_limits<float>::infinity();
    scores = scores + mask.to(scores.dtype());
  }
  Tensor out = matmul(softmax(scores, -1), v);                     // [b, h, sq, d]
  out = reshape(permute(out, {0, 2, 1, 3}), {b, sq, e});
  return linear(out, out_proj_weight, out_proj_bias);
}

std::string MultiheadAttention::name() const {
  std::ostringstream os;
  os << "MultiheadAttention(embed_dim=" << embed_dim << ", num_heads=" << num_heads
     << (causal ? ", causal=True" : "") << ")";
  return os.str();
}

}  // namespace ds::nn
