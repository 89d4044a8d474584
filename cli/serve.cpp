// ds serve: the Open Inference Protocol v2 server over a model repository.
// SIGTERM / SIGINT stop it gracefully: in-flight requests are answered first.
#include <csignal>
#include <iostream>
#include <pthread.h>
#include <string>

#include "cli/commands.h"
#include "ds/error.h"
#include "ds/serve.h"

namespace ds::cli {
namespace {

constexpr const char* kUsage = R"(usage: ds serve --model-repository DIR [options]
  --port N              (default 8000; 0 picks a free port)
  --host H              (default 127.0.0.1)
  --max-body-bytes N    larger requests get 413 (default 67108864)
  --http-threads N      requests in flight at once (default 64)
  --workers N           scheduler workers (default: the largest instance_count)
  --grace-us N          how long shutdown lets in-flight requests finish (default 30000000)
)";

int64_t number(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    const int64_t n = std::stoll(v, &used);
    if (used == v.size() && n >= 0) return n;
  } catch (const std::logic_error&) {
  }
  throw ValueError("serve: " + flag + " expects a non-negative integer, got '" + v + "'");
}

int run(int argc, char** argv) {
  serve::ServerOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "serve: " << k << " needs a value\n" << kUsage;
      return 2;
    }
    const std::string v = argv[++i];
    if (k == "--model-repository") o.model_repository = v;
    else if (k == "--port") o.port = static_cast<int>(number(k, v));
    else if (k == "--host") o.host = v;
    else if (k == "--max-body-bytes") o.max_body_bytes = static_cast<size_t>(number(k, v));
    else if (k == "--http-threads") o.http_threads = static_cast<int>(number(k, v));
    else if (k == "--workers") o.workers = static_cast<int>(number(k, v));
    else if (k == "--grace-us") o.shutdown_grace_us = number(k, v);
    else {
      std::cerr << "serve: unknown option " << k << "\n" << kUsage;
      return 2;
    }
  }
  if (o.model_repository.empty()) {
    std::cerr << "serve: --model-repository is required\n" << kUsage;
    return 2;
  }
  // Signals are taken by sigwait on this thread only: every thread the server
  // starts inherits the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  serve::Server server(o);
  const int port = server.start();
  std::cout << "ds serve: " << server.models().size() << " model(s) on http://" << o.host << ":"
            << port << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cout << "ds serve: signal " << sig << ", finishing in-flight requests" << std::endl;
  server.stop();
  std::cout << "ds serve: stopped" << std::endl;
  return 0;
}

const CommandRegistrar reg{{"serve", "Open Inference Protocol v2 server over a model repository", run}};

}  // namespace
}  // namespace ds::cli
