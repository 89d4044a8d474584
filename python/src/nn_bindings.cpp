// ds.nn, ds.optim and the autodiff transforms: thin bindings of the C++ API
// (include/ds/nn.h, optim.h, autodiff.h). Layers keep torch.nn's names and
// keyword arguments; a whole training step runs as one compiled executable
// (optim.TrainStep), so Python only feeds batches.
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "ds/autodiff.h"
#include "ds/nn.h"
#include "ds/optim.h"

namespace ds::py {

void bind_module_base(nb::module_& nnm);  // nn_bindings_module.cpp: Module and Python subclasses

namespace {

using nn::Module;

// 3 or (3, 5) -> Pair; None -> empty (the op's default).
Pair to_pair(nb::handle h) {
  if (h.is_none()) return {};
  if (nb::isinstance<nb::int_>(h)) return {nb::cast<int64_t>(h)};
  return nb::cast<std::vector<int64_t>>(h);
}

Shape to_shape(nb::handle h) {
  if (nb::isinstance<nb::int_>(h)) return {nb::cast<int64_t>(h)};
  return nb::cast<std::vector<int64_t>>(h);
}

void bind_modules(nb::module_& nnm) {
  bind_module_base(nnm);

  nb::class_<nn::Linear, Module>(nnm, "Linear")
      .def(nb::init<int64_t, int64_t, bool>(), nb::arg("in_features"), nb::arg("out_features"),
           nb::arg("bias") = true)
      .def_rw("weight", &nn::Linear::weight)
      .def_rw("bias", &nn::Linear::bias);
  nb::class_<nn::Conv2d, Module>(nnm, "Conv2d")
      .def("__init__",
           [](nn::Conv2d* self, int64_t in, int64_t out, nb::handle k, nb::handle stride,
              nb::handle padding, nb::handle dilation, int64_t groups, bool bias) {
             new (self) nn::Conv2d(in, out, to_pair(k), to_pair(stride), to_pair(padding),
                                   to_pair(dilation), groups, bias);
           },
           nb::arg("in_channels"), nb::arg("out_channels"), nb::arg("kernel_size"),
           nb::arg("stride") = 1, nb::arg("padding") = 0, nb::arg("dilation") = 1,
           nb::arg("groups") = 1, nb::arg("bias") = true)
      .def_rw("weight", &nn::Conv2d::weight)
      .def_rw("bias", &nn::Conv2d::bias);
  nb::class_<nn::ConvTranspose2d, Module>(nnm, "ConvTranspose2d")
      .def("__init__",
           [](nn::ConvTranspose2d* self, int64_t in, int64_t out, nb::handle k, nb::handle stride,
              nb::handle padding, nb::handle output_padding, int64_t groups, bool bias,
              nb::handle dilation) {
             new (self) nn::ConvTranspose2d(in, out, to_pair(k), to_pair(stride), to_pair(padding),
                                            to_pair(output_padding), groups, bias,
                                            to_pair(dilation));
           },
           nb::arg("in_channels"), nb::arg("out_channels"), nb::arg("kernel_size"),
           nb::arg("stride") = 1, nb::arg("padding") = 0, nb::arg("output_padding") = 0,
           nb::arg("groups") = 1, nb::arg("bias") = true, nb::arg("dilation") = 1)
      .def_rw("weight", &nn::ConvTranspose2d::weight)
      .def_rw("bias", &nn::ConvTranspose2d::bias);
  nb::class_<nn::BatchNorm2d, Module>(nnm, "BatchNorm2d")
      .def(nb::init<int64_t, double, double, bool>(), nb::arg("num_features"),
           nb::arg("eps") = 1e-5, nb::arg("momentum") = 0.1, nb::arg("affine") = true)
      .def_rw("weight", &nn::BatchNorm2d::weight)
      .def_rw("bias", &nn::BatchNorm2d::bias)
      .def_rw("running_mean", &nn::BatchNorm2d::running_mean)
      .def_rw("running_var", &nn::BatchNorm2d::running_var);
  nb::class_<nn::LayerNorm, Module>(nnm, "LayerNorm")
      .def("__init__",
           [](nn::LayerNorm* self, nb::handle shape, double eps, bool affine) {
             new (self) nn::LayerNorm(to_shape(shape), eps, affine);
           },
           nb::arg("normalized_shape"), nb::arg("eps") = 1e-5,
           nb::arg("elementwise_affine") = true)
      .def_rw("weight", &nn::LayerNorm::weight)
      .def_rw("bias", &nn::LayerNorm::bias);
  nb::class_<nn::GroupNorm, Module>(nnm, "GroupNorm")
      .def(nb::init<int64_t, int64_t, double, bool>(), nb::arg("num_groups"),
           nb::arg("num_channels"), nb::arg("eps") = 1e-5, nb::arg("affine") = true)
      .def_rw("weight", &nn::GroupNorm::weight)
      .def_rw("bias", &nn::GroupNorm::bias);
  nb::class_<nn::RMSNorm, Module>(nnm, "RMSNorm")
      .def("__init__",
           [](nn::RMSNorm* self, nb::handle shape, double eps, bool affine) {
             new (self) nn::RMSNorm(to_shape(shape), eps, affine);
           },
           nb::arg("normalized_shape"), nb::arg("eps") = 1e-6,
           nb::arg("elementwise_affine") = true)
      .def_rw("weight", &nn::RMSNorm::weight);
  nb::class_<nn::Dropout, Module>(nnm, "Dropout")
      .def(nb::init<double, uint64_t>(), nb::arg("p") = 0.5, nb::arg("seed") = 0);
  nb::class_<nn::Embedding, Module>(nnm, "Embedding")
      .def(nb::init<int64_t, int64_t>(), nb::arg("num_embeddings"), nb::arg("embedding_dim"))
      .def_rw("weight", &nn::Embedding::weight);
  nb::class_<nn::MultiheadAttention, Module>(nnm, "MultiheadAttention")
      .def(nb::init<int64_t, int64_t, bool, bool>(), nb::arg("embed_dim"), nb::arg("num_heads"),
           nb::arg("causal") = false, nb::arg("bias") = true)
      .def("attend", &nn::MultiheadAttention::attend, nb::arg("query"), nb::arg("key"),
           nb::arg("value"));
  nb::class_<nn::Lambda, Module>(nnm, "Lambda");

  nnm.def("ReLU", &nn::ReLU);
  nnm.def("GELU", &nn::GELU, nb::arg("approximate") = "none");
  nnm.def("SiLU", &nn::SiLU);
  nnm.def("Tanh", &nn::Tanh);
  nnm.def("Sigmoid", &nn::Sigmoid);
  nnm.def("Softmax", &nn::Softmax, nb::arg("dim") = -1);
  nnm.def("Flatten", &nn::Flatten, nb::arg("start_dim") = 1, nb::arg("end_dim") = -1);
  nnm.def("MaxPool2d",
          [](nb::handle k, nb::handle s, nb::handle p) {
            return nn::MaxPool2d(to_pair(k), to_pair(s), to_pair(p));
          },
          nb::arg("kernel_size"), nb::arg("stride") = nb::none(), nb::arg("padding") = 0);
  nnm.def("AvgPool2d",
          [](nb::handle k, nb::handle s, nb::handle p) {
            return nn::AvgPool2d(to_pair(k), to_pair(s), to_pair(p));
          },
          nb::arg("kernel_size"), nb::arg("stride") = nb::none(), nb::arg("padding") = 0);
  nnm.def("AdaptiveAvgPool2d", [](nb::handle s) { return nn::AdaptiveAvgPool2d(to_pair(s)); },
          nb::arg("output_size"));

  nb::class_<nn::Sequential, Module>(nnm, "Sequential")
      .def("__init__",
           [](nn::Sequential* self, nb::args modules) {
             new (self) nn::Sequential();
             for (nb::handle m : modules) self->push_back(nb::cast<std::shared_ptr<Module>>(m));
           })
      .def("append", &nn::Sequential::push_back, nb::arg("module"))
      .def("__len__", &nn::Sequential::size)
      .def("__getitem__", [](const nn::Sequential& s, size_t i) -> Module& { return s[i]; },
           nb::rv_policy::reference_internal);
  nb::class_<nn::ModuleList, Module>(nnm, "ModuleList")
      .def("__init__",
           [](nn::ModuleList* self, std::vector<std::shared_ptr<Module>> modules) {
             new (self) nn::ModuleList(std::move(modules));
           },
           nb::arg("modules") = std::vector<std::shared_ptr<Module>>{})
      .def("append", &nn::ModuleList::push_back, nb::arg("module"))
      .def("__len__", &nn::ModuleList::size)
      .def("__getitem__", [](const nn::ModuleList& s, size_t i) -> Module& { return s[i]; },
           nb::rv_policy::reference_internal);

  nnm.def("manual_seed", &nn::manual_seed, nb::arg("seed"),
          "Sets the seed sequence that layers draw their initial weights from.");

  nb::module_ f = nnm.def_submodule("functional", "Losses as compositions of ds ops.");
  // Inputs may be tensors or anything array-like (numpy arrays, lists).
  f.def("cross_entropy",
        [](nb::handle x, nb::handle t, double smoothing, int64_t ignore, const std::string& r) {
          return nn::cross_entropy(to_tensor(x), to_tensor(t), smoothing, ignore, r);
        },
        nb::arg("input"), nb::arg("target"), nb::arg("label_smoothing") = 0.0,
        nb::arg("ignore_index") = -100, nb::arg("reduction") = "mean");
  f.def("nll_loss",
        [](nb::handle x, nb::handle t, int64_t ignore, const std::string& r) {
          return nn::nll_loss(to_tensor(x), to_tensor(t), ignore, r);
        },
        nb::arg("input"), nb::arg("target"), nb::arg("ignore_index") = -100,
        nb::arg("reduction") = "mean");
  f.def("mse_loss",
        [](nb::handle x, nb::handle t, const std::string& r) {
          return nn::mse_loss(to_tensor(x), to_tensor(t), r);
        },
        nb::arg("input"), nb::arg("target"), nb::arg("reduction") = "mean");
  f.def("l1_loss",
        [](nb::handle x, nb::handle t, const std::string& r) {
          return nn::l1_loss(to_tensor(x), to_tensor(t), r);
        },
        nb::arg("input"), nb::arg("target"), nb::arg("reduction") = "mean");
  f.def("smooth_l1_loss",
        [](nb::handle x, nb::handle t, double beta, const std::string& r) {
          return nn::smooth_l1_loss(to_tensor(x), to_tensor(t), beta, r);
        },
        nb::arg("input"), nb::arg("target"), nb::arg("beta") = 1.0, nb::arg("reduction") = "mean");
  f.def("binary_cross_entropy_with_logits",
        [](nb::handle x, nb::handle t, const std::string& r) {
          return nn::binary_cross_entropy_with_logits(to_tensor(x), to_tensor(t), r);
        },
        nb::arg("input"), nb::arg("target"), nb::arg("reduction") = "mean");
}

void bind_optim(nb::module_& om) {
  nb::class_<optim::Optimizer>(om, "Optimizer")
      .def_prop_rw("lr", &optim::Optimizer::lr, &optim::Optimizer::set_lr)
      .def_prop_ro("steps", &optim::Optimizer::steps)
      .def("step",
           [](optim::Optimizer& o, Module& model, const std::vector<Tensor>& grads) {
             std::vector<Tensor*> slots;
             for (auto& [_, slot] : model.parameter_slots()) slots.push_back(slot);
             o.step(slots, grads);
           },
           nb::arg("model"), nb::arg("grads"),
           "Eager update of model's parameters (in named_parameters order) from `grads`.");
  nb::class_<optim::SGD, optim::Optimizer>(om, "SGD")
      .def("__init__",
           [](optim::SGD* self, double lr, double momentum, double weight_decay, bool nesterov) {
             new (self) optim::SGD({lr, momentum, weight_decay, nesterov});
           },
           nb::arg("lr") = 1e-3, nb::arg("momentum") = 0.0, nb::arg("weight_decay") = 0.0,
           nb::arg("nesterov") = false);
  nb::class_<optim::Adam, optim::Optimizer>(om, "Adam")
      .def("__init__",
           [](optim::Adam* self, double lr, std::pair<double, double> betas, double eps,
              double weight_decay) {
             new (self) optim::Adam({lr, betas.first, betas.second, eps, weight_decay});
           },
           nb::arg("lr") = 1e-3, nb::arg("betas") = std::make_pair(0.9, 0.999),
           nb::arg("eps") = 1e-8, nb::arg("weight_decay") = 0.0);
  nb::class_<optim::AdamW, optim::Adam>(om, "AdamW")
      .def("__init__",
           [](optim::AdamW* self, double lr, std::pair<double, double> betas, double eps,
              double weight_decay) {
             new (self) optim::AdamW({lr, betas.first, betas.second, eps, weight_decay});
           },
           nb::arg("lr") = 1e-3, nb::arg("betas") = std::make_pair(0.9, 0.999),
           nb::arg("eps") = 1e-8, nb::arg("weight_decay") = 1e-2);

  om.def("clip_grad_norm", &optim::clip_grad_norm, nb::arg("grads"), nb::arg("max_norm"),
         "Returns (clipped grads, total norm before clipping).");

  nb::class_<optim::LRSchedule>(om, "LRSchedule")
      .def("lr", &optim::LRSchedule::lr, nb::arg("step"))
      .def("apply", &optim::LRSchedule::apply, nb::arg("optimizer"), nb::arg("step"));
  nb::class_<optim::StepLR, optim::LRSchedule>(om, "StepLR")
      .def(nb::init<double, int64_t, double>(), nb::arg("base_lr"), nb::arg("step_size"),
           nb::arg("gamma") = 0.1);
  nb::class_<optim::CosineAnnealingLR, optim::LRSchedule>(om, "CosineAnnealingLR")
      .def(nb::init<double, int64_t, double>(), nb::arg("base_lr"), nb::arg("t_max"),
           nb::arg("eta_min") = 0.0);
  nb::class_<optim::LinearWarmup, optim::LRSchedule>(om, "LinearWarmup")
      .def(nb::init<std::shared_ptr<optim::LRSchedule>, int64_t, double>(), nb::arg("after"),
           nb::arg("warmup_steps"), nb::arg("start_factor") = 0.0);
  nb::class_<optim::OneCycleLR, optim::LRSchedule>(om, "OneCycleLR")
      .def(nb::init<double, int64_t, double, double, double>(), nb::arg("max_lr"),
           nb::arg("total_steps"), nb::arg("pct_start") = 0.3, nb::arg("div_factor") = 25.0,
           nb::arg("final_div_factor") = 1e4);

  // TrainStep and EvalStep keep a reference to their module and optimizer: the
  // ds.optim classes (optim.py) subclass these and hold them as attributes, which the
  // garbage collector sees (a keep_alive would hide them, leaving a model defined in
  // __main__ in an uncollectable cycle at exit).
  nb::class_<optim::TrainStep>(om, "TrainStep",
                               "forward + loss + backward + update compiled into one executable")
      .def("__init__",
           [](optim::TrainStep* self, Module& model, optim::Optimizer& opt, optim::LossFn loss,
              double clip, const std::string& target, const std::string& precision,
              int64_t memory_budget, bool return_output) {
             optim::TrainStepOptions o{clip, target, precision};
             o.memory_budget = memory_budget;
             o.return_output = return_output;
             new (self) optim::TrainStep(model, opt, std::move(loss), o);
           },
           nb::arg("model"), nb::arg("optimizer"), nb::arg("loss_fn"),
           nb::arg("clip_grad_norm") = 0.0, nb::arg("target") = "cpu",
           nb::arg("precision") = "fp32", nb::arg("memory_budget") = 0,
           nb::arg("return_output") = true,
           "memory_budget (bytes, 0: unlimited): a batch whose step needs more runs as "
           "micro-batches with gradient accumulation and one update (see micro_batch_size). "
           "return_output=False: step() returns (loss, None) and computes no copy of the "
           "model output.")
      .def("micro_batch_size",
           [](optim::TrainStep& s, nb::handle x, nb::handle y) {
             const Tensor a = to_tensor(x), b = to_tensor(y);
             return s.micro_batch_size({a.dtype(), a.shape()}, {b.dtype(), b.shape()});
           },
           nb::arg("input"), nb::arg("target"),
           "Rows per micro-batch for this input signature (the batch itself when it fits the "
           "memory_budget); compiles the step, so a batch that cannot fit raises here.")
      .def("explain",
           [](optim::TrainStep& s, const Tensor& x, const Tensor& y) {
             return s.executable({x.dtype(), x.shape()}, {y.dtype(), y.shape()}).explain();
           },
           nb::arg("input"), nb::arg("target"),
           "The compiled step's explain() for this input signature (compiling it if needed).")
      .def("step",
           [](optim::TrainStep& s, nb::handle x, nb::handle y) {
             optim::StepResult r = s.step(to_tensor(x), to_tensor(y));
             return nb::make_tuple(r.loss, r.output.defined() ? nb::cast(r.output) : nb::none());
           },
           nb::arg("input"), nb::arg("target"),
           "Runs one step; returns (loss, output), output None with return_output=False.");
  nb::class_<optim::EvalStep>(om, "EvalStep", "compiled eval-mode forward of a module")
      .def(nb::init<Module&, std::string>(), nb::arg("model"), nb::arg("target") = "cpu")
      .def("__call__", [](optim::EvalStep& s, nb::handle x) { return s.run(to_tensor(x)); },
           nb::arg("input"));
}

}  // namespace

void bind_nn(nb::module_& m) {
  nb::module_ nnm = m.def_submodule("nn", "Layers, initialization and losses (ds::nn).");
  bind_modules(nnm);
  nb::module_ om = m.def_submodule("optim", "Optimizers, schedules, TrainStep (ds::optim).");
  bind_optim(om);
  m.def("_value_and_grad",
        [](std::function<Tensor(const std::vector<Tensor>&)> fn, std::vector<int> argnums) {
          return value_and_grad(std::move(fn), std::move(argnums));
        },
        nb::arg("fn"), nb::arg("argnums"),
        "The C++ value_and_grad transform; use ds.value_and_grad.");
}

}  // namespace ds::py
