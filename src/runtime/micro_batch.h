// compile(..., memory_budget): when a static graph's plan (arena + outputs) is over
// the budget, run it as micro-batches along axis 0 — when every op treats axis 0
// independently — or refuse at compile time, naming the need and the budget.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ds/compile.h"

namespace ds {

// Why `g` cannot run as independent slices of axis 0 ("op %7 sum reduces axis 0"),
// or "" when it can: every placeholder has the batch extent as axis 0, every op is
// per-sample along it, every output keeps it.
std::string batch_split_blocker(const Graph& g);

// `g` with the batch extent (axis 0 of the placeholders, and of reshape targets) set to `batch`.
Graph with_batch(const Graph& g, int64_t batch);

// The bytes a static executable needs per run: its arena plus its outputs.
int64_t planned_bytes(const Executable& e);

struct MicroBatchPlan {
  Executable exec;        // compiled for `micro` rows
  int64_t batch, micro;   // the full batch and the rows per slice (divides `batch`)
  int64_t need;           // bytes of the full-batch plan
};

struct MicroBatchChoice {
  int64_t micro;  // rows per micro-batch (a divisor of the batch, below it); 0: none fits
  int64_t bytes;  // the plan's bytes at `micro`, or at 1 row when none fits
};

// The largest divisor of `batch` below it whose plan, bytes_at(micro), fits `budget`,
// searched down from the proportional guess batch * budget / need.
MicroBatchChoice largest_fitting_micro_batch(int64_t batch, int64_t need, int64_t budget,
                                             const std::function<int64_t(int64_t)>& bytes_at);

// Chooses the largest micro-batch (a divisor of the batch) whose plan fits `budget`,
// compiling with `compile_fn`. Throws ValueError (at compile time) when the graph
// cannot be split or even one row does not fit.
std::shared_ptr<const MicroBatchPlan> plan_micro_batches(
    const Graph& g, int64_t need, int64_t budget,
    const std::function<Executable(const Graph&)>& compile_fn);

// Runs the slices one after another and concatenates each output along axis 0.
std::vector<Tensor> run_micro_batches(const MicroBatchPlan& plan, const std::vector<Tensor>& feeds);

}  // namespace ds
