// nn::Module: a layer or model with named parameters, buffers and children,
// train/eval modes and state dicts, mirroring torch.nn.Module.
//
// Parameters and buffers are Tensor members of the layer, registered by
// address; a compiled training step swaps symbolic values into those slots to
// trace forward(), so the same layer code runs eagerly and builds graphs.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ds/tensor.h"

namespace ds::nn {

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;  // slots point into the object
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  virtual std::string name() const = 0;  // "Linear(in_features=784, out_features=128)"

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Channels-last activations, like PyTorch's module.to(memory_format=
  // torch.channels_last) but explicit in the shapes: on, this module and its
  // descendants take and return images as [N, H, W, C] (Conv2d, BatchNorm2d and
  // the pooling layers; a model such as ResNet still takes NCHW input and
  // permutes it once). Parameters keep their shapes. Flatten flattens what it
  // gets, so [N, H, W, C] features come out in HWC order.
  void to_channels_last(bool on = true);
  bool is_channels_last() const { return channels_last_; }

  // Dotted names from this module down ("0.weight", "conv1.bias").
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  // Persistent buffers (running statistics), as in state_dict.
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<std::pair<std::string, Module*>> named_children() const;

  // The writable slots of every parameter / buffer (persistent or not).
  std::vector<std::pair<std::string, Tensor*>> parameter_slots();
  std::vector<std::pair<std::string, Tensor*>> buffer_slots();

  // Parameters and persistent buffers by dotted name.
  std::map<std::string, Tensor> state_dict() const;
  // Copies values in; strict: every key must match and none may be left over.
  // Shapes must match; values are converted to each slot's dtype.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

  std::string str() const;  // the module tree, one line per module

 protected:
  void register_parameter(const std::string& name, Tensor* slot);
  // Non-persistent buffers (a dropout seed) update like buffers but are not saved.
  void register_buffer(const std::string& name, Tensor* slot, bool persistent = true);
  template <typename M> std::shared_ptr<M> register_module(const std::string& name,
                                                           std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  // Replaces the child `name`, or adds it (an attribute assigned again, from Python).
  void set_child(const std::string& name, std::shared_ptr<Module> m);

 private:
  struct BufferSlot {
    std::string name;
    Tensor* slot;
    bool persistent;
  };
  template <typename F> void visit(const std::string& prefix, F&& f) const;
  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<BufferSlot> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  bool channels_last_ = false;
};

using ModulePtr = std::shared_ptr<Module>;

}  // namespace ds::nn
