// Discrete-event simulation of one batched model: precomputed Poisson arrivals,
// workers that take a batch (the BatchQueue rule the live batcher uses) when
// free, a service-time model t(rows), and a policy asked before each batch.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <cstring>
#include <sstream>

#include "sched/batch_queue.h"
#include "sched/rate_meter.h"
#include "sched/task_state.h"

namespace ds::sched {

using detail::PendingRequest;

ServiceModel::ServiceModel(std::vector<std::pair<int64_t, double>> table_us)
    : table_(std::move(table_us)) {
  DS_CHECK(!table_.empty(), ValueError, "ServiceModel: the t(b) table is empty");
  std::sort(table_.begin(), table_.end());
  for (const auto& [b, t] : table_)
    DS_CHECK(b >= 1 && t > 0, ValueError, "ServiceModel: entry ", b, ":", t,
             " needs a batch >= 1 and a time > 0");
}

double ServiceModel::operator()(int64_t rows) const {
  if (table_.size() == 1) return table_[0].second * rows / table_[0].first;
  auto hi = std::lower_bound(table_.begin(), table_.end(), std::make_pair(rows, 0.0));
  if (hi == table_.begin()) hi = table_.begin() + 1;
  if (hi == table_.end()) hi = table_.end() - 1;
  const auto lo = hi - 1;
  const double f = static_cast<double>(rows - lo->first) / static_cast<double>(hi->first - lo->first);
  return std::max(1.0, lo->second + f * (hi->second - lo->second));
}

ServiceModel ServiceModel::parse(const std::string& spec) {
  std::vector<std::pair<int64_t, double>> t;
  std::istringstream is(spec);
  std::string item;
  while (std::getline(is, item, ',')) {
    const auto colon = item.find(':');
    DS_CHECK(colon != std::string::npos, ValueError, "ServiceModel::parse: '", item,
             "' is not rows:microseconds (in '", spec, "')");
    try {
      t.emplace_back(std::stoll(item.substr(0, colon)), std::stod(item.substr(colon + 1)));
    } catch (const std::logic_error&) {
      throw ValueError("ServiceModel::parse: '" + item + "' is not rows:microseconds");
    }
  }
  return ServiceModel(std::move(t));
}

ServiceModel measure_service_model(const BatchFn& fn, const Outputs& one_row,
                                   const std::vector<int64_t>& batch_sizes, int repeats) {
  DS_CHECK(repeats >= 1, ValueError, "measure_service_model: repeats must be >= 1");
  std::vector<std::pair<int64_t, double>> table;
  for (int64_t b : batch_sizes) {
    Outputs in;
    for (const Tensor& x : one_row) {
      DS_CHECK(x.ndim() >= 1 && x.shape()[0] == 1, ShapeError,
               "measure_service_model: inputs must have one row, got ", shape_str(x.shape()));
      Shape s = x.shape();
      s[0] = b;
      Tensor big = Tensor::empty(s, x.dtype());
      Tensor src = x.contiguous();
      for (int64_t r = 0; r < b; ++r)
        std::memcpy(static_cast<char*>(big.raw_data()) + r * src.nbytes(), src.raw_data(), src.nbytes());
      in.push_back(big);
    }
    fn(in);  // warm-up
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i) {
      const auto t0 = Clock::now();
      fn(in);
      t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    table.emplace_back(b, t[t.size() / 2]);
  }
  return ServiceModel(std::move(table));
}

namespace {

struct Arrival {
  double t_us;
  int cls;
};

std::vector<Arrival> poisson_arrivals(const SimOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::vector<double> shares;
  for (const auto& c : o.classes) shares.push_back(c.share);
  std::discrete_distribution<int> pick(shares.begin(), shares.end());
  std::vector<Arrival> a;
  double start = 0;
  for (const SimPhase& p : o.phases) {
    DS_CHECK(p.rate > 0 && p.seconds > 0, ValueError, "simulate: a phase needs rate > 0 and seconds > 0");
    std::exponential_distribution<double> gap(p.rate / 1e6);
    const double end = start + p.seconds * 1e6;
    for (double t = start + gap(rng); t < end; t += gap(rng)) a.push_back({t, pick(rng)});
    start = end;
  }
  return a;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1))];
}

