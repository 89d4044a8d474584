// The static (Triton-like) and AIMD batching policies.
#include <algorithm>
#include <cmath>
#include <mutex>

#include "ds/sched.h"

namespace ds::sched {

namespace {

class StaticPolicy : public Policy {
 public:
  StaticPolicy(int64_t cap, int64_t delay_us) : d_{cap, delay_us} {}
  std::string name() const override {
    return "static(b=" + std::to_string(d_.max_batch_size) + ",d=" +
           std::to_string(d_.max_queue_delay_us) + "us)";
  }
  PolicyDecision decide(const PolicyState&) override { return d_; }

 private:
  PolicyDecision d_;
};

// Additive increase / multiplicative decrease of the batch cap, as in Clipper:
// grow by one while every batch of the window computes within the target,
// halve when one does not. It watches service time, not end-to-end latency:
// under overload the queueing delay grows because the cap is too small, and
// shrinking it then would feed the overload.
class AimdPolicy : public Policy {
 public:
  AimdPolicy(double target_us, int64_t max_cap, int64_t delay_us, int window)
      : target_us_(target_us), max_cap_(max_cap), delay_us_(delay_us), window_(window) {
    DS_CHECK(target_us > 0 && max_cap >= 1 && window >= 1, ValueError,
             "aimd_policy: target latency, max batch size and window must be positive");
  }
  std::string name() const override {
    return "aimd(target=" + std::to_string(static_cast<int64_t>(target_us_)) + "us)";
  }
  PolicyDecision decide(const PolicyState&) override {
    std::lock_guard lock(m_);
    return {static_cast<int64_t>(cap_), delay_us_};
  }
  void observe(const BatchOutcome& o) override {
    std::lock_guard lock(m_);
    slowest_us_ = std::max(slowest_us_, o.service_us);
    if (++seen_ < window_) return;
    if (slowest_us_ > target_us_) {
      cap_ = std::max(1.0, std::floor(cap_ / 2));
    } else {
      cap_ = std::min<double>(max_cap_, cap_ + 1);
    }
    seen_ = 0;
    slowest_us_ = 0;
  }

 private:
  double target_us_;
  int64_t max_cap_, delay_us_;
  int window_;
  std::mutex m_;  // the batcher decides and observes from several threads
  double cap_ = 1;
  int seen_ = 0;
  double slowest_us_ = 0;
};

}  // namespace

std::shared_ptr<Policy> static_policy(int64_t max_batch_size, int64_t max_queue_delay_us) {
  DS_CHECK(max_batch_size >= 1 && max_queue_delay_us >= 0, ValueError,
           "static_policy: max_batch_size must be >= 1 and the delay >= 0, got ", max_batch_size,
           " and ", max_queue_delay_us);
  return std::make_shared<StaticPolicy>(max_batch_size, max_queue_delay_us);
}

std::shared_ptr<Policy> aimd_policy(double target_latency_us, int64_t max_batch_size,
                                    int64_t max_queue_delay_us, int window) {
  return std::make_shared<AimdPolicy>(target_latency_us, max_batch_size, max_queue_delay_us,
                                      window);
}

}  // namespace ds::sched
