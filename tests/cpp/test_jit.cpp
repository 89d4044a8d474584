// The LLVM JIT's kernel cache: memory and disk hits without codegen, corrupt
// and foreign entries rebuilt (never loaded), and DS_DUMP_KERNELS output.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "codegen/jit.h"
#include "codegen/kernel_cache.h"
#include "ds/ds.h"
#include "op_check.h"

using ds::Graph;
using ds::Tensor;
namespace codegen = ds::codegen;
namespace fs = std::filesystem;

namespace {

// Sets an environment variable for the test's lifetime.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_.empty())
      unsetenv(name_);
    else
      setenv(name_, old_.c_str(), 1);
  }

 private:
  const char* name_;
  std::string old_;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

class JitCache : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!codegen::jit_available()) GTEST_SKIP() << "built without LLVM";
    dir_ = fs::temp_directory_path() /
           ("ds_jit_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    env_ = std::make_unique<ScopedEnv>("DS_CACHE_DIR", dir_.string());
    codegen::jit_unload_all();
  }
  void TearDown() override {
    env_.reset();
    fs::remove_all(dir_);
  }

  // One fused region (exp, mul, tanh, add) over a shape no other test uses.
  Graph graph(int64_t cols) {
    Graph g;
    Tensor x = g.placeholder("x", {3, cols});
    Tensor b = g.placeholder("b", {cols});
    g.output(ds::tanh(ds::exp(x) * b) + x, "y");
    return g;
  }
  Tensor run(const Graph& g) {
    const int64_t cols = g.nodes()[0].outputs[0].shape[1];
    auto exe = ds::compile(g, "cpu", {.opt_level = 2});
    return exe
        .run({{"x", ds::test::random_tensor({3, cols}, 1, ds::DType::Float32)},
              {"b", ds::test::random_tensor({cols}, 2, ds::DType::Float32)}})
        .at("y");
  }
  Tensor expected(const Graph& g) {
    const int64_t cols = g.nodes()[0].outputs[0].shape[1];
    return ds::compile(g, "cpu", {.opt_level = 0})
        .run({{"x", ds::test::random_tensor({3, cols}, 1, ds::DType::Float32)},
              {"b", ds::test::random_tensor({cols}, 2, ds::DType::Float32)}})
        .at("y");
  }
  fs::path only_entry() {
    std::vector<fs::path> entries;
    for (const auto& e : fs::directory_iterator(dir_)) entries.push_back(e.path());
    EXPECT_EQ(entries.size(), 1u);
    return entries.empty() ? fs::path() : entries[0];
  }

  fs::path dir_;
  std::unique_ptr<ScopedEnv> env_;
};

double max_diff(const Tensor& a, const Tensor& b) {
  const auto av = ds::test::values(a), bv = ds::test::values(b);
  double d = 0;
  for (size_t i = 0; i < av.size(); ++i) d = std::max(d, std::abs(av[i] - bv[i]));
  return d;
}

}  // namespace

TEST_F(JitCache, MemoryThenDiskHitsDoNoCodegen) {
  const Graph g = graph(1001);
  const auto c0 = codegen::jit_counters();
  const Tensor first = run(g);
  const auto c1 = codegen::jit_counters();
  EXPECT_EQ(c1.codegen - c0.codegen, 1);
  EXPECT_EQ(c1.disk_hits - c0.disk_hits, 0);
  EXPECT_LE(max_diff(first, expected(g)), 1e-5);

  run(g);  // same process: the loaded kernel
  const auto c2 = codegen::jit_counters();
  EXPECT_EQ(c2.codegen, c1.codegen);
  EXPECT_GT(c2.memory_hits, c1.memory_hits);

  codegen::jit_unload_all();  // as a new process: only the disk cache is left
  const Tensor again = run(g);
  const auto c3 = codegen::jit_counters();
  EXPECT_EQ(c3.codegen, c2.codegen);
  EXPECT_EQ(c3.disk_hits - c2.disk_hits, 1);
  EXPECT_EQ(ds::test::values(again), ds::test::values(first));
}

