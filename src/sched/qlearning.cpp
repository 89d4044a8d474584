// Tabular Q-learning for batching. One decision per batch: decide() picks an
// action for the current state and holds it until observe() reports how that
// batch went; the next decide() closes the step with the one-step update
//   Q(s,a) += lr * (r + discount * max_a' Q(s',a') - Q(s,a)).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>

#include "ds/sched.h"

namespace ds::sched {

namespace {

int depth_bucket(int64_t n) {
  if (n == 0) return 0;
  if (n <= 2) return 1;
  if (n <= 8) return 2;
  if (n <= 32) return 3;
  return 4;
}

}  // namespace

struct QLearningPolicy::Impl {
  QLearningOptions opt;
  std::mutex m;
  std::mt19937_64 rng;
  std::map<std::string, std::vector<double>> q;
  std::optional<std::pair<std::string, int>> pending;  // decided, not yet observed
  std::optional<double> reward;                        // observed, not yet credited
  double min_service_us = 1e300;                       // the fastest batch seen
  double recent_miss_rate = 0;                         // EWMA over batches

  explicit Impl(QLearningOptions o) : opt(std::move(o)), rng(opt.seed) {}

  size_t actions() const { return opt.batch_caps.size() * opt.queue_delays_us.size(); }

  std::string state_key(const PolicyState& s) const {
    std::string k;
    // Level 1 alone, the other levels together: urgent work is what the cap must protect.
    int64_t rest = 0;
    for (size_t l = 1; l < s.queue_depth.size(); ++l) rest += s.queue_depth[l];
    k += std::to_string(depth_bucket(s.queue_depth.empty() ? 0 : s.queue_depth[0]));
    k += std::to_string(depth_bucket(rest));
    k += std::to_string(std::min(opt.rate_buckets - 1,
                                 static_cast<int>(opt.rate_buckets * s.arrival_rate / opt.max_rate)));
    k += std::to_string(std::min(3, static_cast<int>(4 * s.utilization)));
    // Whether deadlines are being missed lately: the same queue can call for
    // small batches (urgent work is late) or big ones (throughput is short).
    k += recent_miss_rate < 0.005 ? '0' : recent_miss_rate < 0.05 ? '1' : '2';
    return k;
  }

  std::vector<double>& row(const std::string& key) {
    // Optimistic start: every action of a new state looks good until tried, so
    // greedy choices still try them all once.
    auto [it, added] = q.try_emplace(key, actions(), opt.initial_value);
    return it->second;
  }

