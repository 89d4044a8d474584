// The Profiler's state, shared by recording (profiler.cpp), the tables and the
// trace writer.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>

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
  std::shared_ptr<DeviceTimer> timer;  // null: no device times
  std::vector<DeviceActivity> device_activities;  // of the last finished recording
  std::string device_warning;  // a failed collect()
  bool warned = false;         // the timer's warning was printed
};

// Links device activities (DeviceActivity::op: the timer's ids) to their ops'
// indices in `events`, sums each op's device time, sorts them by device, stream
// and start, and trims overlaps on a stream (event times are rounded) so that a
// stream's spans never overlap.
void attach_device_activities(std::vector<ProfileEvent>& events, std::vector<DeviceActivity>& acts,
                              const std::unordered_map<int64_t, int>& op_of_id);

}  // namespace ds
