// The kernel cache across processes: this test binary starts itself again
// (JitChildProcess.CompileRunAndReport, which only runs when the parent names a
// report file) to compile and run the same graph with the same DS_CACHE_DIR.
// The child reports the library's JIT counters and its results bit for bit: the
// second process must do no LLVM work and compute the same bits; a corrupt
// entry must be rejected and rebuilt, never executed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "codegen/jit.h"
#include "ds/ds.h"
#include "op_check.h"

using ds::Graph;
using ds::Tensor;
namespace codegen = ds::codegen;
namespace fs = std::filesystem;

namespace {

constexpr char kReportEnv[] = "DS_TEST_JIT_CHILD_REPORT";

// gelu(layer_norm(x + r)): one fused region with row reductions.
Graph child_graph() {
  Graph g;
  Tensor x = g.placeholder("x", {9, 203});
  Tensor r = g.placeholder("r", {9, 203});
  Tensor w = g.constant(ds::test::random_tensor({203}, 5, ds::DType::Float32) + 1.0);
  g.output(ds::gelu(ds::layer_norm(x + r, {203}, w)), "y");
  return g;
}
std::map<std::string, Tensor> child_feeds() {
  return {{"x", ds::test::random_tensor({9, 203}, 6, ds::DType::Float32)},
          {"r", ds::test::random_tensor({9, 203}, 7, ds::DType::Float32)}};
}

struct Report {
  int64_t codegen = -1, disk_hits = -1, disk_rejected = -1;
  std::vector<std::string> bits;  // each result value as a hex float
};

// Runs this binary's child test with DS_CACHE_DIR = dir; returns its report.
Report run_child(const fs::path& dir) {
  const fs::path report = dir.parent_path() / (dir.filename().string() + ".report");
  fs::remove(report);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string cmd = std::string(kReportEnv) + "='" + report.string() + "' DS_CACHE_DIR='" +
                          dir.string() + "' '" + self +
                          "' --gtest_filter=JitChildProcess.CompileRunAndReport > '" +
                          report.string() + ".log' 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  Report r;
  std::ifstream in(report);
  std::string key;
  while (in >> key) {
    if (key == "codegen") in >> r.codegen;
    if (key == "disk_hits") in >> r.disk_hits;
    if (key == "disk_rejected") in >> r.disk_rejected;
    if (key == "value") r.bits.emplace_back(), in >> r.bits.back();
  }
  EXPECT_FALSE(r.bits.empty()) << "the child wrote no report; its log: " << report.string()
                               << ".log";
  return r;
}

std::vector<fs::path> entries(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  return out;
}

}  // namespace

// The child side: does nothing unless started by the test below.
TEST(JitChildProcess, CompileRunAndReport) {
  const char* report = std::getenv(kReportEnv);
  if (!report) GTEST_SKIP() << "runs only as the second process of JitCacheProcesses";
  const Tensor y = ds::compile(child_graph(), "cpu", {.opt_level = 2}).run(child_feeds()).at("y");
  const auto c = codegen::jit_counters();
  std::ofstream out(report);
  out << "codegen " << c.codegen << "\ndisk_hits " << c.disk_hits << "\ndisk_rejected "
      << c.disk_rejected << "\n";
  for (double v : ds::test::values(y)) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%a", v);
    out << "value " << buf << "\n";
  }
}

TEST(JitCacheProcesses, SecondProcessDoesNoCodegenAndCorruptEntriesAreRebuilt) {
  if (!codegen::jit_available()) GTEST_SKIP() << "built without LLVM";
  const fs::path dir = fs::temp_directory_path() / ("ds_jit_procs_" + std::to_string(::getpid()));
  fs::remove_all(dir);

  const Report cold = run_child(dir);
  EXPECT_EQ(cold.codegen, 1);
  EXPECT_EQ(cold.disk_hits, 0);
  ASSERT_EQ(entries(dir).size(), 1u);

  const Report warm = run_child(dir);
  EXPECT_EQ(warm.codegen, 0);  // no LLVM work at all
  EXPECT_EQ(warm.disk_hits, 1);
  EXPECT_EQ(warm.bits, cold.bits);

  // Same results as the unfused ops in this process (float32, a few ulps).
  const Tensor want = ds::compile(child_graph(), "cpu", {.opt_level = 0}).run(child_feeds()).at("y");
  const auto w = ds::test::values(want);
  ASSERT_EQ(w.size(), cold.bits.size());
  for (size_t i = 0; i < w.size(); ++i)
    EXPECT_NEAR(std::strtod(cold.bits[i].c_str(), nullptr), w[i], 1e-5 * (1 + std::abs(w[i])));

  // Corrupt the object's bytes (the payload's end): rejected, rebuilt, same bits.
  const fs::path entry = entries(dir)[0];
  std::string bytes;
  {
    std::ifstream in(entry, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    bytes = s.str();
  }
  ASSERT_GT(bytes.size(), 200u);
  for (size_t i = bytes.size() - 64; i < bytes.size() - 32; ++i) bytes[i] ^= 0x5A;
  std::ofstream(entry, std::ios::binary | std::ios::trunc) << bytes;
  const Report rebuilt = run_child(dir);
  EXPECT_EQ(rebuilt.disk_rejected, 1);
  EXPECT_EQ(rebuilt.codegen, 1);
  EXPECT_EQ(rebuilt.bits, cold.bits);

  const Report again = run_child(dir);  // the rebuilt entry was written back
  EXPECT_EQ(again.codegen, 0);
  EXPECT_EQ(again.disk_hits, 1);
  EXPECT_EQ(again.bits, cold.bits);
  fs::remove_all(dir);
  fs::remove(dir.parent_path() / (dir.filename().string() + ".report"));
  fs::remove(dir.parent_path() / (dir.filename().string() + ".report.log"));
}
