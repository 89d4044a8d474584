#include "core/thread_pool.h"
#include "core/thread_cap.h"
#include "core/worker_loan.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "ds/runtime.h"

namespace ds {
namespace {

thread_local bool t_in_parallel = false;
thread_local int t_thread_cap = 0;  // ScopedThreadCap's cap on this thread; 0: none

// Polls before end_loan sleeps: lent workers return in well under this.
constexpr int kEndLoanPauses = 4000;  // a few microseconds: workers run on other CPUs
constexpr int kEndLoanYields = 2000;  // then give this CPU away: it may be descheduled

class ThreadPool {
 public:
  explicit ThreadPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  // Hands up to `n` idle workers to `job` (each runs it once) and returns at once;
  // returns how many were lent: 0 while another loan is open. end_loan waits for
  // them to leave the job (the caller makes the job return) and back to sleep.
  int lend(int n, std::function<void()> job, void (*reclaim)()) {
    int lent = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const int idle = workers() - active_ - loan_active_;
      if (loan_open_ || n <= 0 || idle <= 0) return 0;
      loan_open_ = true;
      ++loans_;
      lent = loan_wanted_ = std::min(n, idle);
      loan_job_ = std::move(job);
      loan_reclaim_ = reclaim;
    }
    // Notified after unlocking, so that a woken worker does not block on mu_ at once.
    cv_.notify_all();
    return lent;
  }
  void end_loan() {
    std::unique_lock<std::mutex> lock(mu_);
    loan_wanted_ = 0;  // workers not yet woken stay asleep
    // The lender has told the job to return, so lent workers leave within a few
    // hundred ns: wait for them spinning, as sleeping on done_cv_ would cost a
    // wake-up of this thread (15-25 us on this VM) unless one was descheduled.
    lock.unlock();
    for (int i = 0; i < kEndLoanPauses && loan_active_.load() > 0; ++i) cpu_pause();
    for (int i = 0; i < kEndLoanYields && loan_active_.load() > 0; ++i) std::this_thread::yield();
    lock.lock();
    done_cv_.wait(lock, [&] { return loan_active_ == 0; });
    loan_job_ = nullptr;
    loan_reclaim_ = nullptr;
    loan_open_ = false;
  }
  int lent() const { return loan_active_.load(); }
  int64_t loans() {
    std::lock_guard<std::mutex> lock(mu_);
    return loans_;
  }

  // Runs task(i) for i in [0, tasks) on the callers + `helpers` workers.
  void run(int tasks, int helpers, const std::function<void(int)>& task) {
    std::unique_lock<std::mutex> run_lock(run_mu_);  // one parallel region at a time
    std::atomic<int> next{0};
    std::atomic<int> done{0};
    std::exception_ptr error;
    std::mutex error_mu;
    auto work = [&] {
      t_in_parallel = true;
      for (int i; (i = next.fetch_add(1)) < tasks;) {
        try {
          task(i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (!error) error = std::current_exception();
        }
        done.fetch_add(1);
      }
      t_in_parallel = false;
    };
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = work;
      wanted_ = helpers;
      ++generation_;
    }
    cv_.notify_all();
    // Lingering lent workers (core/hot_run.h) leave their job now and, awake,
    // find this region (set up above) without sleeping first.
    if (void (*reclaim)() = loan_reclaim_.load(); reclaim && loan_active_.load() > 0) reclaim();
    work();
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return active_ == 0 && done.load() == tasks; });
    wanted_ = 0;
    job_ = nullptr;
    if (error) std::rethrow_exception(error);
  }

 private:
  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock,
               [&] { return stop_ || loan_wanted_ > 0 || (generation_ != seen && wanted_ > 0); });
      if (stop_) return;
      if (loan_wanted_ > 0) {
        --loan_wanted_;
        ++loan_active_;
        auto job = loan_job_;
        lock.unlock();
        job();
        lock.lock();
        --loan_active_;
        done_cv_.notify_all();
        continue;
      }
      seen = generation_;
      --wanted_;
      ++active_;
      auto job = job_;
      lock.unlock();
      job();
      lock.lock();
      --active_;
      done_cv_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  std::function<void()> job_;
  uint64_t generation_ = 0;
  int wanted_ = 0;
  int active_ = 0;
  bool stop_ = false;
  // A loan (lend/end_loan): workers running loan_job_ are not counted in active_,
  // so parallel_for on other threads never waits for them.
  std::function<void()> loan_job_;
  std::atomic<void (*)()> loan_reclaim_{nullptr};  // asks lent workers back (lend's reclaim)
  int loan_wanted_ = 0;
  std::atomic<int> loan_active_{0};  // written under mu_; read without it while waiting
  bool loan_open_ = false;
  int64_t loans_ = 0;  // loans opened so far
};

int default_threads() {
  if (const char* env = std::getenv("DS_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int> g_threads{0};

ThreadPool& pool() {
  // Never destroyed (static destruction order); more threads than workers + 1 just queue.
  static ThreadPool* p = new ThreadPool(
      std::max(default_threads(), static_cast<int>(std::thread::hardware_concurrency())) - 1);
  return *p;
}

}  // namespace

int num_threads() {
  int n = g_threads.load();
  if (n == 0) {
    n = default_threads();
    g_threads.store(n);
  }
  return t_thread_cap > 0 && t_thread_cap < n ? t_thread_cap : n;
}

ScopedThreadCap::ScopedThreadCap(int cap) : saved_(t_thread_cap) { t_thread_cap = cap; }
ScopedThreadCap::~ScopedThreadCap() { t_thread_cap = saved_; }

void set_num_threads(int n) { g_threads.store(n > 0 ? n : default_threads()); }

int lend_workers(int n, std::function<void()> job, void (*reclaim)()) {
  return pool().lend(n, std::move(job), reclaim);
}
void end_worker_loan() { pool().end_loan(); }
int lent_workers() { return pool().lent(); }
int64_t worker_loans() { return pool().loans(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = num_threads();
  const int64_t max_chunks = (n + grain - 1) / grain;
  if (threads <= 1 || max_chunks <= 1 || t_in_parallel) {
    fn(0, n);
    return;
  }
  const int tasks = static_cast<int>(std::min<int64_t>(max_chunks, threads));
  const int64_t chunk = (n + tasks - 1) / tasks;
  pool().run(tasks, std::min(tasks - 1, pool().workers()), [&](int i) {
    const int64_t b = i * chunk, e = std::min(n, b + chunk);
    if (b < e) fn(b, e);
  });
}

}  // namespace ds
