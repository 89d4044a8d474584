// ds.models: the C++ model zoo (include/ds/models.h). The models are ds.nn.Module
// subclasses, so TrainStep, EvalStep and state dicts work on them unchanged.
#include <nanobind/stl/map.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "ds/models.h"

namespace ds::py {

void bind_models(nb::module_& m) {
  nb::module_ mm = m.def_submodule("models", "ResNet (torchvision) and GPT (nanoGPT) (ds::models).");
  using nn::Module;

  nb::class_<models::ResNet, Module>(mm, "ResNet",
                                     "torchvision's ResNet: images [N, 3, H, W] -> logits [N, classes]")
      .def_prop_ro("block", [](const models::ResNet& r) {
        return r.block == models::BlockKind::Basic ? "BasicBlock" : "Bottleneck";
      })
      .def_ro("blocks_per_stage", &models::ResNet::blocks_per_stage);
  for (const auto& [name, fn] :
       {std::pair{"resnet18", &models::resnet18}, {"resnet34", &models::resnet34},
        {"resnet50", &models::resnet50}, {"resnet101", &models::resnet101},
        {"resnet152", &models::resnet152}})
    mm.def(
        name,
        [fn](int64_t num_classes, bool channels_last) {
          auto model = fn(num_classes);
          model->to_channels_last(channels_last);
          return model;
        },
        nb::arg("num_classes") = 1000, nb::arg("channels_last") = false,
        "channels_last: NHWC convolutions inside (the input stays [N, 3, H, W]).");

  nb::class_<models::GPTConfig>(mm, "GPTConfig", "nanoGPT's GPTConfig (defaults: GPT-2 124M)")
      .def("__init__",
           [](models::GPTConfig* self, int64_t block_size, int64_t vocab_size, int64_t n_layer,
              int64_t n_head, int64_t n_embd, bool bias) {
             new (self) models::GPTConfig{block_size, vocab_size, n_layer, n_head, n_embd, bias};
           },
           nb::arg("block_size") = 1024, nb::arg("vocab_size") = 50257, nb::arg("n_layer") = 12,
           nb::arg("n_head") = 12, nb::arg("n_embd") = 768, nb::arg("bias") = true)
      .def_rw("block_size", &models::GPTConfig::block_size)
      .def_rw("vocab_size", &models::GPTConfig::vocab_size)
      .def_rw("n_layer", &models::GPTConfig::n_layer)
      .def_rw("n_head", &models::GPTConfig::n_head)
      .def_rw("n_embd", &models::GPTConfig::n_embd)
      .def_rw("bias", &models::GPTConfig::bias);

  nb::class_<models::GPT, Module>(mm, "GPT",
                                  "nanoGPT's GPT: token ids [B, T] -> logits [B, T, vocab_size]")
      .def(nb::init<models::GPTConfig>(), nb::arg("config") = models::GPTConfig{})
      .def_ro("config", &models::GPT::config)
      .def("num_params", &models::GPT::num_params, nb::arg("non_embedding") = true,
           "Parameter count; non_embedding leaves out the position embedding (as nanoGPT).");
  mm.def("gpt2", &models::gpt2, nb::arg("config") = models::GPTConfig{});
  mm.def("lm_loss", &models::lm_loss, nb::arg("logits"), nb::arg("targets"),
         "Mean next-token cross entropy of logits [B, T, V] against targets [B, T].");

  mm.def("load_torch_state_dict",
         [](Module& model, nb::dict state) {
           std::map<std::string, Tensor> s;
           for (auto [k, v] : state) s[nb::cast<std::string>(k)] = to_tensor(v);
           models::load_torch_state_dict(model, std::move(s));
         },
         nb::arg("model"), nb::arg("state_dict"),
         "Loads a torchvision / nanoGPT state dict, dropping num_batches_tracked, nanoGPT's "
         "causal-mask buffers and a tied lm_head.weight.");
}

}  // namespace ds::py
