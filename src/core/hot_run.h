// Hot runs: a compiled executable knows its whole schedule, so for a stretch of
// small steps it can keep the pool's workers awake, spinning (with a pause
// instruction) for the next piece of work, and split steps of a few microseconds
// (a batch-1 GEMV over a few MB of weights) across the cores. Waking a sleeping
// worker per op costs more than such an op (runtime/serial_ops.h); a spinning
// worker picks a task up in well under a microsecond. Eager ops cannot do this:
// they do not know whether, or when, another op follows.
//
// The workers spin while a HotRunScope lives. Its destructor sends them back to
// sleep, or, for a scope that may linger and runs arriving back to back, leaves
// them spinning for DS_HOT_LINGER_US (default 50 us) so that the next run finds
// them awake, as OpenMP's blocktime does (but 50 us, not 200 ms); runs further
// apart never linger, so an idle process burns no CPU. DS_HOT_RUNS=0 turns hot
// runs off.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace ds {

// Borrows the idle pool workers (up to num_threads() - 1) for its lifetime. One
// scope at a time has workers: a scope opened while another (on any thread) has
// them gets none, and hot_split then runs on its caller alone. So does a scope
// opened while recent ones found the machine busy (load feedback, hot_run.cpp).
// Scopes nest on a thread (the inner one is a no-op). may_linger: nothing
// threaded follows the scope in its run (an executable whose steps are all serial),
// so lingering workers take no core from the run's own work.
class HotRunScope {
 public:
  explicit HotRunScope(bool may_linger = false);
  ~HotRunScope();
  HotRunScope(const HotRunScope&) = delete;
  HotRunScope& operator=(const HotRunScope&) = delete;
  int helpers() const { return helpers_; }  // workers spinning for this scope

 private:
  int helpers_ = 0;
  bool may_linger_ = false;
  bool back_to_back_ = false;  // began within a linger of the last scope's end
  bool woken_ = false;         // lent the workers anew (they were asleep)
};

// Runs fn(begin, end) over [0, n) in chunks of `chunk` items: on the calling
// thread and the spinning workers when this thread holds a HotRunScope with
// workers (each takes the next chunk until none is left, so a late or
// descheduled worker costs nothing but its own chunk), else fn(0, n) here.
// fn must give the same result for any split (each item computed alone).
void hot_split(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn);

// Spinning workers this thread's HotRunScope holds (0 outside one).
int hot_helpers();

// False when DS_HOT_RUNS=0: scopes get no workers, every split runs on its caller.
bool hot_runs_enabled();

// Scopes whose split work the workers did not share (a busy machine) make the
// next scopes run without workers for a while (hot_run.cpp). Tests start afresh:
void reset_hot_run_feedback();

// How long workers linger after a scope (DS_HOT_LINGER_US; 0: never).
void set_hot_run_linger(std::chrono::microseconds linger);
std::chrono::microseconds hot_run_linger();

// Kernels that split over a hot run mark their impl name with this suffix: an
// executable opens a HotRunScope around stretches of serial steps with such a kernel.
inline constexpr const char* kHotSplitSuffix = "+hot-split";
bool splits_when_hot(const std::string& impl);

}  // namespace ds
