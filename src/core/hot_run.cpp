#include "core/hot_run.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#ifdef __linux__
#include <sched.h>
#endif

#include "core/worker_loan.h"
#include "ds/runtime.h"

namespace ds {
namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Task {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0, chunk = 0;
};

// What the lent workers do: take chunks for a scope, spin without one until a
// deadline (lingering), or leave the loan.
enum TeamState : int { kOwned, kLinger, kStop };

constexpr uint64_t kMaxChunks = 0xffff;
constexpr int kMaxSegments = 16;

// A task's chunks are cut into one segment per thread of the team, each thread's
// "home": it takes its own segment's chunks first, then the others'. The owner's
// home is segment 0, so run after run every thread streams the same rows of a
// GEMV's weights and finds part of them in its own L2 (two cores with 1 MB L2
// each split a 2.6 MB MLP into 1.3 MB halves: 136 GB/s per core instead of 111
// from L3; bench/NOTES.md). A segment is one 64-bit word: epoch (32 bits) | end
// chunk (16) | next chunk (16), claimed by a compare-exchange on the whole word,
// so a thread still looking at an earlier task can never claim a chunk of a new
// one with the old task's description.
struct alignas(64) Segment {
  std::atomic<uint64_t> work{0};
};

// The one team of lent workers (one HotRunScope holds it at a time). What one
// side writes while the other reads sits on cache lines of its own: with the
// chunk counter beside the task description, every chunk bounced that line
// between the cores (a 512x784 GEMV in 4-row chunks took longer split than alone).
struct Team {
  Segment seg[kMaxSegments];
  // Written by the owner before a loan or a task, then only read.
  alignas(64) Task task;               // rewritten only while no chunk is claimed
  int segments = 1;                    // the owner + the workers asked for; fixed per loan
  int owner_cpu = -1;                  // where the owner ran when it lent the workers
  uint32_t epoch = 0;
  alignas(64) std::atomic<int> state{kStop};
  std::atomic<int64_t> linger_until_ns{0};
  std::atomic<uint32_t> published{0};  // the last task whose segments are all written
  alignas(64) std::atomic<int> finished{0};  // chunks of the current task done
  alignas(64) std::atomic<int> next_home{1};  // workers' homes, handed out as they join
  std::atomic<int> worker_chunks{0};         // chunks the workers ran in this scope
  std::mutex error_mu;
  std::exception_ptr error;
  // Kept by the owner (under g_owner):
  alignas(64) bool loan_open = false;  // workers lent, maybe lingering or leaving
  int helpers = 0;                     // workers in the open loan
  Clock::time_point last_end{};        // when the last scope ended
  // Load feedback (see HotRunScope::~HotRunScope).
  int splits = 0;                      // hot_split calls in this scope that split
  Clock::duration straggler_wait{};    // the owner waiting for workers
  int skip_left = 0;                   // scopes still to run without workers
  int next_skip = 1;
};

// A scope judged bad (below) makes the next 1, 2, 4, ... up to kMaxSkip scopes
// run without workers; a good one resets that.
constexpr int kMaxSkip = 256;
constexpr auto kMaxStragglerWait = std::chrono::microseconds(20);

Team g_team;
std::mutex g_owner;  // held by the scope that holds the team
thread_local bool t_owner = false;
thread_local int t_helpers = 0;

// DS_HOT_LINGER_US (default 50): how long lent workers keep spinning after a
// lingering scope, for the next one. 0 turns lingering off.
std::atomic<int64_t> g_linger_us{[] {
  const char* env = std::getenv("DS_HOT_LINGER_US");
  return env ? std::max<int64_t>(0, std::atoll(env)) : int64_t{50};
}()};

// The next chunk of task `epoch` in a segment, or -1 when it has none left.
int64_t claim(Segment& s, uint32_t epoch) {
  uint64_t v = s.work.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t next = v & kMaxChunks, end = (v >> 16) & kMaxChunks;
    if (next >= end || (v >> 32) != epoch) return -1;
    if (s.work.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel,
                                     std::memory_order_acquire))
      return static_cast<int64_t>(next);
  }
}

