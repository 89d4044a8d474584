// The CPU kernel of `fused`: the region JIT-compiled by LLVM. `supports` runs
// when an executable is built, so compilation (or the disk-cache load) happens
// in ds::compile, not in the first run. Regions with float16/bfloat16 values
// (made for CUDA targets only) are left to the reference interpreter.
#include "codegen/jit.h"
#include "ds/op.h"

namespace ds::codegen {
namespace {

const OpRegistrar reg([] {
  register_kernel("fused", DeviceKind::CPU,
                  {.fn =
                       [](const KernelCall& k) {
                         const KernelIR& ir = cached_kernel_ir(k.ctx.s("region"));
                         std::vector<const void*> in;
                         for (const Tensor& t : k.inputs) in.push_back(t.raw_data());
                         std::vector<void*> out;
                         for (Tensor& t : k.outputs) out.push_back(t.raw_data());
                         jit_run_cached(ir, in, out);
                       },
                   .supports =
                       [](const OpContext& c) {
                         const KernelIR& ir = cached_kernel_ir(c.s("region"));
                         if (uses_low_precision(ir)) return false;
                         jit_prepare(ir);
                         return true;
                       },
                   .impl = "llvm-jit",
                   .priority = 10});
});

}  // namespace
}  // namespace ds::codegen
