// Caps num_threads() on the calling thread for a scope. Kernels too small to
// repay waking other threads (a compiled executable decides from the cost
// model) run on the caller: parallel_for, the OpenBLAS and oneDNN wrappers all
// read num_threads().
#pragma once

namespace ds {

class ScopedThreadCap {
 public:
  explicit ScopedThreadCap(int cap);  // cap <= 0: no cap
  ~ScopedThreadCap();
  ScopedThreadCap(const ScopedThreadCap&) = delete;
  ScopedThreadCap& operator=(const ScopedThreadCap&) = delete;

 private:
  int saved_;
};

}  // namespace ds
