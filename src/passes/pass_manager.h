// Named, timed graph passes run by opt level. DS_DUMP_IR=all (or a comma list of
// pass names) writes the IR after each pass into DS_DUMP_DIR (default ./ds_dump).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ds/graph.h"

namespace ds::passes {

struct Pass {
  std::string name;
  int min_opt_level;  // runs when opt_level >= this
  std::function<Graph(const Graph&)> run;
};

struct PassTiming {
  std::string name;
  double ms;
  int nodes_before, nodes_after;
};

// The pipeline, in order.
const std::vector<Pass>& pipeline();
// With `autocast_to` bfloat16/float16, the autocast pass runs first, at every opt level.
Graph run_pipeline(const Graph& g, int opt_level, std::vector<PassTiming>* timings,
                   DType autocast_to = DType::Float32);

// Individual passes (each in its own file).
Graph dead_code_elimination(const Graph& g);
Graph constant_folding(const Graph& g);
Graph common_subexpression_elimination(const Graph& g);
Graph algebraic_simplification(const Graph& g);
Graph fold_batch_norm(const Graph& g);  // inference graphs
Graph epilogue_fusion(const Graph& g);  // bias/activation/residual into conv/linear/matmul
Graph loop_fusion(const Graph& g);      // elementwise regions -> `fused` (needs the JIT)
// The same regions in any build, with float16/bfloat16 values too: GPU targets
// compile them with NVRTC, not the CPU JIT.
Graph loop_fusion_regions(const Graph& g);
// Mixed precision: matmul/linear/gemm/conv ops compute in `low` (bfloat16/float16).
Graph autocast(const Graph& g, DType low);
// "fp32" | "bf16" | "fp16" -> its dtype; ValueError naming the allowed values otherwise.
DType precision_dtype(const std::string& precision);

}  // namespace ds::passes
