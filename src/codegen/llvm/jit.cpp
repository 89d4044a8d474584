// The CPU JIT: kernel IR -> LLVM IR (emit_region) -> O2 for the host CPU ->
// object code, cached on disk, loaded into an ORC LLJIT (one JITDylib per kernel
// so kernels can be unloaded). Compilation is serialized by one mutex; loaded
// kernels run concurrently.
#include "codegen/jit.h"

#include <llvm/Analysis/TargetLibraryInfo.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/DynamicLibrary.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Transforms/Utils/Cloning.h>

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>

#include "codegen/kernel_cache.h"
#include "codegen/llvm/emit_region.h"
#include "codegen/row_plan.h"
#include "core/thread_pool.h"
#include "ds/error.h"

namespace ds::codegen {
namespace {

using RegionFn = void (*)(void**, int64_t);

struct Loaded {
  RegionFn fn = nullptr;
  LoopLayout layout;
  bool rows = false;             // called once per whole row
  std::vector<bool> row_output;  // per result: one value per row
  std::vector<size_t> kept_size;  // per kept register (row_plan.h): its element size
  std::vector<size_t> in_size, out_size;  // element sizes of the inputs and results
  llvm::orc::JITDylib* dylib = nullptr;
};

std::string llvm_error(llvm::Error e) {
  return llvm::toString(std::move(e));
}

template <typename T>
T check(llvm::Expected<T> v, const char* what) {
  if (!v) throw Error(std::string("LLVM JIT: ") + what + ": " + llvm_error(v.takeError()));
  if constexpr (std::is_reference_v<T>)
    return *v;
  else
    return std::move(*v);
}

// glibc's libmvec AVX2 variants (4 ulps at most), beyond the ones LLVM 16's
// LIBMVEC-X86 table knows (exp, log, sin, cos, pow).
const llvm::VecDesc kMoreLibmvec[] = {
    {"tanhf", "_ZGVdN8v_tanhf", llvm::ElementCount::getFixed(8)},
    {"erff", "_ZGVdN8v_erff", llvm::ElementCount::getFixed(8)},
    {"erfcf", "_ZGVdN8v_erfcf", llvm::ElementCount::getFixed(8)},
    {"expm1f", "_ZGVdN8v_expm1f", llvm::ElementCount::getFixed(8)},
    {"log1pf", "_ZGVdN8v_log1pf", llvm::ElementCount::getFixed(8)},
    {"tanh", "_ZGVdN4v_tanh", llvm::ElementCount::getFixed(4)},
    {"erf", "_ZGVdN4v_erf", llvm::ElementCount::getFixed(4)},
    {"erfc", "_ZGVdN4v_erfc", llvm::ElementCount::getFixed(4)},
    {"expm1", "_ZGVdN4v_expm1", llvm::ElementCount::getFixed(4)},
    {"log1p", "_ZGVdN4v_log1p", llvm::ElementCount::getFixed(4)},
};

size_t element_size(DType t) {
  return t == DType::Bool ? 1 : dtype_size(t);
}

// The library holding this emitter, by path, size and modification time: an
// object compiled by another build (another emitter) is foreign to this one.
std::string build_identity() {
  Dl_info info;
  struct stat st;
  if (dladdr(reinterpret_cast<void*>(&jit_available), &info) && info.dli_fname &&
      stat(info.dli_fname, &st) == 0)
    return std::string(info.dli_fname) + " " + std::to_string(st.st_size) + " " +
           std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  return "deepseek " DS_VERSION;
}

class Jit {
 public:
  Jit() {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    auto jtmb = check(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host");
    jtmb.setCodeGenOptLevel(llvm::CodeGenOpt::Aggressive);
    triple_ = jtmb.getTargetTriple().str();
    cpu_ = jtmb.getCPU();
    features_ = jtmb.getFeatures().getString();
    // Kernels call libm and libmvec. Loaded into the global symbol scope here: in a
    // Python process libdeepseek (and so its libmvec) was opened RTLD_LOCAL.
    std::string why;
    if (llvm::sys::DynamicLibrary::LoadLibraryPermanently("libm.so.6", &why))
      throw Error("LLVM JIT: cannot load libm.so.6: " + why);
    const bool libmvec = !llvm::sys::DynamicLibrary::LoadLibraryPermanently("libmvec.so.1", &why);
    avx2_ = libmvec && features_.find("+avx2") != std::string::npos;
    tm_ = check(jtmb.createTargetMachine(), "creating the target machine");
    lljit_ = check(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(jtmb).create(),
                   "creating LLJIT");
  }

  std::shared_ptr<Loaded> get(const KernelIR& ir) {
    const std::string text = ir.str();
    const uint64_t hash = fnv1a(text);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = loaded_.find(hash);
    if (it != loaded_.end()) {
      ++counters_.memory_hits;
      return it->second;
    }
    auto k = std::make_shared<Loaded>();
    k->layout = loop_layout(ir);
    k->rows = ir.reduce || ir.has_row_reductions();
    const auto row = ir.row_registers();
    for (int r : ir.outputs) k->row_output.push_back(row[r]);
    if (ir.reduce) k->row_output.push_back(true);
    for (int r : plan_rows(ir).kept) k->kept_size.push_back(element_size(ir.register_dtype(r)));
    for (const TensorType& t : ir.inputs) k->in_size.push_back(element_size(t.dtype));
    for (const TensorType& t : ir.result_types()) k->out_size.push_back(element_size(t.dtype));
    char name[40];
    std::snprintf(name, sizeof name, "ds_fused_%016llx", static_cast<unsigned long long>(hash));
    const CacheKey key{"LLVM " LLVM_VERSION_STRING " " + build_, triple_, cpu_, features_, text};
    const auto dir = kernel_cache_dir();
    std::string object;
    const CacheLookup found = cache_load(dir, key, &object);
    if (found == CacheLookup::Hit) {
      ++counters_.disk_hits;
    } else {
      if (found == CacheLookup::Rejected) ++counters_.disk_rejected;
      object = compile(ir, k->layout, name);
      cache_store(dir, key, object);
    }
    k->dylib = &check<llvm::orc::JITDylib&>(
        lljit_->createJITDylib(std::string(name) + "_" + std::to_string(next_dylib_++)),
        "creating a JITDylib");
    k->dylib->addGenerator(check(llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
                                     lljit_->getDataLayout().getGlobalPrefix()),
                                 "resolving process symbols"));
    if (auto e =
            lljit_->addObjectFile(*k->dylib, llvm::MemoryBuffer::getMemBufferCopy(object, name)))
      throw Error("LLVM JIT: loading kernel " + std::string(name) + ": " +
                  llvm_error(std::move(e)));
    k->fn = check(lljit_->lookup(*k->dylib, name), "looking up the kernel").toPtr<RegionFn>();
    loaded_[hash] = k;
    return k;
  }