// Claims and runs chunks of task `epoch`, home segment first, until none is
// left; returns how many (counted in `finished` once, at the end). Only that
// task's chunks: a worker draining while the owner writes the next task's
// segments would otherwise begin on another's segment before its own is out.
int drain(Team& t, int home, uint32_t epoch) {
  int ran = 0;
  for (int k = 0; k < t.segments; ++k) {
    Segment& s = t.seg[(home + k) % t.segments];
    for (int64_t c; (c = claim(s, epoch)) >= 0;) {
      // The owner rewrites `task` only after every claimed chunk has finished.
      const Task task = t.task;
      const int64_t b = c * task.chunk;
      try {
        (*task.fn)(b, std::min(task.n, b + task.chunk));
      } catch (...) {
        std::lock_guard<std::mutex> lock(t.error_mu);
        if (!t.error) t.error = std::current_exception();
      }
      ++ran;
    }
  }
  if (ran > 0) t.finished.fetch_add(ran, std::memory_order_release);
  return ran;
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
  // About 0.1 ms (a pause takes 23 ns on this VM). Yielding every 256 pauses
  // (6 us) made a spinning worker slow to see a task: splits of 1-2 us gained
  // nothing (a 128x512 GEMV: 2.3 us split and alone; 1.4 us split now).
  static constexpr unsigned kYieldEvery = 4096;
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

// A lent worker's job: take chunks as they are published, and between scopes
// linger until the deadline; leave when told to or when the deadline passed.
void spin(Team& t) {
  move_off_cpu(t.owner_cpu);
  const int id = t.next_home.fetch_add(1, std::memory_order_relaxed);
  const int home = t.segments > 1 ? 1 + (id - 1) % (t.segments - 1) : 0;
  Backoff backoff;
  uint32_t seen = t.published.load(std::memory_order_acquire) - 1;  // join a task out now
  for (;;) {
    const int s = t.state.load(std::memory_order_acquire);
    if (s == kStop) return;
    if (s == kLinger && now_ns() >= t.linger_until_ns.load(std::memory_order_relaxed)) {
      int lingering = kLinger;
      if (t.state.compare_exchange_strong(lingering, kStop, std::memory_order_acq_rel)) return;
      continue;  // a scope took the team just now
    }
    if (const uint32_t epoch = t.published.load(std::memory_order_acquire); epoch != seen) {
      seen = epoch;
      if (const int ran = drain(t, home, epoch))
        t.worker_chunks.fetch_add(ran, std::memory_order_relaxed);
    }
    backoff.pause();
  }
}

// The pool wants its workers back for a parallel_for: lingering ones leave now.
void stop_lingering() {
  int lingering = kLinger;
  g_team.state.compare_exchange_strong(lingering, kStop, std::memory_order_acq_rel);
}

// Ends the team's loan (under g_owner): workers leave and sleep in the pool again.
void close_loan(Team& t) {
  if (!t.loan_open) return;
  t.state.store(kStop, std::memory_order_release);
  end_worker_loan();  // returns once every lent worker sleeps in the pool again
  t.loan_open = false;
  t.helpers = 0;
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

HotRunScope::HotRunScope(bool may_linger) : may_linger_(may_linger) {
  if (t_owner || !hot_runs_enabled()) return;  // nested: the outer scope's workers serve it
  const int want = num_threads() - 1;
  if (want <= 0 || !g_owner.try_lock()) return;
  Team& t = g_team;
  const Clock::time_point now = Clock::now();
  back_to_back_ = now - t.last_end < std::chrono::microseconds(g_linger_us.load());
  if (t.skip_left > 0) {
    --t.skip_left;
    close_loan(t);
    g_owner.unlock();
    return;
  }
  t.worker_chunks.store(0, std::memory_order_relaxed);
  t.splits = 0;
  t.straggler_wait = {};
  int lingering = kLinger;
  if (t.loan_open && t.helpers <= want &&
      t.state.compare_exchange_strong(lingering, kOwned, std::memory_order_acq_rel)) {
    helpers_ = t.helpers;  // still spinning since the last scope: no wake-up
  } else {
    close_loan(t);  // its workers stopped lingering
    t.state.store(kOwned, std::memory_order_relaxed);
#ifdef __linux__
    t.owner_cpu = sched_getcpu();
#endif
    t.segments = std::min(want + 1, kMaxSegments);
    t.next_home.store(1, std::memory_order_relaxed);
    helpers_ = t.helpers = lend_workers(want, [] { spin(g_team); }, stop_lingering);
    t.loan_open = helpers_ > 0;
    woken_ = true;
    // A worker woken onto this CPU (wake-affine) waits behind this thread until
    // it is preempted, milliseconds away: give it the CPU once, so that it moves
    // itself off (move_off_cpu). Costs a syscall where it went elsewhere.
    if (helpers_ > 0) std::this_thread::yield();
  }
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
// without workers (backing off while it lasts, retrying now and then). Workers
// just woken may well arrive after a small run's splits on an idle machine too
// (13-28 us), so there only the owner's waiting counts.
//
// Lingering: a good scope that may linger and began within a linger of the last
// one (runs arriving back to back) leaves its workers spinning until the
// deadline, so that the next scope finds them awake instead of paying a wake-up
// (13-28 us on this VM) in every run. Runs further apart never linger, and the
// workers sleep again at most one linger after the last run.
HotRunScope::~HotRunScope() {
  if (helpers_ == 0) return;
  Team& t = g_team;
  bool good = true;
  if (t.splits > 0) {
    good = (woken_ || t.worker_chunks.load(std::memory_order_relaxed) > 0) &&
           t.straggler_wait <= kMaxStragglerWait;
    t.skip_left = good ? 0 : t.next_skip;
    t.next_skip = good ? 1 : std::min(2 * t.next_skip, kMaxSkip);
  }
  const int64_t linger_us = g_linger_us.load();
  t.last_end = Clock::now();
  if (may_linger_ && good && t.splits > 0 && back_to_back_ && linger_us > 0) {
    t.linger_until_ns.store(now_ns() + linger_us * 1000, std::memory_order_relaxed);
    t.state.store(kLinger, std::memory_order_release);
  } else {
    close_loan(t);
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
  const uint64_t count = static_cast<uint64_t>((n + chunk - 1) / chunk);
  Team& t = g_team;
  t.task = {&fn, n, chunk};
  t.finished.store(0, std::memory_order_relaxed);
  ++t.epoch;
  const uint64_t segments = static_cast<uint64_t>(t.segments);
  for (uint64_t s = 0; s < segments; ++s)
    t.seg[s].work.store((static_cast<uint64_t>(t.epoch) << 32) |
                            (count * (s + 1) / segments << 16) | (count * s / segments),
                        std::memory_order_release);
  t.published.store(t.epoch, std::memory_order_release);
  drain(t, 0, t.epoch);
  ++t.splits;
  if (t.finished.load(std::memory_order_acquire) < static_cast<int>(count)) {
    const auto start = Clock::now();
    Backoff backoff;
    while (t.finished.load(std::memory_order_acquire) < static_cast<int>(count)) backoff.pause();
    t.straggler_wait += Clock::now() - start;
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

void set_hot_run_linger(std::chrono::microseconds linger) {
  g_linger_us.store(std::max<int64_t>(0, linger.count()));
}

std::chrono::microseconds hot_run_linger() {
  return std::chrono::microseconds(g_linger_us.load());
}

bool splits_when_hot(const std::string& impl) {
  const std::string suffix = kHotSplitSuffix;
  return impl.size() >= suffix.size() &&
         impl.compare(impl.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace ds
