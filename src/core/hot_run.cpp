#include "core/hot_run.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#ifdef __linux__
#include <sched.h>
#endif

#include "core/worker_loan.h"
#include "ds/runtime.h"

namespace ds {
namespace {

// Lets the sibling hyperthread (and the memory system) breathe while spinning.
inline void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

struct Task {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0, chunk = 0;
};

// The one team of spinning workers (one HotRunScope holds it at a time). A task is
// published as one 64-bit word: epoch (32 bits) | chunk count (16) | next chunk
// (16). A thread claims a chunk by a compare-exchange on the whole word, so a
// worker still looking at an earlier task can never claim a chunk of a new one
// with the old task's description, and the owner never waits for a worker that
// has not claimed anything.
struct Team {
  std::atomic<uint64_t> work{0};
  std::atomic<int> finished{0};  // chunks of the current task done
  std::atomic<bool> stop{false};
  int owner_cpu = -1;  // where the owner ran when it lent the workers
  Task task;           // written by the owner only while no chunk is claimed
  uint32_t epoch = 0;
  std::mutex error_mu;
  std::exception_ptr error;
  // Load feedback (see HotRunScope::~HotRunScope), kept by the owner.
  std::atomic<int> worker_chunks{0};                     // chunks the workers ran in this scope
  int splits = 0;                                        // hot_split calls in this scope that split
  std::chrono::steady_clock::duration straggler_wait{};  // the owner waiting for workers
  int skip_left = 0;                                     // scopes still to run without workers
  int next_skip = 1;
};

// A scope judged bad (below) makes the next 1, 2, 4, ... up to kMaxSkip scopes
// run without workers; a good one resets that.
constexpr int kMaxSkip = 256;
constexpr auto kMaxStragglerWait = std::chrono::microseconds(20);

constexpr uint64_t kMaxChunks = 0xffff;

Team g_team;
std::mutex g_owner;  // held by the scope that holds the team
thread_local bool t_owner = false;
thread_local int t_helpers = 0;

// Claims and runs chunks of the published task until none is left; returns how many.
int drain(Team& t) {
  int ran = 0;
  uint64_t v = t.work.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t next = v & kMaxChunks, count = (v >> 16) & kMaxChunks;
    if (next >= count) return ran;
    if (!t.work.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire))
      continue;
    // The owner rewrites `task` only after every claimed chunk has finished.
    const Task task = t.task;
    const int64_t b = static_cast<int64_t>(next) * task.chunk;
    try {
      (*task.fn)(b, std::min(task.n, b + task.chunk));
    } catch (...) {
      std::lock_guard<std::mutex> lock(t.error_mu);
      if (!t.error) t.error = std::current_exception();
    }
    ++ran;
    t.finished.fetch_add(1, std::memory_order_release);
    v = t.work.load(std::memory_order_acquire);
  }
}

// Spinning waits give the core away now and then: with more runnable threads
// than cores (another executable running on a second thread, other processes)
// the thread this one waits for may need this very core to make progress.
class Backoff {
 public:
  void pause() {
    if (++spins_ % kYieldEvery == 0)
      std::this_thread::yield();
    else
      cpu_pause();
  }

 private:
  static constexpr unsigned kYieldEvery = 256;  // pause is ~40-100 cycles on x86
  unsigned spins_ = 0;
};

// Linux wakes a thread on its waker's CPU when it last ran there (wake-affine),
// and a worker once woken onto its owner's CPU kept being woken there, spinning
// on the owner's time instead of beside it (compiled MLP batch 1 stayed at the
// serial 31-33 us in 6 of 6 processes; bench/NOTES.md, issue 3, "Hot runs").
// Such a worker moves itself off that CPU once (two changes of its own CPU mask,
// paid by the worker); later wake-ups find it where it went. Pinning the workers
// from the owner's side on every loan cost more than it saved.
void move_off_cpu(int cpu) {
#ifdef __linux__
  cpu_set_t all;
  if (cpu < 0 || sched_getcpu() != cpu || sched_getaffinity(0, sizeof(all), &all) != 0) return;
  cpu_set_t others = all;
  CPU_CLR(cpu, &others);
  if (CPU_COUNT(&others) == 0) return;
  sched_setaffinity(0, sizeof(others), &others);  // migrates this thread now
  sched_setaffinity(0, sizeof(all), &all);
#else
  (void)cpu;
#endif
}