  // get() for a region that lives for the whole process, found by its address.
  std::shared_ptr<Loaded> get_cached(const KernelIR& ir) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = by_address_.find(&ir);
      if (it != by_address_.end()) return it->second;
    }
    auto k = get(ir);
    std::lock_guard<std::mutex> lock(mu_);
    by_address_[&ir] = k;
    return k;
  }

  void unload_all() {
    std::lock_guard<std::mutex> lock(mu_);
    by_address_.clear();
    for (auto& [_, k] : loaded_)
      if (auto e = lljit_->getExecutionSession().removeJITDylib(*k->dylib))
        throw Error("LLVM JIT: unloading a kernel: " + llvm_error(std::move(e)));
    loaded_.clear();
  }

  JitCounters counters() {
    std::lock_guard<std::mutex> lock(mu_);
    return counters_;
  }

 private:
  void optimize(llvm::Module& m) {
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    llvm::PassBuilder pb(tm_.get());
    llvm::Triple triple(triple_);
    llvm::TargetLibraryInfoImpl tlii(triple);
    if (avx2_) {
      tlii.addVectorizableFunctionsFromVecLib(llvm::TargetLibraryInfoImpl::LIBMVEC_X86, triple);
      tlii.addVectorizableFunctions(kMoreLibmvec);
    }
    fam.registerPass([&] { return llvm::TargetLibraryAnalysis(tlii); });
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O2).run(m, mam);
  }

  std::string emit(llvm::Module& m, llvm::CodeGenFileType kind) {
    llvm::SmallVector<char, 0> buf;
    llvm::raw_svector_ostream os(buf);
    llvm::legacy::PassManager pm;
    if (tm_->addPassesToEmitFile(pm, os, nullptr, kind))
      throw Error("LLVM JIT: the target machine cannot emit this file type");
    pm.run(m);
    return std::string(buf.begin(), buf.end());
  }

  std::string compile(const KernelIR& ir, const LoopLayout& layout, const std::string& name) {
    ++counters_.codegen;
    llvm::LLVMContext ctx;
    auto m = llvm_cpu::emit_region(ctx, ir, layout, name);
    m->setDataLayout(tm_->createDataLayout());
    m->setTargetTriple(triple_);
    std::string problems;
    llvm::raw_string_ostream ps(problems);
    if (llvm::verifyModule(*m, &ps))
      throw Error("LLVM JIT: generated invalid IR for region:\n" + ir.str() + ps.str());
    optimize(*m);
    const char* dump = std::getenv("DS_DUMP_KERNELS");
    if (dump && std::string(dump) == "1") {
      const char* dir_env = std::getenv("DS_DUMP_DIR");
      const std::filesystem::path dir = dir_env && *dir_env ? dir_env : "ds_dump";
      std::filesystem::create_directories(dir);
      std::string ll;
      llvm::raw_string_ostream ls(ll);
      m->print(ls, nullptr);
      std::ofstream(dir / (name + ".ll")) << "; region:\n; " << ir.str() << ls.str();
      auto copy = llvm::CloneModule(*m);
      std::ofstream(dir / (name + ".s")) << emit(*copy, llvm::CGFT_AssemblyFile);
    }
    return emit(*m, llvm::CGFT_ObjectFile);
  }

  std::mutex mu_;
  std::string triple_, cpu_, features_;
  const std::string build_ = build_identity();
  bool avx2_ = false;
  std::unique_ptr<llvm::TargetMachine> tm_;
  std::unique_ptr<llvm::orc::LLJIT> lljit_;
  std::map<uint64_t, std::shared_ptr<Loaded>> loaded_;
  std::map<const KernelIR*, std::shared_ptr<Loaded>> by_address_;  // regions of cached_kernel_ir
  JitCounters counters_;
  int64_t next_dylib_ = 0;
};

