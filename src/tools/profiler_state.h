// The Profiler's state, shared by recording (profiler.cpp), the tables and the
// trace writer.
#pragma once

#include <map>
#include <string>

#include "ds/profile.h"

namespace ds {

struct Profiler::State {
  ProfilerOptions options;
  ProfileClock clock;
  int64_t step = 0;
  uint64_t generation = 0;  // nonzero while this profiler records
  bool finished = false;    // stop() was called
  int64_t recording_start = 0;
  std::vector<ProfileEvent> events;  // the last finished recording
  std::map<int, std::string> thread_names;  // OS thread names of its threads
  int64_t dropped = 0;
  int64_t events_start = 0;  // clock at the start of that recording
  std::vector<CounterSample> counters;
};

}  // namespace ds
