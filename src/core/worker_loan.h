// Worker loans from the parallel_for pool (src/core/thread_pool.cpp), for a caller
// that keeps workers busy on its own terms for a while (core/hot_run.h). A header
// of its own so that the many includers of thread_pool.h do not see it.
#pragma once

#include <cstdint>
#include <functional>

namespace ds {

// One step of a spin-wait (lender and lent workers wait for each other by
// spinning): lets the sibling hyperthread and the memory system breathe.
inline void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Lends up to n idle workers to `job` (each runs it once) and returns at once with
// how many it lent: 0 while another loan is open or no worker is idle. Lent
// workers do not serve parallel_for meanwhile; it runs on those left, after
// calling `reclaim` (when given), which may make the job return early so that
// the workers serve it.
int lend_workers(int n, std::function<void()> job, void (*reclaim)() = nullptr);
// Waits until the lent workers have left the job (the lender makes it return) and
// gone back to sleep, and closes the loan.
void end_worker_loan();
// Workers inside a loan's job now (0 once end_worker_loan has returned).
int lent_workers();
// Loans opened since the process started (tests: did an executable lend workers).
int64_t worker_loans();

}  // namespace ds
