// Normalization layers.
#include <sstream>

#include "ds/nn/layers.h"
#include "ir/ops/batch_norm_train.h"

namespace ds::nn {

BatchNorm2d::BatchNorm2d(int64_t c, double eps_, double momentum_, bool affine)
    : eps(eps_), momentum(momentum_) {
  if (affine) {
    weight = Tensor::full({c}, 1.0);
    bias = Tensor::zeros({c});
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
  }
  running_mean = Tensor::zeros({c});
  running_var = Tensor::full({c}, 1.0);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
}

// Channels-last x [N, H, W, C] is normalized as [N*H*W, C, 1, 1]: the channel
// axis 1, and each channel's values a column (contiguous rows of C).
Tensor BatchNorm2d::forward(const Tensor& x) {
  if (!is_channels_last()) return forward_nchw(x);
  DS_CHECK(x.ndim() == 4, ShapeError,
           "BatchNorm2d: expected channels-last input [N, H, W, C], got ", shape_str(x.shape()));
  const Shape& s = x.shape();
  return forward_nchw(x.reshape({-1, s[3], 1, 1})).reshape({-1, s[1], s[2], s[3]});
}

Tensor BatchNorm2d::forward_nchw(const Tensor& x) {
  DS_CHECK(x.ndim() == 4, ShapeError, "BatchNorm2d: expected input [N, C, H, W], got ",
           shape_str(x.shape()));
  if (!is_training()) return batch_norm(x, running_mean, running_var, weight, bias, eps);
  const int64_t c = running_mean.shape()[0];
  DS_CHECK(x.shape()[1] == c, ShapeError, "BatchNorm2d: expected ", c, " channels, got input ",
           shape_str(x.shape()));
  // One op with a fused forward and backward (batch_norm_train); its batch
  // statistics update the running ones, the variance unbiased like PyTorch's.
  // The op takes float32 weight and bias (float64 for a float64 input).
  const DType stats = x.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  auto as_stats = [&](const Tensor& t) { return t.defined() && t.dtype() != stats ? cast(t, stats) : t; };
  const BatchNormTrainResult r = batch_norm_train(x, as_stats(weight), as_stats(bias), eps);
  const double n = static_cast<double>(x.shape()[0] * x.shape()[2] * x.shape()[3]);
  const double unbias = n > 1 ? n / (n - 1) : 1.0;
  running_mean = running_mean * (1 - momentum) + r.mean * momentum;
  running_var = running_var * (1 - momentum) + r.var * (momentum * unbias);
  return r.y;
}

std::string BatchNorm2d::name() const {
  std::ostringstream os;
  os << "BatchNorm2d(" << running_mean.shape()[0] << ", eps=" << eps << ", momentum=" << momentum
     << ")";
  return os.str();
}

LayerNorm::LayerNorm(Shape shape, double eps_, bool affine) : normalized_shape(std::move(shape)), eps(eps_) {
  if (affine) {
    weight = Tensor::full(normalized_shape, 1.0);
    bias = Tensor::zeros(normalized_shape);
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, normalized_shape, weight, bias, eps); }

std::string LayerNorm::name() const { return "LayerNorm(" + shape_str(normalized_shape) + ")"; }

GroupNorm::GroupNorm(int64_t groups, int64_t channels, double eps_, bool affine)
    : num_groups(groups), eps(eps_) {
  DS_CHECK(groups > 0 && channels % groups == 0, ValueError, "GroupNorm: num_channels (", channels,
           ") must be divisible by num_groups (", groups, ")");
  if (affine) {
    weight = Tensor::full({channels}, 1.0);
    bias = Tensor::zeros({channels});
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
  }
}

Tensor GroupNorm::forward(const Tensor& x) { return group_norm(x, num_groups, weight, bias, eps); }

std::string GroupNorm::name() const {
  return "GroupNorm(" + std::to_string(num_groups) + ", eps=" + std::to_string(eps) + ")";
}

RMSNorm::RMSNorm(Shape shape, double eps_, bool affine) : normalized_shape(std::move(shape)), eps(eps_) {
  if (affine) {
    weight = Tensor::full(normalized_shape, 1.0);
    register_parameter("weight", &weight);
  }
}

Tensor RMSNorm::forward(const Tensor& x) { return rms_norm(x, normalized_shape, weight, eps); }

std::string RMSNorm::name() const { return "RMSNorm(" + shape_str(normalized_shape) + ")"; }

}  // namespace ds::nn
