// Which CPU ops run on the calling thread only: one rule for eager ops and for
// compiled executables' steps, from the OpDef cost model.
#pragma once

#include "core/thread_cap.h"
#include "ds/op.h"

namespace ds {

// An op under both runs on the calling thread only: about 20 us of one core's
// work (a batch-1 GEMV of 512x784 is 0.8 MFLOP over 1.6 MB), where waking and
// joining pool threads (and OpenBLAS's or oneDNN's OpenMP team) costs as much as
// it saves (bench/run_compiled_vs_eager.py measures it; bench/NOTES.md, issue 3).
constexpr double kSerialMaxFlops = 1e6;
constexpr double kSerialMaxBytes = 4e6;

inline bool runs_serially(const Cost& c) {
  return c.flops < kSerialMaxFlops && c.bytes < kSerialMaxBytes;
}

// Caps this thread to one worker for the scope of a serial op; no cap otherwise.
class SerialOpScope {
 public:
  explicit SerialOpScope(bool serial) : cap_(serial ? 1 : 0) {}

 private:
  ScopedThreadCap cap_;
};

}  // namespace ds