  PolicyDecision action(int a) const {
    const size_t nd = opt.queue_delays_us.size();
    return {opt.batch_caps[a / nd], opt.queue_delays_us[a % nd]};
  }
};

QLearningPolicy::QLearningPolicy(QLearningOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  const auto& o = impl_->opt;
  DS_CHECK(!o.batch_caps.empty() && !o.queue_delays_us.empty(), ValueError,
           "QLearningPolicy: the action set (batch caps x queue delays) is empty");
  for (int64_t c : o.batch_caps)
    DS_CHECK(c >= 1, ValueError, "QLearningPolicy: batch cap ", c, " must be >= 1");
  DS_CHECK(o.learning_rate > 0 && o.learning_rate <= 1 && o.discount >= 0 && o.discount < 1 &&
               o.epsilon >= 0 && o.epsilon <= 1 && o.max_rate > 0 && o.rate_buckets >= 1 &&
               o.rate_buckets <= 10,
           ValueError, "QLearningPolicy: need 0 < learning_rate <= 1, 0 <= discount < 1, ",
           "0 <= epsilon <= 1, max_rate > 0 and 1 <= rate_buckets <= 10");
}

QLearningPolicy::~QLearningPolicy() = default;

PolicyDecision QLearningPolicy::decide(const PolicyState& state) {
  Impl& p = *impl_;
  std::lock_guard lock(p.m);
  if (p.pending && !p.reward) return p.action(p.pending->second);
  const std::string s = p.state_key(state);
  std::vector<double>& qs = p.row(s);
  if (p.pending && p.reward) {
    double& old = p.row(p.pending->first)[p.pending->second];
    const double target = *p.reward + p.opt.discount * *std::max_element(qs.begin(), qs.end());
    old += p.opt.learning_rate * (target - old);
  }
  int a;
  if (std::uniform_real_distribution<double>(0, 1)(p.rng) < p.opt.epsilon) {
    a = static_cast<int>(std::uniform_int_distribution<size_t>(0, p.actions() - 1)(p.rng));
  } else {
    a = static_cast<int>(std::max_element(qs.begin(), qs.end()) - qs.begin());
  }
  p.pending = {s, a};
  p.reward.reset();
  return p.action(a);
}

void QLearningPolicy::observe(const BatchOutcome& o) {
  Impl& p = *impl_;
  std::lock_guard lock(p.m);
  if (!p.pending) return;
  // Reward per unit of device time (in units of the fastest batch seen), so a
  // decision is not worth more just because it leads to many small batches.
  if (o.service_us > 0) p.min_service_us = std::min(p.min_service_us, o.service_us);
  // Time held back by a queue delay counts: waiting is not free.
  const double time_units =
      o.service_us > 0 ? (o.service_us + o.held_us) / p.min_service_us : 1;
  // Latency in the same units, so waiting for a bigger batch has a price even
  // for requests without a deadline.
  double latency_units = 0;
  for (double l : o.latency_us) latency_units += l / p.min_service_us;
  const double r = (static_cast<double>(o.deadlines_met) -
                    p.opt.miss_penalty * static_cast<double>(o.deadlines_missed) +
                    p.opt.throughput_weight * static_cast<double>(o.batch_size) -
                    p.opt.latency_weight * latency_units) /
                   time_units;
  p.reward = p.reward.value_or(0) + r;
  const double outcomes = static_cast<double>(o.deadlines_met + o.deadlines_missed);
  if (outcomes > 0)
    p.recent_miss_rate = 0.95 * p.recent_miss_rate +
                         0.05 * static_cast<double>(o.deadlines_missed) / outcomes;
}

void QLearningPolicy::set_exploration(double epsilon) {
  DS_CHECK(epsilon >= 0 && epsilon <= 1, ValueError, "QLearningPolicy: epsilon must be in [0, 1]");
  std::lock_guard lock(impl_->m);
  impl_->opt.epsilon = epsilon;
}

size_t QLearningPolicy::states_visited() const {
  std::lock_guard lock(impl_->m);
  return impl_->q.size();
}

void QLearningPolicy::save(const std::string& path) const {
  const Impl& p = *impl_;
  std::lock_guard lock(impl_->m);
  std::ofstream f(path);
  DS_CHECK(f, IOError, "QLearningPolicy::save: cannot write '", path, "'");
  f << "ds-qtable 1\ncaps";
  for (int64_t c : p.opt.batch_caps) f << " " << c;
  f << "\ndelays_us";
  for (int64_t d : p.opt.queue_delays_us) f << " " << d;
  f << "\n";
  f.precision(17);
  for (const auto& [k, qs] : p.q) {
    f << k;
    for (double v : qs) f << " " << v;
    f << "\n";
  }
  DS_CHECK(f.good(), IOError, "QLearningPolicy::save: write to '", path, "' failed");
}

void QLearningPolicy::load(const std::string& path) {
  Impl& p = *impl_;
  std::ifstream f(path);
  DS_CHECK(f, IOError, "QLearningPolicy::load: cannot read '", path, "'");
  std::string line, word;
  std::getline(f, line);
  DS_CHECK(line == "ds-qtable 1", IOError, "QLearningPolicy::load: '", path,
           "' is not a ds Q-table (first line '", line, "')");
  auto read_list = [&](const char* name) {
    std::getline(f, line);
    std::istringstream is(line);
    is >> word;
    DS_CHECK(word == name, IOError, "QLearningPolicy::load: '", path, "': expected '", name,
             "', got '", word, "'");
    std::vector<int64_t> v;
    for (int64_t x; is >> x;) v.push_back(x);
    return v;
  };
  const auto caps = read_list("caps");
  const auto delays = read_list("delays_us");
  std::lock_guard lock(p.m);
  DS_CHECK(caps == p.opt.batch_caps && delays == p.opt.queue_delays_us, ValueError,
           "QLearningPolicy::load: '", path, "' was learned for another action set");
  std::map<std::string, std::vector<double>> q;
  while (std::getline(f, line)) {
    std::istringstream is(line);
    std::string key;
    is >> key;
    std::vector<double> qs;
    for (double v; is >> v;) qs.push_back(v);
    DS_CHECK(qs.size() == p.actions(), IOError, "QLearningPolicy::load: '", path, "': state ",
             key, " has ", qs.size(), " values, expected ", p.actions());
    q[key] = std::move(qs);
  }
  p.q = std::move(q);
  p.pending.reset();
  p.reward.reset();
}

}  // namespace ds::sched