TEST_F(JitCache, CorruptEntryIsRebuiltNotExecuted) {
  const Graph g = graph(1003);
  const Tensor good = run(g);
  const fs::path entry = only_entry();
  std::string bytes = read_file(entry);
  ASSERT_GT(bytes.size(), 200u);
  for (size_t i = bytes.size() - 64; i < bytes.size() - 32; ++i)
    bytes[i] = static_cast<char>(0xCC);  // int3s
  write_file(entry, bytes);

  codegen::jit_unload_all();
  const auto c0 = codegen::jit_counters();
  const Tensor rebuilt = run(g);
  const auto c1 = codegen::jit_counters();
  EXPECT_EQ(c1.disk_rejected - c0.disk_rejected, 1);
  EXPECT_EQ(c1.codegen - c0.codegen, 1);
  EXPECT_EQ(ds::test::values(rebuilt), ds::test::values(good));

  codegen::jit_unload_all();  // the rebuilt entry was written back and is good
  run(g);
  EXPECT_EQ(codegen::jit_counters().disk_hits - c1.disk_hits, 1);
}

TEST_F(JitCache, TruncatedAndForeignEntriesAreRejected) {
  const Graph g = graph(1005);
  run(g);
  const fs::path entry = only_entry();
  const std::string bytes = read_file(entry);

  write_file(entry, bytes.substr(0, bytes.size() / 2));
  codegen::jit_unload_all();
  auto c0 = codegen::jit_counters();
  run(g);
  EXPECT_EQ(codegen::jit_counters().disk_rejected - c0.disk_rejected, 1);

  // The same object claiming another compiler version: foreign, so rebuilt.
  std::string foreign = bytes;
  const auto at = foreign.find("LLVM ");
  ASSERT_NE(at, std::string::npos);
  foreign[at + 5] = foreign[at + 5] == '9' ? '8' : '9';
  write_file(entry, foreign);
  codegen::jit_unload_all();
  c0 = codegen::jit_counters();
  run(g);
  const auto c1 = codegen::jit_counters();
  EXPECT_EQ(c1.disk_rejected - c0.disk_rejected, 1);
  EXPECT_EQ(c1.codegen - c0.codegen, 1);
}

TEST(KernelCacheFormat, KeyMismatchAndChecksumAreChecked) {
  const fs::path dir = fs::temp_directory_path() / ("ds_cache_fmt_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  codegen::CacheKey key{"LLVM 16.0.6", "x86_64-pc-linux-gnu", "haswell", "+avx2", "region v1 ..."};
  std::string payload;
  EXPECT_EQ(codegen::cache_load(dir, key, &payload), codegen::CacheLookup::Missing);
  codegen::cache_store(dir, key, "object bytes");
  EXPECT_EQ(codegen::cache_load(dir, key, &payload), codegen::CacheLookup::Hit);
  EXPECT_EQ(payload, "object bytes");
  // An entry for another CPU renamed into this key's place.
  codegen::CacheKey other = key;
  other.cpu = "skylake-avx512";
  fs::rename(dir / key.file_name(), dir / other.file_name());
  EXPECT_EQ(codegen::cache_load(dir, other, &payload), codegen::CacheLookup::Rejected);
  EXPECT_EQ(codegen::cache_load(dir, key, &payload), codegen::CacheLookup::Missing);
  fs::remove_all(dir);
}

TEST_F(JitCache, DumpKernelsWritesVectorizedIRAndAssembly) {
  const fs::path dump = dir_ / "dump";
  ScopedEnv on("DS_DUMP_KERNELS", "1");
  ScopedEnv where("DS_DUMP_DIR", dump.string());
  run(graph(1007));
  std::string ll, s;
  for (const auto& e : fs::directory_iterator(dump)) {
    if (e.path().extension() == ".ll") ll = read_file(e.path());
    if (e.path().extension() == ".s") s = read_file(e.path());
  }
  EXPECT_NE(ll.find("define void @ds_fused_"), std::string::npos);
  EXPECT_NE(s.find("ds_fused_"), std::string::npos);
  // The inner loop was vectorized, exp/tanh mapped to libmvec's 8-lane variants.
  EXPECT_NE(ll.find("x float>"), std::string::npos);
  EXPECT_NE(ll.find("_ZGVdN8v_expf"), std::string::npos);
  EXPECT_NE(ll.find("_ZGVdN8v_tanhf"), std::string::npos);
}
