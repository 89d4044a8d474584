// ScopedThreadCap: kernels too small for the thread pool run on the caller.
#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

#include "core/thread_cap.h"
#include "core/thread_pool.h"
#include "ds/runtime.h"

TEST(ThreadCap, CapsThisThreadOnlyAndRestores) {
  const int before = ds::num_threads();
  ds::set_num_threads(2);
  {
    const ds::ScopedThreadCap cap(1);
    EXPECT_EQ(ds::num_threads(), 1);
    std::set<std::thread::id> ran_on;
    std::mutex mu;
    ds::parallel_for(1 << 16, 1, [&](int64_t, int64_t) {
      std::lock_guard<std::mutex> lock(mu);
      ran_on.insert(std::this_thread::get_id());
    });
    EXPECT_EQ(ran_on, std::set<std::thread::id>{std::this_thread::get_id()});
    int other = 0;
    std::thread([&] { other = ds::num_threads(); }).join();
    EXPECT_EQ(other, 2);  // another thread is not capped
    {
      const ds::ScopedThreadCap none(0);  // 0: no cap inside
      EXPECT_EQ(ds::num_threads(), 2);
    }
    EXPECT_EQ(ds::num_threads(), 1);
  }
  EXPECT_EQ(ds::num_threads(), 2);
  ds::set_num_threads(before);
}
