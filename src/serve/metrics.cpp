// Per-model counters and the Prometheus text exposition.
#include <algorithm>
#include <sstream>

#include "serve/served_model.h"

namespace ds::serve {

void ModelMetrics::record(const std::string& outcome, double latency_us) {
  std::lock_guard lock(m_);
  ++counts_[outcome];
  if (outcome != "success") return;
  recent_.push_back(latency_us);
  if (recent_.size() > kWindow) recent_.pop_front();
  sum_ += latency_us;
  ++n_;
}

int64_t ModelMetrics::count(const std::string& outcome) const {
  std::lock_guard lock(m_);
  auto it = counts_.find(outcome);
  return it == counts_.end() ? 0 : it->second;
}

std::map<std::string, int64_t> ModelMetrics::counts() const {
  std::lock_guard lock(m_);
  return counts_;
}

ModelMetrics::Latency ModelMetrics::latency() const {
  std::vector<double> v;
  Latency l;
  {
    std::lock_guard lock(m_);
    v.assign(recent_.begin(), recent_.end());
    l.sum = sum_;
    l.count = n_;
  }
  if (v.empty()) return l;
  std::sort(v.begin(), v.end());
  auto q = [&](double p) { return v[static_cast<size_t>(p * (v.size() - 1) + 0.5)]; };
  l.p50 = q(0.5);
  l.p90 = q(0.9);
  l.p99 = q(0.99);
  return l;
}

std::string prometheus_text(const std::map<std::string, std::unique_ptr<ServedModel>>& models,
                            const sched::SchedulerStats& sch) {
  std::ostringstream os;
  os.precision(12);
  auto family = [&](const char* name, const char* type, const char* help) {
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  };
  family("ds_inference_request_success_total", "counter", "Inference requests answered with outputs.");
  for (const auto& [name, m] : models)
    os << "ds_inference_request_success_total{model=\"" << name << "\"} "
       << m->metrics.count("success") << "\n";
  family("ds_inference_request_failure_total", "counter",
         "Inference requests that failed, by reason (bad_request, rejected, expired, error).");
  for (const auto& [name, m] : models)
    for (const char* reason : {"bad_request", "rejected", "expired", "error"})
      os << "ds_inference_request_failure_total{model=\"" << name << "\",reason=\"" << reason
         << "\"} " << m->metrics.count(reason) << "\n";
  std::map<std::string, sched::DynamicBatcher::Stats> st;
  for (const auto& [name, m] : models) st[name] = m->batcher->stats();
  family("ds_inference_count_total", "counter", "Rows inferred (a request of batch n counts n).");
  for (const auto& [name, s] : st) os << "ds_inference_count_total{model=\"" << name << "\"} " << s.rows << "\n";
  family("ds_inference_exec_count_total", "counter", "Model executions (batches).");
  for (const auto& [name, s] : st)
    os << "ds_inference_exec_count_total{model=\"" << name << "\"} " << s.batches << "\n";
  family("ds_inference_average_batch_size", "gauge", "Rows per execution since start.");
  for (const auto& [name, s] : st)
    os << "ds_inference_average_batch_size{model=\"" << name << "\"} "
       << (s.batches ? static_cast<double>(s.rows) / s.batches : 0.0) << "\n";
  family("ds_inference_queue_duration_us_total", "counter", "Time requests waited in queues.");
  for (const auto& [name, s] : st)
    os << "ds_inference_queue_duration_us_total{model=\"" << name << "\"} " << s.queue_seconds * 1e6 << "\n";
  family("ds_inference_compute_duration_us_total", "counter", "Time spent executing batches.");
  for (const auto& [name, s] : st)
    os << "ds_inference_compute_duration_us_total{model=\"" << name << "\"} "
       << s.compute_seconds * 1e6 << "\n";
  family("ds_queue_depth", "gauge", "Requests waiting, by model and priority level.");
  for (const auto& [name, s] : st)
    for (size_t l = 0; l < s.queued.size(); ++l)
      os << "ds_queue_depth{model=\"" << name << "\",level=\"" << l + 1 << "\"} " << s.queued[l] << "\n";
  family("ds_inference_latency_us", "summary",
         "Request latency, receipt to answer (quantiles over the last 4096 successes).");
  for (const auto& [name, m] : models) {
    const auto l = m->metrics.latency();
    for (auto [q, v] : {std::pair{"0.5", l.p50}, {"0.9", l.p90}, {"0.99", l.p99}})
      os << "ds_inference_latency_us{model=\"" << name << "\",quantile=\"" << q << "\"} " << v << "\n";
    os << "ds_inference_latency_us_sum{model=\"" << name << "\"} " << l.sum << "\n";
    os << "ds_inference_latency_us_count{model=\"" << name << "\"} " << l.count << "\n";
  }
  family("ds_device_utilization", "gauge", "Busy fraction of the scheduler's workers since start.");
  const double capacity = sch.uptime_seconds * std::max(1, sch.workers);
  os << "ds_device_utilization{device=\"cpu\"} " << (capacity > 0 ? sch.busy_seconds / capacity : 0.0)
     << "\n";
  return os.str();
}

}  // namespace ds::serve
