// Arrival rate over an exponentially decaying window: each arrival adds 1/tau,
// and the sum decays by exp(-dt/tau). Unlike a moving average of 1/gap it has
// no heavy tail from near-simultaneous arrivals, and it falls while nothing
// arrives. Times in microseconds; rates in requests per second.
#pragma once

#include <algorithm>
#include <cmath>

namespace ds::sched::detail {

class RateMeter {
 public:
  explicit RateMeter(double tau_us) : tau_us_(tau_us) {}
  void arrive(double t_us) {
    rate_ = rate(t_us);
    last_us_ = std::max(last_us_, t_us);
    rate_ += 1e6 / tau_us_;
  }
  double rate(double t_us) const {
    return rate_ * std::exp(-std::max(0.0, t_us - last_us_) / tau_us_);
  }

 private:
  double tau_us_;
  double rate_ = 0;
  double last_us_ = 0;
};

// The windows the simulator and the live batcher report to policies: a short
// one that follows a jump within tens of milliseconds, and a long one that the
// short one leaves behind while the load shifts (the trend).
constexpr double kShortRateWindowUs = 20000;
constexpr double kLongRateWindowUs = 200000;

}  // namespace ds::sched::detail
