// Convolution layers.
#include <cmath>
#include <sstream>

#include "ds/channels_last.h"
#include "ds/nn/init.h"
#include "ds/nn/layers.h"
#include "nn/layer_helpers.h"

namespace ds::nn {
namespace {

Pair kernel_hw(const Pair& k, const std::string& layer) {
  DS_CHECK(k.size() == 1 || k.size() == 2, ValueError, layer,
           ": kernel_size takes one or two values, got ", k.size());
  return k.size() == 1 ? Pair{k[0], k[0]} : k;
}

void check_groups(int64_t in, int64_t out, int64_t groups, const std::string& layer) {
  DS_CHECK(groups > 0 && in % groups == 0 && out % groups == 0, ValueError, layer,
           ": in_channels (", in, ") and out_channels (", out, ") must be divisible by groups (",
           groups, ")");
}

}  // namespace

Conv2d::Conv2d(int64_t in, int64_t out, Pair kernel, Pair stride_, Pair padding_, Pair dilation_,
               int64_t groups_, bool has_bias)
    : stride(std::move(stride_)), padding(std::move(padding_)), dilation(std::move(dilation_)),
      groups(groups_) {
  check_groups(in, out, groups, "Conv2d");
  const Pair k = kernel_hw(kernel, "Conv2d");
  weight = init::kaiming_uniform({out, in / groups, k[0], k[1]}, std::sqrt(5.0), next_seed());
  register_parameter("weight", &weight);
  if (has_bias) {
    bias = default_bias(out, in / groups * k[0] * k[1]);
    register_parameter("bias", &bias);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  if (is_channels_last())
    return conv2d_channels_last(x, weight, bias, stride, padding, dilation, groups);
  return conv2d(x, weight, bias, stride, padding, dilation, groups);
}

std::string Conv2d::name() const {
  std::ostringstream os;
  const Shape& w = weight.shape();
  os << "Conv2d(" << w[1] * groups << ", " << w[0] << ", kernel_size=" << pair_str({w[2], w[3]})
     << ", stride=" << pair_str(stride) << ", padding=" << pair_str(padding) << ")";
  return os.str();
}

ConvTranspose2d::ConvTranspose2d(int64_t in, int64_t out, Pair kernel, Pair stride_, Pair padding_,
                                 Pair output_padding_, int64_t groups_, bool has_bias,
                                 Pair dilation_)
    : stride(std::move(stride_)), padding(std::move(padding_)),
      output_padding(std::move(output_padding_)), dilation(std::move(dilation_)), groups(groups_) {
  check_groups(in, out, groups, "ConvTranspose2d");
  const Pair k = kernel_hw(kernel, "ConvTranspose2d");
  // PyTorch computes fan_in from weight dim 1 (out/groups) for transposed convs too.
  weight = init::kaiming_uniform({in, out / groups, k[0], k[1]}, std::sqrt(5.0), next_seed());
  register_parameter("weight", &weight);
  if (has_bias) {
    bias = default_bias(out, out / groups * k[0] * k[1]);
    register_parameter("bias", &bias);
  }
}

Tensor ConvTranspose2d::forward(const Tensor& x) {
  return conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation, groups);
}

std::string ConvTranspose2d::name() const {
  std::ostringstream os;
  const Shape& w = weight.shape();
  os << "ConvTranspose2d(" << w[0] << ", " << w[1] * groups
     << ", kernel_size=" << pair_str({w[2], w[3]}) << ", stride=" << pair_str(stride)
     << ", padding=" << pair_str(padding) << ")";
  return os.str();
}

}  // namespace ds::nn
