// ResNet as torchvision builds it (torchvision/models/resnet.py): the same module
// names, shapes and initialization.
#include <cmath>
#include <sstream>

#include "ds/channels_last.h"
#include "ds/models.h"

namespace ds::models {
namespace {

// torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") for every conv.
std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                 int64_t padding) {
  auto c = std::make_shared<nn::Conv2d>(in, out, Pair{kernel}, Pair{stride}, Pair{padding},
                                        Pair{1}, 1, /*bias=*/false);
  const double fan_out = static_cast<double>(out * kernel * kernel);
  c->weight = nn::init::normal(c->weight.shape(), 0.0, std::sqrt(2.0 / fan_out), nn::next_seed());
  return c;
}

// The shortcut when a block changes the resolution or the width: 1x1 conv + bn,
// registered as "downsample.0" / "downsample.1".
std::shared_ptr<nn::Sequential> downsample_if_needed(int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return std::make_shared<nn::Sequential>(
      std::vector<nn::ModulePtr>{conv(in, out, 1, stride, 0), std::make_shared<nn::BatchNorm2d>(out)});
}

Tensor shortcut(const std::shared_ptr<nn::Sequential>& downsample, const Tensor& x) {
  return downsample ? downsample->forward(x) : x;
}

template <typename Block>
std::shared_ptr<nn::Sequential> make_stage(int64_t& in_channels, int64_t channels, int64_t blocks,
                                           int64_t stride) {
  auto stage = std::make_shared<nn::Sequential>();
  for (int64_t i = 0; i < blocks; ++i) {
    stage->push_back(std::make_shared<Block>(in_channels, channels, i == 0 ? stride : 1));
    in_channels = channels * Block::expansion;
  }
  return stage;
}

}  // namespace

BasicBlock::BasicBlock(int64_t in, int64_t channels, int64_t stride) {
  conv1 = register_module("conv1", conv(in, channels, 3, stride, 1));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(channels));
  conv2 = register_module("conv2", conv(channels, channels, 3, 1, 1));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(channels));
  downsample = downsample_if_needed(in, channels * expansion, stride);
  if (downsample) register_module("downsample", downsample);
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = relu(bn1->forward(conv1->forward(x)));
  out = bn2->forward(conv2->forward(out));
  return relu(out + shortcut(downsample, x));
}

Bottleneck::Bottleneck(int64_t in, int64_t channels, int64_t stride) {
  const int64_t out = channels * expansion;
  conv1 = register_module("conv1", conv(in, channels, 1, 1, 0));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(channels));
  conv2 = register_module("conv2", conv(channels, channels, 3, stride, 1));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(channels));
  conv3 = register_module("conv3", conv(channels, out, 1, 1, 0));
  bn3 = register_module("bn3", std::make_shared<nn::BatchNorm2d>(out));
  downsample = downsample_if_needed(in, out, stride);
  if (downsample) register_module("downsample", downsample);
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor out = relu(bn1->forward(conv1->forward(x)));
  out = relu(bn2->forward(conv2->forward(out)));
  out = bn3->forward(conv3->forward(out));
  return relu(out + shortcut(downsample, x));
}

ResNet::ResNet(BlockKind block_, std::vector<int64_t> blocks, int64_t num_classes)
    : block(block_), blocks_per_stage(std::move(blocks)) {
  DS_CHECK(blocks_per_stage.size() == 4, ValueError,
           "ResNet: expected 4 stages (blocks per stage), got ", blocks_per_stage.size());
  for (int64_t n : blocks_per_stage)
    DS_CHECK(n > 0, ValueError, "ResNet: every stage needs at least one block, got ", n);
  DS_CHECK(num_classes > 0, ValueError, "ResNet: num_classes must be > 0, got ", num_classes);
  conv1 = register_module("conv1", conv(3, 64, 7, 2, 3));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(64));
  int64_t in = 64;
  const int64_t widths[4] = {64, 128, 256, 512};
  std::shared_ptr<nn::Sequential>* stages[4] = {&layer1, &layer2, &layer3, &layer4};
  for (int i = 0; i < 4; ++i) {
    const int64_t stride = i == 0 ? 1 : 2;
    *stages[i] = block == BlockKind::Basic
                     ? make_stage<BasicBlock>(in, widths[i], blocks_per_stage[i], stride)
                     : make_stage<Bottleneck>(in, widths[i], blocks_per_stage[i], stride);
    register_module("layer" + std::to_string(i + 1), *stages[i]);
  }
  fc = register_module("fc", std::make_shared<nn::Linear>(in, num_classes));
}

Tensor ResNet::forward(const Tensor& x) {
  DS_CHECK(x.ndim() == 4 && x.shape()[1] == 3, ShapeError,
           "ResNet: expected images [N, 3, H, W], got ", shape_str(x.shape()));
  // Channels-last (to_channels_last()): the NCHW input permuted once; every
  // layer then takes and returns [N, H, W, C].
  const bool last = is_channels_last();
  Tensor y = relu(bn1->forward(conv1->forward(last ? ds::to_channels_last(x) : x)));
  y = last ? max_pool2d_channels_last(y, {3}, {2}, {1}) : max_pool2d(y, {3}, {2}, {1});
  for (auto* stage : {&layer1, &layer2, &layer3, &layer4}) y = (*stage)->forward(y);
  // torchvision's AdaptiveAvgPool2d(1) + flatten, as one mean over H and W (a
  // reduction every backend has).
  return fc->forward(last ? mean(y, {1, 2}) : mean(y, {2, 3}));
}

std::string ResNet::name() const {
  std::ostringstream os;
  os << "ResNet(" << (block == BlockKind::Basic ? "BasicBlock" : "Bottleneck") << ", [";
  for (size_t i = 0; i < blocks_per_stage.size(); ++i) os << (i ? ", " : "") << blocks_per_stage[i];
  os << "], num_classes=" << fc->out_features << ")";
  return os.str();
}

std::shared_ptr<ResNet> resnet18(int64_t n) {
  return std::make_shared<ResNet>(BlockKind::Basic, std::vector<int64_t>{2, 2, 2, 2}, n);
}
std::shared_ptr<ResNet> resnet34(int64_t n) {
  return std::make_shared<ResNet>(BlockKind::Basic, std::vector<int64_t>{3, 4, 6, 3}, n);
}
std::shared_ptr<ResNet> resnet50(int64_t n) {
  return std::make_shared<ResNet>(BlockKind::Bottleneck, std::vector<int64_t>{3, 4, 6, 3}, n);
}
std::shared_ptr<ResNet> resnet101(int64_t n) {
  return std::make_shared<ResNet>(BlockKind::Bottleneck, std::vector<int64_t>{3, 4, 23, 3}, n);
}
std::shared_ptr<ResNet> resnet152(int64_t n) {
  return std::make_shared<ResNet>(BlockKind::Bottleneck, std::vector<int64_t>{3, 8, 36, 3}, n);
}

}  // namespace ds::models
