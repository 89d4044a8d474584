// A fixed pool of worker threads for data-parallel CPU kernels.
#pragma once

#include <cstdint>
#include <functional>

namespace ds {

// Runs fn(begin, end) over [0, n) split in chunks of at least `grain` items, on up
// to num_threads() threads (the caller is one of them). Nested calls run serially.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace ds
