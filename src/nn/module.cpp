#include "ds/nn/module.h"

#include <set>
#include <sstream>

#include "ds/ops.h"

namespace ds::nn {

void Module::register_parameter(const std::string& name, Tensor* slot) {
  DS_CHECK(slot && slot->defined(), ValueError, "register_parameter: '", name, "' is undefined");
  params_.emplace_back(name, slot);
}

void Module::register_buffer(const std::string& name, Tensor* slot, bool persistent) {
  DS_CHECK(slot && slot->defined(), ValueError, "register_buffer: '", name, "' is undefined");
  buffers_.push_back({name, slot, persistent});
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  DS_CHECK(m != nullptr, ValueError, "register_module: '", name, "' is null");
  for (const auto& [n, _] : children_)
    DS_CHECK(n != name, ValueError, "register_module: '", name, "' is already a child");
  children_.emplace_back(name, std::move(m));
}

void Module::set_child(const std::string& name, std::shared_ptr<Module> m) {
  DS_CHECK(m != nullptr, ValueError, "set_child: '", name, "' is null");
  for (auto& [n, c] : children_)
    if (n == name) {
      c = std::move(m);
      return;
    }
  children_.emplace_back(name, std::move(m));
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, c] : children_) c->train(on);
}

void Module::to_channels_last(bool on) {
  channels_last_ = on;
  for (auto& [_, c] : children_) c->to_channels_last(on);
}

// Calls f(dotted_prefix, module) for this module and every descendant, parents first.
template <typename F> void Module::visit(const std::string& prefix, F&& f) const {
  f(prefix, *this);
  for (const auto& [n, c] : children_) c->visit(prefix + n + ".", f);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  visit("", [&](const std::string& p, const Module& m) {
    for (const auto& [n, s] : m.params_) out.emplace_back(p + n, *s);
  });
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  visit("", [&](const std::string& p, const Module& m) {
    for (const auto& b : m.buffers_)
      if (b.persistent) out.emplace_back(p + b.name, *b.slot);
  });
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& [n, c] : children_) out.emplace_back(n, c.get());
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::parameter_slots() {
  std::vector<std::pair<std::string, Tensor*>> out;
  visit("", [&](const std::string& p, const Module& m) {
    for (const auto& [n, s] : m.params_) out.emplace_back(p + n, s);
  });
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::buffer_slots() {
  std::vector<std::pair<std::string, Tensor*>> out;
  visit("", [&](const std::string& p, const Module& m) {
    for (const auto& b : m.buffers_) out.emplace_back(p + b.name, b.slot);
  });
  return out;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [n, t] : named_parameters()) out[n] = t;
  for (auto& [n, t] : named_buffers()) out[n] = t;
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> slots = parameter_slots();
  visit("", [&](const std::string& p, const Module& m) {
    for (const auto& b : m.buffers_)
      if (b.persistent) slots.emplace_back(p + b.name, b.slot);
  });
  std::set<std::string> used;
  std::vector<std::string> missing;
  for (auto& [name, slot] : slots) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      continue;
    }
    used.insert(name);
    const Tensor& v = it->second;
    DS_CHECK(v.defined() && !v.is_symbolic(), ValueError, "load_state_dict: '", name,
             "' is not a concrete tensor");
    DS_CHECK(v.shape() == slot->shape(), ShapeError, "load_state_dict: '", name, "' has shape ",
             shape_str(v.shape()), " in the state dict but ", shape_str(slot->shape()),
             " in the module");
    Tensor copy = Tensor::empty(slot->shape(), slot->dtype());
    copy_into(v, copy);
    *slot = copy;
  }
  if (!strict) return;
  std::string unexpected;
  for (const auto& [name, _] : state)
    if (!used.count(name)) unexpected += (unexpected.empty() ? "" : ", ") + name;
  std::string miss;
  for (const auto& n : missing) miss += (miss.empty() ? "" : ", ") + n;
  DS_CHECK(miss.empty() && unexpected.empty(), ValueError,
           "load_state_dict: keys do not match the module", miss.empty() ? "" : "; missing: ", miss,
           unexpected.empty() ? "" : "; unexpected: ", unexpected);
}

std::string Module::str() const {
  std::ostringstream os;
  visit("", [&](const std::string& p, const Module& m) {
    const int depth = static_cast<int>(std::count(p.begin(), p.end(), '.'));
    os << std::string(2 * depth, ' ') << (p.empty() ? "" : p.substr(0, p.size() - 1) + ": ")
       << m.name() << "\n";
  });
  return os.str();
}

}  // namespace ds::nn
