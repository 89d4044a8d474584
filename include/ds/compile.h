// compile(): Graph -> Executable for a target ("cpu", "gpu"/"cuda", "auto").
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ds/graph.h"

namespace ds {

struct CompileOptions {
  int opt_level = 2;         // 0..3
  int64_t memory_budget = 0; // bytes; 0: unlimited
  // "fp32" | "bf16" | "fp16": with bf16/fp16, matmul/linear/gemm/conv compute in that
  // precision (float32 in and out); reductions, norms, softmax and losses stay float32.
  std::string precision = "fp32";
};

struct ExecutableStats {
  int kernels = 0;            // launches per run
  double flops = 0;           // per run, from the OpDef cost model (static shapes)
  double bytes = 0;
  int64_t peak_bytes = 0;     // live intermediate bytes at the high-water mark, last run
  int64_t arena_bytes = 0;    // the planned arena for intermediates (static shapes)
  int64_t unplanned_bytes = 0;  // what the intermediates take without reuse
  // CUDA executables: launch sequences captured into a CUDA graph (on the second
  // run), and runs served by one graph launch.
  int64_t cuda_graph_captures = 0;
  int64_t cuda_graph_replays = 0;
};

struct IOSpec {
  std::string name;
  TensorType type;
};

class Executable {
 public:
  struct Impl;
  explicit Executable(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  // Feeds by placeholder name. Validates names, shapes and dtypes; float feeds of
  // another float (or an integer) dtype are cast to the placeholder's dtype.
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& feeds) const;
  // Feeds in placeholder order; outputs in output order.
  std::vector<Tensor> run(const std::vector<Tensor>& feeds) const;

  const std::vector<IOSpec>& inputs() const;
  const std::vector<IOSpec>& outputs() const;
  const std::string& target() const;  // "cpu" or "cuda:0"
  std::string explain() const;        // why this target, which kernel per node
  ExecutableStats stats() const;
  const Graph& graph() const;         // the optimized graph that runs

 private:
  std::shared_ptr<Impl> impl_;
};

Executable compile(const Graph& graph, const std::string& target = "auto",
                   const CompileOptions& options = {});

// Tracing compile: `fn` is traced on symbolic tensors typed like the arguments into
// a Graph and compiled once per input signature (dtypes, shapes). With
// `symbolic_batch`, axis 0 of every argument is traced as ds::dyn, so one
// executable serves every batch size.
using TensorFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
class CompiledFunction {
 public:
  struct Impl;
  explicit CompiledFunction(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::vector<Tensor> operator()(const std::vector<Tensor>& args) const;
  int compilations() const;  // distinct signatures compiled so far
 private:
  std::shared_ptr<Impl> impl_;
};
CompiledFunction compile(TensorFn fn, const std::string& target = "auto",
                         const CompileOptions& options = {}, bool symbolic_batch = false);

// The targets this build and machine can compile for, e.g. {"cpu", "auto"}.
std::vector<std::string> available_targets();

}  // namespace ds
