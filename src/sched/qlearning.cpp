// Tabular Q-learning for batching. One decision per batch: decide() picks an
// action for the current state and holds it until observe() reports how that
// batch went; the next decide() closes the step with the semi-Markov update
//   Q(s,a) += lr(visits) * (r + discount^(step time) * max_a' Q(s',a') - Q(s,a)).
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

// Queue depth in steps that match the batch caps on offer.
int depth_bucket(int64_t n) {
  if (n == 0) return 0;
  if (n <= 2) return 1;
  if (n <= 8) return 2;
  if (n <= 16) return 3;
  if (n <= 32) return 4;
  if (n <= 128) return 5;
  return 6;
}

// The short-window rate against the long one: a load that jumps up shows a
// backlog coming before the queue does, one that drops shows the backlog ending.
char trend(const PolicyState& s) {
  if (s.long_arrival_rate <= 0) return '=';
  const double r = s.arrival_rate / s.long_arrival_rate;
  return r > 1.25 ? '+' : r < 0.8 ? '-' : '=';
}

struct Entry {
  double q;
  int64_t visits = 0;
};

}  // namespace

struct QLearningPolicy::Impl {
  QLearningOptions opt;
  std::mutex m;
  std::mt19937_64 rng;
  std::map<std::string, std::vector<Entry>> q;
  std::optional<std::pair<std::string, int>> pending;  // decided, not yet observed
  std::optional<double> reward;                        // observed, not yet credited
  double step_units = 0;                               // time the pending step took
  double min_service_us = 1e300;                       // the fastest batch seen

  explicit Impl(QLearningOptions o) : opt(std::move(o)), rng(opt.seed) {}

  size_t actions() const { return opt.batch_caps.size() * opt.queue_delays_us.size(); }

  std::string state_key(const PolicyState& s) const {
    std::string k;
    // Level 1 alone, the other levels together: urgent work is what the cap must protect.
    int64_t rest = 0;
    for (size_t l = 1; l < s.queue_depth.size(); ++l) rest += s.queue_depth[l];
    k += std::to_string(std::min(3, depth_bucket(s.queue_depth.empty() ? 0 : s.queue_depth[0])));
    k += std::to_string(depth_bucket(rest));
    k += std::to_string(std::min(opt.rate_buckets - 1,
                                 static_cast<int>(opt.rate_buckets * s.arrival_rate / opt.max_rate)));
    k += trend(s);
    k += std::to_string(std::min(3, static_cast<int>(4 * s.utilization)));
    return k;
  }

  std::vector<Entry>& row(const std::string& key) {
    // Optimistic start: every action of a new state looks good until tried, so
    // greedy choices still try them all once.
    auto [it, added] = q.try_emplace(key, actions(), Entry{opt.initial_value});
    return it->second;
  }

  static int best(const std::vector<Entry>& qs) {
    return static_cast<int>(std::max_element(qs.begin(), qs.end(), [](const Entry& a, const Entry& b) {
                              return a.q < b.q;
                            }) -
                            qs.begin());
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
  for (int64_t d : o.queue_delays_us)
    DS_CHECK(d >= 0, ValueError, "QLearningPolicy: queue delay ", d, " must be >= 0");
  DS_CHECK(o.learning_rate > 0 && o.learning_rate <= 1 && o.min_learning_rate > 0 &&
               o.min_learning_rate <= o.learning_rate && o.learning_rate_visits > 0 &&
               o.discount >= 0 && o.discount < 1 && o.epsilon >= 0 && o.epsilon <= 1 &&
               o.max_rate > 0 && o.rate_buckets >= 1 && o.rate_buckets <= 10,
           ValueError, "QLearningPolicy: need 0 < min_learning_rate <= learning_rate <= 1, ",
           "learning_rate_visits > 0, 0 <= discount < 1, 0 <= epsilon <= 1, max_rate > 0 and ",
           "1 <= rate_buckets <= 10");
}

QLearningPolicy::~QLearningPolicy() = default;

PolicyDecision QLearningPolicy::decide(const PolicyState& state) {
  Impl& p = *impl_;
  std::lock_guard lock(p.m);
  if (p.pending && !p.reward) return p.action(p.pending->second);
  const std::string s = p.state_key(state);
  std::vector<Entry>& qs = p.row(s);
  if (p.pending && p.reward) {
    Entry& old = p.row(p.pending->first)[p.pending->second];
    const double alpha =
        std::max(p.opt.min_learning_rate,
                 p.opt.learning_rate / (1 + static_cast<double>(old.visits) / p.opt.learning_rate_visits));
    // Semi-Markov step: the future is discounted by the time the step took.
    const double target =
        *p.reward + std::pow(p.opt.discount, p.step_units) * qs[Impl::best(qs)].q;
    old.q += alpha * (target - old.q);
    ++old.visits;
  }
  int a;
  if (std::uniform_real_distribution<double>(0, 1)(p.rng) < p.opt.epsilon) {
    a = static_cast<int>(std::uniform_int_distribution<size_t>(0, p.actions() - 1)(p.rng));
  } else {
    a = Impl::best(qs);
  }
  p.pending = {s, a};
  p.reward.reset();
  p.step_units = 0;
  return p.action(a);
}

void QLearningPolicy::observe(const BatchOutcome& o) {
  Impl& p = *impl_;
  std::lock_guard lock(p.m);
  if (!p.pending) return;
  // Time in units of the fastest batch seen, so the discount and the latency
  // price do not depend on how fast the model is.
  if (o.service_us > 0) p.min_service_us = std::min(p.min_service_us, o.service_us);
  const double unit = p.min_service_us < 1e300 ? p.min_service_us : 1;
  // Time held back by a queue delay counts: waiting is not free.
  p.step_units += o.service_us > 0 ? (o.service_us + o.held_us) / unit : 1;
  double latency_units = 0;
  for (double l : o.latency_us) latency_units += l / unit;
  const double r = p.opt.met_reward * static_cast<double>(o.deadlines_met) -
                   p.opt.miss_penalty * static_cast<double>(o.deadlines_missed) +
                   p.opt.throughput_weight * static_cast<double>(o.batch_size) -
                   p.opt.latency_weight * latency_units;
  p.reward = p.reward.value_or(0) + r;
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
  f << "ds-qtable 2\ncaps";
  for (int64_t c : p.opt.batch_caps) f << " " << c;
  f << "\ndelays_us";
  for (int64_t d : p.opt.queue_delays_us) f << " " << d;
  f << "\n";
  f.precision(17);
  // One line per state: the key, then value and visit count per action.
  for (const auto& [k, qs] : p.q) {
    f << k;
    for (const Entry& e : qs) f << " " << e.q << " " << e.visits;
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
  DS_CHECK(line == "ds-qtable 2", IOError, "QLearningPolicy::load: '", path,
           "' is not a ds Q-table of version 2 (first line '", line, "')");
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
  std::map<std::string, std::vector<Entry>> q;
  while (std::getline(f, line)) {
    std::istringstream is(line);
    std::string key;
    is >> key;
    std::vector<Entry> qs;
    for (Entry e; is >> e.q >> e.visits;) qs.push_back(e);
    DS_CHECK(is.eof() && qs.size() == p.actions(), IOError, "QLearningPolicy::load: '", path,
             "': state ", key, " has ", qs.size(), " value/visit pairs, expected ", p.actions());
    q[key] = std::move(qs);
  }
  p.q = std::move(q);
  p.pending.reset();
  p.reward.reset();
}

}  // namespace ds::sched
