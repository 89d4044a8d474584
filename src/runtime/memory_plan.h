// Static memory planning on the final launch order: liveness intervals ->
// offsets in one arena, with in-place reuse where the op allows it.
#pragma once

#include <cstdint>
#include <vector>

namespace ds {

struct BufferRequest {
  int64_t bytes = 0;
  int first_step = 0;  // step that writes it
  int last_step = 0;   // last step that reads it
  int alias_of = -1;   // index of a request whose memory this one may take over (in place)
};

struct MemoryPlan {
  std::vector<int64_t> offsets;  // per request, 64-byte aligned
  int64_t arena_bytes = 0;
  int64_t unplanned_bytes = 0;   // sum of all requests: what a run without reuse needs
};

// Greedy best-fit by decreasing size over lifetime intervals.
MemoryPlan plan_memory(const std::vector<BufferRequest>& requests);

}  // namespace ds
