// ds::compile(fn): trace on symbolic placeholders, compile once per signature.
#include <map>
#include <mutex>

#include "ds/compile.h"

namespace ds {

struct CompiledFunction::Impl {
  TensorFn fn;
  std::string target;
  CompileOptions options;
  bool symbolic_batch;
  std::mutex mu;
  std::map<std::string, Executable> cache;  // signature -> executable
};

namespace {

std::string signature(const std::vector<Tensor>& args, bool symbolic_batch) {
  std::string s;
  for (const Tensor& a : args) {
    Shape shape = a.shape();
    if (symbolic_batch && !shape.empty()) shape[0] = dyn;
    s += TensorType{a.dtype(), shape}.str() + ";";
  }
  return s;
}

}  // namespace

std::vector<Tensor> CompiledFunction::operator()(const std::vector<Tensor>& args) const {
  Impl& m = *impl_;
  for (size_t i = 0; i < args.size(); ++i)
    DS_CHECK(args[i].defined() && !args[i].is_symbolic(), ValueError, "compiled function: argument ",
             i, " must be a concrete tensor");
  const std::string sig = signature(args, m.symbolic_batch);
  std::unique_lock<std::mutex> lock(m.mu);
  auto it = m.cache.find(sig);
  if (it == m.cache.end()) {
    Graph g;
    std::vector<Tensor> params;
    for (size_t i = 0; i < args.size(); ++i) {
      Shape shape = args[i].shape();
      if (m.symbolic_batch && !shape.empty()) shape[0] = dyn;
      params.push_back(g.placeholder("arg" + std::to_string(i), shape, args[i].dtype()));
    }
    std::vector<Tensor> outs = m.fn(params);
    DS_CHECK(!outs.empty(), ValueError, "compiled function: the function returned no tensors");
    for (size_t i = 0; i < outs.size(); ++i) {
      Tensor o = outs[i];
      // An output that does not depend on the inputs is a constant of the trace.
      if (!o.is_symbolic()) o = g.constant(o);
      DS_CHECK(o.impl().graph == g.data(), ValueError, "compiled function: output ", i,
               " belongs to another graph (a tensor captured from a different trace)");
      // Give each output its own node so two outputs may share a value.
      g.output(o, "out" + std::to_string(i));
    }
    it = m.cache.emplace(sig, ds::compile(g, m.target, m.options)).first;
  }
  Executable exe = it->second;
  lock.unlock();
  return exe.run(args);
}

int CompiledFunction::compilations() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return static_cast<int>(impl_->cache.size());
}

CompiledFunction compile(TensorFn fn, const std::string& target, const CompileOptions& options,
                         bool symbolic_batch) {
  auto impl = std::make_shared<CompiledFunction::Impl>();
  impl->fn = std::move(fn);
  impl->target = target;
  impl->options = options;
  impl->symbolic_batch = symbolic_batch;
  return CompiledFunction(impl);
}

}  // namespace ds