// A lent worker's job: take chunks as they are published until the scope ends.
void spin(Team& t) {
  move_off_cpu(t.owner_cpu);
  Backoff backoff;
  while (!t.stop.load(std::memory_order_acquire)) {
    if (const int ran = drain(t)) t.worker_chunks.fetch_add(ran, std::memory_order_relaxed);
    backoff.pause();
  }
}

}  // namespace

// DS_HOT_RUNS=0 turns hot runs off (every split runs on its caller): for A/B
// measurements, and for machines whose other cores are busy anyway.
bool hot_runs_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("DS_HOT_RUNS");
    return !env || std::string(env) != "0";
  }();
  return enabled;
}

HotRunScope::HotRunScope() {
  if (t_owner || !hot_runs_enabled()) return;  // nested: the outer scope's workers serve it
  const int want = num_threads() - 1;
  if (want <= 0 || !g_owner.try_lock()) return;
  Team& t = g_team;
  if (t.skip_left > 0) {
    --t.skip_left;
    g_owner.unlock();
    return;
  }
  t.stop.store(false, std::memory_order_release);
#ifdef __linux__
  t.owner_cpu = sched_getcpu();
#endif
  t.worker_chunks.store(0, std::memory_order_relaxed);
  t.splits = 0;
  t.straggler_wait = {};
  helpers_ = lend_workers(want, [] { spin(g_team); });
  if (helpers_ == 0) {
    g_owner.unlock();
    return;
  }
  t_owner = true;
  t_helpers = helpers_;
}

// Load feedback: on a busy machine the lent worker shares its CPU with other
// processes, so it arrives late or is preempted holding a chunk the owner then
// waits for (MLP batch 1 with another job on the second core: 38 us hot, 33 us
// without). A scope that split work but whose workers ran none of it, or whose
// owner waited over kMaxStragglerWait for them, is bad: the next scopes run
// without workers (backing off while it lasts, retrying now and then).
HotRunScope::~HotRunScope() {
  if (helpers_ == 0) return;
  Team& t = g_team;
  t.stop.store(true, std::memory_order_release);
  end_worker_loan();  // returns once every lent worker sleeps in the pool again
  if (t.splits > 0) {
    const bool good = t.worker_chunks.load(std::memory_order_relaxed) > 0 &&
                      t.straggler_wait <= kMaxStragglerWait;
    t.skip_left = good ? 0 : t.next_skip;
    t.next_skip = good ? 1 : std::min(2 * t.next_skip, kMaxSkip);
  }
  t_owner = false;
  t_helpers = 0;
  g_owner.unlock();
}

int hot_helpers() {
  return t_helpers;
}

void hot_split(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  if (!t_owner || n <= chunk) {
    fn(0, n);
    return;
  }
  chunk = std::max<int64_t>(
      chunk, (n + static_cast<int64_t>(kMaxChunks) - 1) / static_cast<int64_t>(kMaxChunks));
  const int64_t count = (n + chunk - 1) / chunk;
  Team& t = g_team;
  t.task = {&fn, n, chunk};
  t.finished.store(0, std::memory_order_relaxed);
  ++t.epoch;
  t.work.store((static_cast<uint64_t>(t.epoch) << 32) | (static_cast<uint64_t>(count) << 16),
               std::memory_order_release);
  drain(t);
  ++t.splits;
  if (t.finished.load(std::memory_order_acquire) < count) {
    const auto start = std::chrono::steady_clock::now();
    Backoff backoff;
    while (t.finished.load(std::memory_order_acquire) < count) backoff.pause();
    t.straggler_wait += std::chrono::steady_clock::now() - start;
  }
  if (t.error) {
    std::exception_ptr e;
    std::swap(e, t.error);
    std::rethrow_exception(e);
  }
}

void reset_hot_run_feedback() {
  std::lock_guard<std::mutex> lock(g_owner);
  g_team.skip_left = 0;
  g_team.next_skip = 1;
}

bool splits_when_hot(const std::string& impl) {
  const std::string suffix = kHotSplitSuffix;
  return impl.size() >= suffix.size() &&
         impl.compare(impl.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace ds
