// Loading torchvision and nanoGPT state dicts: the same names and shapes, less the
// entries PyTorch keeps that these models have no slot for.
#include <string_view>

#include "ds/models.h"

namespace ds::models {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool identical(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  if (a.numel() == 0) return true;
  const Tensor diff = abs(cast(a, DType::Float64) - cast(b, DType::Float64));
  return max(diff).item<double>() == 0.0;
}

}  // namespace

void load_torch_state_dict(nn::Module& model, std::map<std::string, Tensor> state) {
  const std::map<std::string, Tensor> ours = model.state_dict();
  for (auto it = state.begin(); it != state.end();) {
    const std::string& key = it->first;
    const Tensor& value = it->second;
    bool drop = false;
    if (!ours.count(key)) {
      // BatchNorm's step counter only matters for momentum=None (cumulative averages).
      drop = ends_with(key, ".num_batches_tracked");
      // nanoGPT's causal mask when flash attention is unavailable: a constant.
      drop = drop || (ends_with(key, ".attn.bias") && value.ndim() == 4);
      const auto wte = state.find("transformer.wte.weight");
      if (key == "lm_head.weight" && ours.count("transformer.wte.weight") && wte != state.end()) {
        DS_CHECK(identical(value, wte->second), ValueError,
                 "load_torch_state_dict: lm_head.weight differs from transformer.wte.weight, "
                 "but this model ties the output projection to the token embedding");
        drop = true;
      }
    }
    it = drop ? state.erase(it) : std::next(it);
  }
  model.load_state_dict(state, /*strict=*/true);
}

}  // namespace ds::models
