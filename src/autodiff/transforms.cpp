// Function transforms: grad(fn) and value_and_grad(fn) trace fn once per
// argument signature (dtypes and shapes) into a graph holding the value and its
// gradients, compile it, and run the cached executable on every later call.
#include <map>
#include <mutex>

#include "ds/autodiff.h"
#include "ds/compile.h"
#include "ds/ops.h"

namespace ds {
namespace {

class GradCache {
 public:
  GradCache(ScalarFn fn, std::vector<int> argnums) : fn_(std::move(fn)), argnums_(std::move(argnums)) {
    DS_CHECK(fn_, ValueError, "value_and_grad: the function is empty");
    DS_CHECK(!argnums_.empty(), ValueError, "value_and_grad: argnums is empty");
  }

  // Outputs: [value, grad(argnums[0]), ...].
  std::vector<Tensor> run(const std::vector<Tensor>& args) {
    std::vector<TensorType> sig;
    for (size_t i = 0; i < args.size(); ++i) {
      DS_CHECK(args[i].defined() && !args[i].is_symbolic(), ValueError, "value_and_grad: argument ",
               i, " must be a concrete tensor");
      sig.push_back({args[i].dtype(), args[i].shape()});
    }
    const Executable* exe = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = cache_.find(sig);
      if (it == cache_.end()) it = cache_.emplace(sig, trace(sig)).first;
      exe = &it->second;
    }
    return exe->run(args);
  }

 private:
  static bool less(const TensorType& a, const TensorType& b) {
    return std::tie(a.dtype, a.shape) < std::tie(b.dtype, b.shape);
  }
  struct SigLess {
    bool operator()(const std::vector<TensorType>& a, const std::vector<TensorType>& b) const {
      return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), less);
    }
  };

  Executable trace(const std::vector<TensorType>& sig) {
    for (int a : argnums_)
      DS_CHECK(a >= 0 && a < static_cast<int>(sig.size()), ValueError, "value_and_grad: argnum ",
               a, " is out of range for ", sig.size(), " arguments");
    Graph g;
    std::vector<Tensor> params;
    for (size_t i = 0; i < sig.size(); ++i)
      params.push_back(g.placeholder("arg" + std::to_string(i), sig[i].shape, sig[i].dtype));
    Tensor value = fn_(params);
    DS_CHECK(value.defined(), ValueError, "value_and_grad: the function returned an undefined tensor");
    if (!value.is_symbolic()) value = g.constant(value);
    DS_CHECK(value.impl().graph == g.data(), ValueError,
             "value_and_grad: the function returned a value of another graph");
    std::vector<Tensor> wrt;
    for (int a : argnums_) wrt.push_back(params[a]);
    std::vector<Tensor> grads = grad(g, value, wrt);
    g.output(value, "value");
    for (size_t i = 0; i < grads.size(); ++i) g.output(grads[i], "grad" + std::to_string(i));
    return compile(g, "cpu");
  }

  ScalarFn fn_;
  std::vector<int> argnums_;
  std::mutex mu_;
  std::map<std::vector<TensorType>, Executable, SigLess> cache_;
};

}  // namespace

ValueAndGradFn value_and_grad(ScalarFn fn, std::vector<int> argnums) {
  auto cache = std::make_shared<GradCache>(std::move(fn), std::move(argnums));
  return [cache](const std::vector<Tensor>& args) {
    std::vector<Tensor> outs = cache->run(args);
    Tensor value = outs[0];
    outs.erase(outs.begin());
    return std::make_pair(value, outs);
  };
}

GradFn grad(ScalarFn fn, std::vector<int> argnums) {
  auto vg = value_and_grad(std::move(fn), std::move(argnums));
  return [vg](const std::vector<Tensor>& args) { return vg(args).second; };
}

}  // namespace ds