Jit& jit() {
  static Jit* j = new Jit();  // never destroyed: kernels may run during static teardown
  return *j;
}

}  // namespace

bool jit_available() {
  return true;
}
JitCounters jit_counters() {
  return jit().counters();
}
void jit_prepare(const KernelIR& ir) {
  jit().get(ir);
}
void jit_unload_all() {
  jit().unload_all();
}

namespace {

// Per-thread scratch reused by every call (runs allocate nothing once warm).
struct Scratch {
  std::vector<void*> ptrs;
  std::vector<int64_t> offsets;
  std::vector<double> kept;  // the kept registers' row buffers, 8-byte aligned
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

void run_loaded(const Loaded& k, const KernelIR& ir, const std::vector<const void*>& inputs,
                const std::vector<void*>& outputs) {
  const int64_t total = numel(ir.shape);
  if (total == 0) return;
  const size_t nin = inputs.size(), nout = outputs.size();
  const LoopLayout& l = k.layout;
  const int64_t inner = l.inner();
  // Pointers for elements [begin, begin + len) of one row; outputs with one value
  // per row (row registers, the trailing reduction) point at the row's.
  auto call = [&](int64_t begin, int64_t len, Scratch& s) {
    const int64_t row = begin / inner, col = begin % inner;
    l.row_offsets(row, s.offsets);
    for (size_t i = 0; i < nin; ++i) {
      const int64_t at = s.offsets[i] + (l.inner_contiguous(i) ? col : 0);
      s.ptrs[i] = const_cast<char*>(static_cast<const char*>(inputs[i])) +
                  at * static_cast<int64_t>(k.in_size[i]);
    }
    for (size_t o = 0; o < nout; ++o) {
      const int64_t at = k.row_output[o] ? row : begin;
      s.ptrs[nin + o] = static_cast<char*>(outputs[o]) + at * static_cast<int64_t>(k.out_size[o]);
    }
    k.fn(s.ptrs.data(), len);
  };
  if (k.rows) {  // whole rows per call, with the kept registers' row buffers
    parallel_for(total / inner, std::max<int64_t>(1, 8192 / inner), [&](int64_t r0, int64_t r1) {
      Scratch& s = scratch();
      const size_t nkept = k.kept_size.size();
      s.ptrs.resize(nin + nout + nkept);
      size_t words = 0;
      for (size_t size : k.kept_size) words += (size * static_cast<size_t>(inner) + 7) / 8;
      if (s.kept.size() < words) s.kept.resize(words);
      char* at = reinterpret_cast<char*>(s.kept.data());
      for (size_t j = 0; j < nkept; ++j) {
        s.ptrs[nin + nout + j] = at;
        at += (k.kept_size[j] * static_cast<size_t>(inner) + 7) / 8 * 8;
      }
      for (int64_t r = r0; r < r1; ++r) call(r * inner, inner, s);
    });
    return;
  }
  // Chunks of whole or partial rows; every element is computed by the same code
  // whatever the split, so results do not depend on the thread count.
  parallel_for(total, 8192, [&](int64_t begin, int64_t end) {
    Scratch& s = scratch();
    s.ptrs.resize(nin + nout);
    while (begin < end) {
      const int64_t len = std::min(inner - begin % inner, end - begin);
      call(begin, len, s);
      begin += len;
    }
  });
}

}  // namespace

void jit_run(const KernelIR& ir, const std::vector<const void*>& inputs,
             const std::vector<void*>& outputs) {
  run_loaded(*jit().get(ir), ir, inputs, outputs);
}

void jit_run_cached(const KernelIR& ir, const std::vector<const void*>& inputs,
                    const std::vector<void*>& outputs) {
  run_loaded(*jit().get_cached(ir), ir, inputs, outputs);
}

}  // namespace ds::codegen