struct Member {
  int cls;
  double arrival_us;
  std::optional<double> deadline_us;
};

struct Running {
  double free_since_us = 0;
  double held_us = 0;
  double done_us = std::numeric_limits<double>::infinity();
  std::vector<Member> members;  // indexed by PendingRequest::seq (the push order)
  int64_t rows = 0;
  double service_us = 0;
};

}  // namespace

SimResult simulate(const SimOptions& o, const ServiceModel& service, Policy& policy) {
  DS_CHECK(o.workers >= 1 && !o.classes.empty(), ValueError,
           "simulate: need at least one worker and one request class");
  for (const auto& c : o.classes)
    DS_CHECK(c.priority >= 1 && c.priority <= o.priority_levels && c.rows >= 1, ValueError,
             "simulate: class '", c.name, "' needs priority 1..", o.priority_levels, " and rows >= 1");
  const std::vector<Arrival> arrivals = poisson_arrivals(o);
  detail::BatchQueue queue(o.priority_levels);
  std::vector<Member> members;  // indexed by PendingRequest::seq (the push order)
  std::vector<Running> workers(o.workers);
  std::vector<std::vector<double>> latency(o.classes.size());
  SimResult res;
  res.policy = policy.name();
  res.classes.resize(o.classes.size());
  for (size_t c = 0; c < o.classes.size(); ++c) res.classes[c].name = o.classes[c].name;
  double busy_us = 0, last_answer = 0;
  detail::RateMeter rate(detail::kShortRateWindowUs), long_rate(detail::kLongRateWindowUs);
  // Recent utilization for the policy: busy workers, averaged with a time
  // constant of 50 batch-of-one times, so it follows a shifting load.
  const double util_tau_us = 50 * service(1);
  double recent_util = 0, util_time = 0;
  int64_t total_rows = 0, missed_since_observe = 0;
  const auto ius = [](double t) { return static_cast<int64_t>(std::llround(t)); };
  size_t next = 0;
  double now = 0;

  auto expire = [&](double t) {
    auto gone = queue.prune([&](const PendingRequest& r) {
      return !r.deadline_us || static_cast<double>(*r.deadline_us) > t;
    });
    for (const auto& r : gone) {
      ++res.classes[members[r.seq].cls].expired;
      ++missed_since_observe;
    }
  };

  for (;;) {
    // The next event: an arrival, a batch completion, or a queue-delay expiry.
    double t_arrival = next < arrivals.size() ? arrivals[next].t_us : std::numeric_limits<double>::infinity();
    double t_done = std::numeric_limits<double>::infinity();
    for (const auto& w : workers) t_done = std::min(t_done, w.done_us);
    const bool idle = std::any_of(workers.begin(), workers.end(),
                                  [](const Running& w) { return w.members.empty(); });
    PolicyState ps;
    ps.queue_depth = queue.depth();
    ps.arrival_rate = rate.rate(now);
    ps.long_arrival_rate = long_rate.rate(now);
    ps.utilization = recent_util;
    if (auto t = queue.oldest_arrival_us()) ps.oldest_wait_us = ius(now) - *t;
    double t_timer = std::numeric_limits<double>::infinity();
    if (idle && !queue.empty()) {
      const PolicyDecision d = policy.decide(ps);
      t_timer = static_cast<double>(*queue.oldest_arrival_us() + d.max_queue_delay_us);
    }
    now = std::min({t_arrival, t_done, std::max(now, t_timer)});
    if (!std::isfinite(now)) break;
    {
      const double busy_now = static_cast<double>(o.workers) -
                              static_cast<double>(std::count_if(
                                  workers.begin(), workers.end(),
                                  [](const Running& w) { return w.members.empty(); }));
      const double keep = std::exp(-(now - util_time) / util_tau_us);
      recent_util = keep * recent_util + (1 - keep) * busy_now / o.workers;
      util_time = now;
    }

    for (auto& w : workers) {
      if (w.members.empty() || w.done_us > now) continue;
      BatchOutcome out;
      out.batch_size = w.rows;
      out.service_us = w.service_us;
      out.held_us = w.held_us;
      out.requests = static_cast<int64_t>(w.members.size());
      for (const Member& m : w.members) {
        const double lat = w.done_us - m.arrival_us;
        auto& cr = res.classes[m.cls];
        ++cr.completed;
        latency[m.cls].push_back(lat);
        out.latency_us.push_back(lat);
        if (m.deadline_us && w.done_us > *m.deadline_us) {
          ++cr.late;
          ++out.deadlines_missed;
        } else {
          ++out.deadlines_met;
        }
      }
      out.deadlines_missed += missed_since_observe;
      missed_since_observe = 0;
      last_answer = std::max(last_answer, w.done_us);
      policy.observe(out);
      w = Running{};
      w.free_since_us = now;
    }
    while (next < arrivals.size() && arrivals[next].t_us <= now) {
      const Arrival& a = arrivals[next++];
      const SimClass& c = o.classes[a.cls];
      auto& cr = res.classes[a.cls];
      ++cr.requests;
      rate.arrive(a.t_us);
      long_rate.arrive(a.t_us);
      if (static_cast<size_t>(queue.depth()[c.priority - 1]) >= o.max_queue_size) {
        ++cr.rejected;
        ++missed_since_observe;  // a learning policy must see what it turned away
        continue;
      }
      Member m{a.cls, a.t_us, std::nullopt};
      PendingRequest r;
      r.level = c.priority;
      r.rows = c.rows;
      r.arrival_us = ius(a.t_us);
      if (c.timeout_us) {
        m.deadline_us = a.t_us + static_cast<double>(*c.timeout_us);
        r.deadline_us = ius(*m.deadline_us);
      }
      members.push_back(m);
      queue.push(std::move(r));
    }
    expire(now);
    for (auto& w : workers) {
      if (!w.members.empty() || queue.empty()) continue;
      ps.queue_depth = queue.depth();
      ps.arrival_rate = rate.rate(now);
      ps.long_arrival_rate = long_rate.rate(now);
      ps.utilization = recent_util;
      ps.oldest_wait_us = ius(now) - *queue.oldest_arrival_us();
      const PolicyDecision d = policy.decide(ps);
      if (!queue.ready(ius(now), d.max_batch_size, d.max_queue_delay_us, o.preferred_batch_sizes)) break;
      const double head_arrival = static_cast<double>(*queue.oldest_arrival_us());
      w.held_us = std::max(0.0, now - std::max(w.free_since_us, head_arrival));
      for (auto& r : queue.take(std::max<int64_t>(1, d.max_batch_size), o.preferred_batch_sizes)) {
        w.members.push_back(members[r.seq]);
        w.rows += r.rows;
      }
      w.service_us = service(w.rows);
      w.done_us = now + w.service_us;
      busy_us += w.service_us;
      total_rows += w.rows;
      ++res.batches;
    }
  }
  res.seconds = last_answer * 1e-6;
  int64_t requests = 0, in_time = 0;
  for (size_t c = 0; c < o.classes.size(); ++c) {
    auto& cr = res.classes[c];
    cr.p50_us = quantile(latency[c], 0.5);
    cr.p90_us = quantile(latency[c], 0.9);
    cr.p99_us = quantile(latency[c], 0.99);
    cr.throughput = res.seconds > 0 ? cr.completed / res.seconds : 0;
    requests += cr.requests;
    in_time += cr.completed - cr.late;
  }
  res.avg_batch_size = res.batches ? static_cast<double>(total_rows) / res.batches : 0;
  res.utilization = res.seconds > 0 ? busy_us / (res.seconds * 1e6 * o.workers) : 0;
  res.deadline_hit_rate = requests ? static_cast<double>(in_time) / requests : 0;
  return res;
}

}  // namespace ds::sched
