// Shared by the profiler tests: a fake clock, an op with a fixed cost, and the
// Chrome trace invariants (valid events, every track named, strictly nested
// spans per track, flow events paired).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ds/profile.h"

namespace ds::profiler_test {

using json = nlohmann::json;

struct FakeClock {
  int64_t now = 0;
  ProfileClock fn() {
    return [this] { return now; };
  }
};

// An op with a fixed cost, so the golden figures do not follow the real ops' cost models.
inline const OpDef& fixed_cost_op() {
  static const OpDef& op = [] () -> const OpDef& {
    OpDef d;
    d.name = "profiler_test_op";
    d.infer = [](const OpContext& c) { return c.inputs; };
    d.cost = [](const OpContext&) { return Cost{2e6, 4e6}; };
    d.reference = [](const KernelCall&) {};
    register_op(d);
    return get_op("profiler_test_op");
  }();
  return op;
}

struct TestOp {
  explicit TestOp(Shape shape = {2, 3}) : types{{DType::Float32, std::move(shape)}} {}
  AttrMap attrs;
  std::vector<TensorType> types;
  OpContext ctx{fixed_cost_op(), attrs, types, "%1 profiler_test_op 'x'"};
  KernelEntry kernel{{}, {}, "test-impl", 0};
};

inline int64_t to_ns(const json& us) { return std::llround(us.get<double>() * 1000.0); }

inline void check_trace_invariants(const json& trace) {
  ASSERT_TRUE(trace.contains("traceEvents"));
  using Track = std::pair<int64_t, int64_t>;  // pid, tid
  std::map<Track, std::vector<std::pair<int64_t, int64_t>>> spans;  // (start, end)
  std::set<Track> named_threads;
  std::map<int64_t, int> flow_starts, flow_ends;
  for (const auto& e : trace["traceEvents"]) {
    ASSERT_TRUE(e.contains("ph") && e.contains("name") && e.contains("pid")) << e.dump();
    const int64_t pid = e["pid"].get<int64_t>();
    if (e["ph"] == "M" && e["name"] == "thread_name") named_threads.insert({pid, e["tid"].get<int64_t>()});
    if (e["ph"] == "s") ++flow_starts[e["id"].get<int64_t>()];
    if (e["ph"] == "f") ++flow_ends[e["id"].get<int64_t>()];
    if (e["ph"] != "X") continue;
    const int64_t ts = to_ns(e["ts"]), dur = to_ns(e["dur"]);
    EXPECT_GE(dur, 0) << e.dump();
    spans[{pid, e["tid"].get<int64_t>()}].emplace_back(ts, ts + dur);
  }
  for (const auto& [id, n] : flow_starts) EXPECT_EQ(n, 1) << "flow " << id;
  EXPECT_EQ(flow_starts.size(), flow_ends.size());
  for (const auto& [id, n] : flow_ends) EXPECT_EQ(flow_starts.count(id), 1u) << "flow " << id;
  for (auto& [track, list] : spans) {
    EXPECT_TRUE(named_threads.count(track))
        << "track " << track.first << "/" << track.second << " has no thread_name metadata";
    std::sort(list.begin(), list.end(), [](auto a, auto b) {
      return a.first != b.first ? a.first < b.first : a.second > b.second;
    });
    std::vector<int64_t> open_ends;
    for (auto [start, end] : list) {
      while (!open_ends.empty() && open_ends.back() <= start) open_ends.pop_back();
      if (!open_ends.empty()) {
        EXPECT_LE(end, open_ends.back()) << "event [" << start << ", " << end
                                         << "] overlaps its enclosing event on track "
                                         << track.first << "/" << track.second;
      }
      open_ends.push_back(end);
    }
  }
}

}  // namespace ds::profiler_test
