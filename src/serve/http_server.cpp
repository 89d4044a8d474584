// The Open Inference Protocol v2 REST endpoints over cpp-httplib, and graceful
// shutdown. Every handler answers JSON; errors are {"error": "..."}.
#include <httplib.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "serve/served_model.h"

namespace ds::serve {

namespace fs = std::filesystem;
using json = nlohmann::json;
using sched::TaskStatus;

struct Server::Impl {
  ServerOptions opt;
  std::unique_ptr<sched::Scheduler> scheduler;
  std::map<std::string, std::unique_ptr<ServedModel>> models;
  httplib::Server http;
  std::thread listener;
  int port = -1;
  std::mutex m;
  std::condition_variable cv;
  bool stopping = false, stopped = false;
  int64_t in_flight = 0;

  void reply(httplib::Response& res, int status, const std::string& body) {
    res.status = status;
    res.set_content(body, "application/json");
  }
  void fail(httplib::Response& res, int status, const std::string& message) {
    reply(res, status, error_body(message));
  }

  ServedModel* find(const std::string& name, httplib::Response& res) {
    auto it = models.find(name);
    if (it != models.end()) return it->second.get();
    fail(res, 404, "unknown model '" + name + "'");
    return nullptr;
  }

  json metadata(const ServedModel& sm) const {
    json ins = json::array(), outs = json::array();
    for (const auto& in : sm.inputs) ins.push_back({{"name", in.name}, {"datatype", v2_datatype(in.dtype)}, {"shape", in.shape}});
    for (size_t i = 0; i < sm.output_names.size(); ++i)
      outs.push_back({{"name", sm.output_names[i]},
                      {"datatype", v2_datatype(sm.output_types[i].dtype)},
                      {"shape", sm.output_types[i].shape}});
    return {{"name", sm.config.name}, {"versions", {"1"}}, {"platform", "deepseek"},
            {"inputs", ins}, {"outputs", outs},
            {"parameters",
             {{"max_batch_size", sm.config.max_batch_size},
              {"max_queue_delay_us", sm.config.max_queue_delay_us},
              {"priority_levels", sm.config.priority_levels},
              {"default_timeout_us", sm.config.default_timeout_us},
              {"instance_count", sm.config.instance_count},
              {"target", sm.config.target},
              {"policy", sm.config.policy}}}};
  }

  // Counts the request as in flight for graceful shutdown; false once stopping.
  bool enter() {
    std::lock_guard lock(m);
    if (stopping) return false;
    ++in_flight;
    return true;
  }
  void leave() {
    std::lock_guard lock(m);
    --in_flight;
    cv.notify_all();
  }

  void infer(const httplib::Request& req, httplib::Response& res) {
    const auto received = sched::Clock::now();
    ServedModel* sm = find(req.matches[1], res);
    if (!sm) return;
    if (!enter()) return fail(res, 503, "the server is shutting down");
    struct Leave {
      Impl* s;
      ~Leave() { s->leave(); }
    } guard{this};
    auto elapsed_us = [&] {
      return std::chrono::duration<double, std::micro>(sched::Clock::now() - received).count();
    };
    const ModelConfig& cfg = sm->config;
    InferRequest r;
    try {
      r = parse_infer_request(req.body, sm->inputs, sm->output_names, cfg.max_batch_size);
      if (r.priority && (*r.priority < 1 || *r.priority > cfg.priority_levels))
        throw HttpError(400, "parameters.priority must be 1.." + std::to_string(cfg.priority_levels) +
                                 ", got " + std::to_string(*r.priority));
    } catch (const HttpError& e) {
      sm->metrics.record("bad_request", elapsed_us());
      return fail(res, e.status(), e.what());
    }
    sched::RequestOptions ro;
    ro.priority = static_cast<int>(r.priority.value_or(cfg.default_priority));
    const int64_t timeout = r.timeout_us.value_or(cfg.default_timeout_us);
    if (timeout > 0) ro.deadline = received + sched::Micros(timeout);
    sched::TaskHandle h = sm->batcher->submit(std::move(r.inputs), ro);
    h.wait();
    try {
      const sched::Outputs outs = h.get();
      std::vector<std::string> names;
      sched::Outputs picked;
      for (size_t i = 0; i < outs.size(); ++i)
        if (r.outputs.empty() ||
            std::find(r.outputs.begin(), r.outputs.end(), sm->output_names[i]) != r.outputs.end()) {
          names.push_back(sm->output_names[i]);
          picked.push_back(outs[i]);
        }
      reply(res, 200, infer_response(cfg.name, r.id, names, picked));
      sm->metrics.record("success", elapsed_us());
    } catch (const sched::RejectedError& e) {
      const bool expired = e.status() == TaskStatus::Expired;
      sm->metrics.record(expired ? "expired" : "rejected", elapsed_us());
      fail(res, expired ? 504 : 503, e.what());
    } catch (const std::exception& e) {
      sm->metrics.record("error", elapsed_us());
      fail(res, 500, std::string("model '") + cfg.name + "' failed: " + e.what());
    }
  }

