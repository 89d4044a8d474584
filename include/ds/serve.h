// ds::serve — an inference server speaking the Open Inference Protocol v2 (REST,
// KServe/Triton compatible) over a model repository, with Prometheus /metrics.
//
// Repository layout: DIR/<model>/config.json and DIR/<model>/model (a folder
// written by ds::save, or any format ds::load reads). config.json fields, all
// optional: max_batch_size, max_queue_delay_us, preferred_batch_sizes,
// priority_levels, default_priority, default_timeout_us, instance_count,
// max_queue_size, target, model (path of the model inside the folder), policy
// ("static": the knobs above; "aimd": adapts the batch cap to latency_target_us;
// "qlearning": learns online, starting from the table in qtable if given).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ds::serve {

struct ModelConfig {
  std::string name;
  std::string model_path;  // absolute
  int64_t max_batch_size = 8;
  int64_t max_queue_delay_us = 0;
  std::vector<int64_t> preferred_batch_sizes;
  int priority_levels = 3;
  int default_priority = 0;  // 0: the lowest level
  int64_t default_timeout_us = 0;  // 0: no deadline
  int instance_count = 1;
  size_t max_queue_size = 1024;
  std::string target = "cpu";
  std::string policy = "static";
  int64_t latency_target_us = 0;  // aimd
  std::string qtable;             // qlearning: a saved table to start from (absolute path)
};

// Reads DIR/<name>/config.json (a missing file gives the defaults). Throws
// IOError / ValueError naming the file and the field.
ModelConfig read_model_config(const std::string& model_dir);

struct ServerOptions {
  std::string model_repository;
  std::string host = "127.0.0.1";
  int port = 8000;                          // 0: an ephemeral port
  size_t max_body_bytes = 64 << 20;         // larger requests get 413
  int http_threads = 64;                    // requests in flight at once
  int workers = 0;                          // scheduler workers; 0: the largest instance_count
  int64_t shutdown_grace_us = 30'000'000;   // how long stop() lets in-flight requests finish
};

class Server {
 public:
  // Loads and compiles every model of the repository.
  explicit Server(ServerOptions options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and serves on a background thread; returns the bound port.
  int start();
  // Blocks until stop() is called (from another thread or a signal watcher).
  void wait();
  // Graceful: readiness goes false, new inference requests get 503, in-flight
  // ones are answered (or rejected with a reason), then the listener closes.
  void stop();

  int port() const;
  std::vector<std::string> models() const;
  std::string metrics_text() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds::serve
