#include "passes/pass_manager.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "passes/batch_norm_epilogue.h"
#include "passes/cross_entropy_low_precision.h"
#include "passes/layout_propagation.h"
#include "passes/loop_fusion.h"
#include "passes/low_precision_layout.h"
#include "passes/pad_classes.h"
#include "passes/sum_low_precision.h"

namespace ds::passes {
namespace {

bool dump_wanted(const std::string& pass) {
  const char* env = std::getenv("DS_DUMP_IR");
  if (!env || !*env) return false;
  std::string list = std::string(",") + env + ",";
  return list == ",all," || list.find("," + pass + ",") != std::string::npos;
}

// DS_DISABLE_PASSES: a comma list of pass names to skip (to measure what one buys).
bool disabled(const std::string& pass) {
  const char* env = std::getenv("DS_DISABLE_PASSES");
  if (!env || !*env) return false;
  return (std::string(",") + env + ",").find("," + pass + ",") != std::string::npos;
}

void dump(const Graph& g, const std::string& pass, int index, uint64_t id) {
  const char* dir_env = std::getenv("DS_DUMP_DIR");
  std::filesystem::path dir = dir_env && *dir_env ? dir_env : "ds_dump";
  std::filesystem::create_directories(dir);
  std::ostringstream name;
  name << std::hex << id << std::dec << "_" << index << "_" << pass << ".txt";
  std::ofstream(dir / name.str()) << g.str();
}

}  // namespace

const std::vector<Pass>& pipeline() {
  static const std::vector<Pass> p = {
      {"constant_folding", 1, constant_folding},
      {"algebraic_simplification", 1, algebraic_simplification},
      {"fold_batch_norm", 2, fold_batch_norm},
      {"cse", 1, common_subexpression_elimination},
      {"padded_sum_to_concat", 1, padded_sum_to_concat},
      {"low_precision_layout", 1, low_precision_layout},
      {"cross_entropy_low_precision", 1, cross_entropy_low_precision},
      {"pad_classes", 1, pad_classes},
      {"batch_norm_epilogue", 1, batch_norm_epilogue},
      {"sum_low_precision", 1, sum_low_precision},
      {"matmul_softmax_fusion", 2, matmul_softmax_fusion},
      {"epilogue_fusion", 2, epilogue_fusion},
      {"layout_propagation", 2,
       [](const Graph& g) { return layout_propagation(g, conv_channel_block()); }},
      {"loop_fusion", 2, loop_fusion},
      {"dce", 0, dead_code_elimination},
  };
  return p;
}

Graph run_pipeline(const Graph& input, int opt_level, std::vector<PassTiming>* timings,
                   DType autocast_to) {
  Graph g = input;
  const uint64_t id = input.hash();
  if (dump_wanted("input")) dump(g, "input", 0, id);
  int index = 1;
  // Autocast first, so CSE merges the casts of a value read by several ops.
  const Pass autocast_pass{"autocast", 0, [&](const Graph& x) { return autocast(x, autocast_to); }};
  std::vector<const Pass*> passes;
  if (autocast_to != DType::Float32) passes.push_back(&autocast_pass);
  for (const Pass& p : pipeline()) passes.push_back(&p);
  for (const Pass* pp : passes) {
    const Pass& p = *pp;
    if (opt_level < p.min_opt_level || disabled(p.name)) continue;
    const auto t0 = std::chrono::steady_clock::now();
    const int before = static_cast<int>(g.nodes().size());
    g = p.run(g);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (timings) timings->push_back({p.name, ms, before, static_cast<int>(g.nodes().size())});
    if (dump_wanted(p.name)) dump(g, p.name, index, id);
    ++index;
  }
  return g;
}

}  // namespace ds::passes