  void routes() {
    http.Get("/v2", [this](const httplib::Request&, httplib::Response& res) {
      reply(res, 200, json{{"name", "deepseek"}, {"version", "0.1.0"}, {"extensions", json::array()}}.dump());
    });
    http.Get("/v2/health/live", [this](const httplib::Request&, httplib::Response& res) {
      reply(res, 200, json{{"live", true}}.dump());
    });
    http.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard lock(m);
      reply(res, stopping ? 503 : 200, json{{"ready", !stopping}}.dump());
    });
    http.Get(R"(/v2/models/([^/]+)(?:/versions/[^/]+)?)", [this](const httplib::Request& req, httplib::Response& res) {
      if (ServedModel* sm = find(req.matches[1], res)) reply(res, 200, metadata(*sm).dump());
    });
    http.Get(R"(/v2/models/([^/]+)(?:/versions/[^/]+)?/ready)",
             [this](const httplib::Request& req, httplib::Response& res) {
               ServedModel* sm = find(req.matches[1], res);
               if (!sm) return;
               std::lock_guard lock(m);
               reply(res, stopping ? 503 : 200, json{{"name", sm->config.name}, {"ready", !stopping}}.dump());
             });
    http.Post(R"(/v2/models/([^/]+)(?:/versions/[^/]+)?/infer)",
              [this](const httplib::Request& req, httplib::Response& res) { infer(req, res); });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(prometheus_text(models, scheduler->stats()), "text/plain; version=0.0.4");
    });
    // Unrouted paths, oversized bodies (413) and the like: a JSON error body.
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string what = res.status == 413 ? "the request body exceeds the limit of " +
                                                 std::to_string(opt.max_body_bytes) + " bytes"
                         : res.status == 404 ? "no endpoint " + req.method + " " + req.path
                                             : "HTTP " + std::to_string(res.status);
      res.set_content(error_body(what), "application/json");
    });
    http.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      fail(res, 500, what);
    });
  }
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opt = std::move(options);
  DS_CHECK(fs::is_directory(s.opt.model_repository), NotFoundError, "serve: model repository '",
           s.opt.model_repository, "' is not a folder");
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(s.opt.model_repository))
    if (e.is_directory()) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  int levels = 1, instances = 1;
  for (const auto& d : dirs) {
    auto sm = load_served_model(d.string());
    levels = std::max(levels, sm->config.priority_levels);
    instances = std::max(instances, sm->config.instance_count);
    s.models[sm->config.name] = std::move(sm);
  }
  sched::SchedulerOptions so;
  so.priority_levels = levels;
  so.devices = {{Device::cpu(), s.opt.workers > 0 ? s.opt.workers : instances}};
  s.scheduler = std::make_unique<sched::Scheduler>(so);
  for (auto& [name, sm] : s.models) {
    const ModelConfig& c = sm->config;
    sched::BatcherOptions bo;
    bo.max_batch_size = c.max_batch_size;
    bo.max_queue_delay = sched::Micros(c.max_queue_delay_us);
    bo.preferred_batch_sizes = c.preferred_batch_sizes;
    bo.max_queue_size = c.max_queue_size;
    bo.instance_count = c.instance_count;
    std::shared_ptr<sched::Policy> policy;
    if (c.policy == "aimd") {
      policy = sched::aimd_policy(static_cast<double>(c.latency_target_us), c.max_batch_size,
                                  c.max_queue_delay_us);
    } else if (c.policy == "qlearning") {
      sched::QLearningOptions qo;
      std::erase_if(qo.batch_caps, [&](int64_t b) { return b > c.max_batch_size; });
      auto q = std::make_shared<sched::QLearningPolicy>(qo);
      if (!c.qtable.empty()) q->load(c.qtable);
      policy = q;
    }
    sm->batcher = std::make_unique<sched::DynamicBatcher>(name, sm->run_batch, *s.scheduler, bo, policy);
  }
  s.http.set_payload_max_length(s.opt.max_body_bytes);
  s.http.set_tcp_nodelay(true);  // small JSON answers must not wait for delayed ACKs
  // Clients keep their connections: reconnecting through a short listen backlog
  // under load costs SYN retries (seconds).
  s.http.set_keep_alive_max_count(1u << 20);
  s.http.set_read_timeout(5);
  s.http.set_write_timeout(5);
  const int threads = std::max(1, s.opt.http_threads);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.routes();
}

Server::~Server() { stop(); }

int Server::start() {
  Impl& s = *impl_;
  if (s.opt.port == 0) {
    s.port = s.http.bind_to_any_port(s.opt.host);
  } else {
    s.port = s.http.bind_to_port(s.opt.host, s.opt.port) ? s.opt.port : -1;
  }
  DS_CHECK(s.port > 0, IOError, "serve: cannot listen on ", s.opt.host, ":", s.opt.port);
  s.listener = std::thread([&s] { s.http.listen_after_bind(); });
  return s.port;
}

void Server::wait() {
  Impl& s = *impl_;
  std::unique_lock lock(s.m);
  s.cv.wait(lock, [&] { return s.stopped; });
}

void Server::stop() {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.m);
    if (s.stopping) {
      s.cv.wait(lock, [&] { return s.stopped; });
      return;
    }
    s.stopping = true;
    // In-flight requests are still being served; give them the grace period.
    s.cv.wait_for(lock, sched::Micros(s.opt.shutdown_grace_us), [&] { return s.in_flight == 0; });
  }
  // Whatever is still waiting now is rejected with a reason, never dropped.
  s.scheduler->shutdown();
  for (auto& [_, sm] : s.models) sm->batcher.reset();
  {
    std::unique_lock lock(s.m);
    s.cv.wait(lock, [&] { return s.in_flight == 0; });
  }
  s.http.stop();
  if (s.listener.joinable()) s.listener.join();
  {
    std::lock_guard lock(s.m);
    s.stopped = true;
  }
  s.cv.notify_all();
}

int Server::port() const { return impl_->port; }

std::vector<std::string> Server::models() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : impl_->models) names.push_back(name);
  return names;
}

std::string Server::metrics_text() const {
  return prometheus_text(impl_->models, impl_->scheduler->stats());
}

}  // namespace ds::serve
