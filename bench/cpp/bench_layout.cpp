// Layout propagation's figure (issue 3): ResNet-18 inference (224x224, eval-mode
// batch norm folded) compiled at opt_level 2 with and without the
// layout_propagation pass, timed alternately in one process; prints JSON with
// the median seconds per run of each and their ratio.
//   DS_NUM_THREADS=2 ds_bench_layout [rounds] [--profile]
// --profile: also prints the per-op time table of 5 runs of each executable.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ds/compile.h"
#include "ds/models.h"
#include "ds/nn.h"
#include "ds/op.h"
#include "ds/ops.h"
#include "ds/profile.h"
#include "ds/runtime.h"

namespace {

double seconds(const ds::Executable& exe, const std::map<std::string, ds::Tensor>& feeds) {
  const auto t0 = std::chrono::steady_clock::now();
  exe.run(feeds);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void print_profile(const char* label, const ds::Executable& exe,
                   const std::map<std::string, ds::Tensor>& feeds) {
  ds::Profiler prof;
  for (int i = 0; i < 5; ++i) exe.run(feeds);
  prof.stop();
  std::fprintf(stderr, "%s\n%s\n", label, prof.key_averages().table("self_time", 12).c_str());
}

int count_op(const ds::Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node.op->name == op;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const bool profile = argc > 2 && std::string(argv[2]) == "--profile";
  ds::nn::manual_seed(1);
  auto model = ds::models::resnet18();
  // Batch-norm statistics away from the identity, as after training.
  for (auto& [name, slot] : model->buffer_slots())
    if (name.find("running_") != std::string::npos)
      *slot = name.find("running_var") != std::string::npos ? ds::random_uniform(slot->shape(), 2, 0.5, 1.5)
                                                            : ds::random_normal(slot->shape(), 3, 0.0, 0.2);
  model->eval();
  std::printf("{\"threads\": %d, \"rounds\": %d, \"cases\": [", ds::num_threads(), rounds);
  bool first = true;
  for (const int64_t batch : {1, 16}) {
    ds::Graph g;
    ds::Tensor x = g.placeholder("x", {batch, 3, 224, 224});
    g.output(model->forward(x), "logits");
    const ds::Executable with = ds::compile(g, "cpu", {.opt_level = 2});
    setenv("DS_DISABLE_PASSES", "layout_propagation", 1);
    const ds::Executable without = ds::compile(g, "cpu", {.opt_level = 2});
    unsetenv("DS_DISABLE_PASSES");
    const std::map<std::string, ds::Tensor> feeds{{"x", ds::random_normal({batch, 3, 224, 224}, 4)}};
    const double diff = ds::max(ds::abs(with.run(feeds).at("logits") - without.run(feeds).at("logits")))
                            .item<double>();
    seconds(with, feeds), seconds(without, feeds);  // warm-up: primitives, weight reorders
    if (profile) {
      print_profile(("batch " + std::to_string(batch) + ", with the pass").c_str(), with, feeds);
      print_profile(("batch " + std::to_string(batch) + ", without").c_str(), without, feeds);
    }
    std::vector<double> tw, to;
    for (int r = 0; r < rounds; ++r) {  // alternate, so load swings hit both
      tw.push_back(seconds(with, feeds));
      to.push_back(seconds(without, feeds));
    }
    std::printf("%s\n  {\"batch\": %lld, \"with_s\": %.5f, \"without_s\": %.5f, \"without/with\": %.3f, "
                "\"kernels_with\": %d, \"kernels_without\": %d, \"reorders\": %d, \"max_abs_diff\": %.2e}",
                first ? "" : ",", static_cast<long long>(batch), median(tw), median(to),
                median(to) / median(tw), with.stats().kernels, without.stats().kernels,
                count_op(with.graph(), "to_blocked") + count_op(with.graph(), "from_blocked"), diff);
    std::fflush(stdout);
    first = false;
  }
  std::printf("\n]}\n");
}
