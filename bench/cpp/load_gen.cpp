// Open-loop load generator for ds serve (and any Open Inference Protocol v2
// server). Arrivals follow a precomputed Poisson schedule; each request's
// latency is measured from its intended send time, so a slow server cannot hide
// its queueing by slowing the client down (no coordinated omission).
//
//   load_gen make-model DIR [--in 512 --hidden 1024 --layers 3 --out 16]
//   load_gen calibrate DIR                     t(b) of the model in-process
//   load_gen run --targets 127.0.0.1:8000[,127.0.0.1:8001] --model NAME --in 512
//                --rate R --seconds S [--high-share 0.2 --high-timeout-us T
//                --priorities 1 --threads 128 --seed 1 --json FILE]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <latch>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "ds/ds.h"
#include "ds/model_io.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::map<std::string, std::string> flags(int argc, char** argv, int first) {
  std::map<std::string, std::string> f;
  for (int i = first; i + 1 < argc; i += 2) f[std::string(argv[i]).substr(2)] = argv[i + 1];
  return f;
}
double num(const std::map<std::string, std::string>& f, const std::string& k, double d) {
  auto it = f.find(k);
  return it == f.end() ? d : std::stod(it->second);
}

// An MLP y = W_L relu(... relu(W_1 x)): a batch costs much less than its rows
// run one by one, since the weights are read once per batch.
int make_model(const std::string& dir, const std::map<std::string, std::string>& f) {
  const int64_t in = static_cast<int64_t>(num(f, "in", 512)), hidden = static_cast<int64_t>(num(f, "hidden", 1024));
  const int64_t layers = static_cast<int64_t>(num(f, "layers", 3)), out = static_cast<int64_t>(num(f, "out", 16));
  std::mt19937 rng(1);
  auto weight = [&](int64_t o, int64_t i) {
    std::normal_distribution<float> n(0, 1.0f / std::sqrt(static_cast<float>(i)));
    std::vector<float> v(static_cast<size_t>(o * i));
    for (auto& x : v) x = n(rng);
    return ds::Tensor::from_vector(v, {o, i});
  };
  ds::Graph g;
  ds::Tensor h = g.placeholder("x", {ds::dyn, in});
  int64_t width = in;
  for (int64_t l = 0; l < layers; ++l) {
    h = ds::relu(ds::linear(h, g.constant(weight(hidden, width)), g.constant(ds::Tensor::zeros({hidden}))));
    width = hidden;
  }
  g.output(ds::linear(h, g.constant(weight(out, width))), "y");
  ds::save(g, dir);
  std::cout << "wrote " << dir << " (" << layers << " x " << hidden << " hidden, in " << in << ")\n";
  return 0;
}

int calibrate(const std::string& dir) {
  ds::Executable exe = ds::compile(ds::load(dir), "cpu");
  const int64_t in = exe.inputs()[0].type.shape[1];
  json table = json::object();
  for (int64_t b : {1, 2, 4, 8, 16, 32}) {
    ds::Tensor x = ds::Tensor::full({b, in}, 0.5);
    exe.run(std::vector<ds::Tensor>{x});
    std::vector<double> t;
    for (int i = 0; i < 15; ++i) {
      const auto t0 = Clock::now();
      exe.run(std::vector<ds::Tensor>{x});
      t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    table[std::to_string(b)] = t[t.size() / 2];
  }
  std::cout << table.dump() << "\n";
  return 0;
}

struct Sample {
  int cls;
  int status;
  double latency_us;
};

int run(const std::map<std::string, std::string>& f) {
  std::vector<std::pair<std::string, int>> targets;
  {
    std::string s = f.at("targets"), item;
    std::stringstream ss(s);
    while (std::getline(ss, item, ',')) {
      const auto c = item.find(':');
      targets.emplace_back(item.substr(0, c), std::stoi(item.substr(c + 1)));
    }
  }
  const std::string model = f.count("model") ? f.at("model") : "mlp";
  const int64_t in = static_cast<int64_t>(num(f, "in", 512));
  const double rate = num(f, "rate", 100), seconds = num(f, "seconds", 10);
  const double high_share = num(f, "high-share", 0.2);
  const int64_t high_timeout = static_cast<int64_t>(num(f, "high-timeout-us", 0));
  const bool priorities = num(f, "priorities", 1) != 0;
  const int threads = static_cast<int>(num(f, "threads", 128));
  std::mt19937_64 rng(static_cast<uint64_t>(num(f, "seed", 1)));
  std::exponential_distribution<double> gap(rate / 1e6);
  std::bernoulli_distribution is_high(high_share);
  struct Planned {
    double at_us;
    int cls;  // 0 high, 1 low
  };
  std::vector<Planned> plan;
  for (double t = gap(rng); t < seconds * 1e6; t += gap(rng)) plan.push_back({t, is_high(rng) ? 0 : 1});
  std::vector<std::string> bodies(2);
  for (int c = 0; c < 2; ++c) {
    json x = {{"name", "x"}, {"shape", {1, in}}, {"datatype", "FP32"}, {"data", std::vector<float>(in, 0.25f)}};
    json body = {{"inputs", {x}}};
    if (priorities) body["parameters"]["priority"] = c == 0 ? 1 : 2;
    if (c == 0 && high_timeout > 0) body["parameters"]["timeout"] = high_timeout;
    bodies[c] = body.dump();
  }
  std::vector<Sample> samples(plan.size());
  std::atomic<size_t> next{0};
  // Every connection is opened before the clock starts: the server's listen
  // backlog must not turn the first second into SYN retries.
  std::latch connected(threads);
  std::atomic<int64_t> start_ns{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      std::vector<std::unique_ptr<httplib::Client>> clients;
      for (const auto& [h, p] : targets) {
        clients.push_back(std::make_unique<httplib::Client>(h, p));
        clients.back()->set_tcp_nodelay(true);
        clients.back()->set_read_timeout(60);
        clients.back()->set_keep_alive(true);
        clients.back()->Get("/v2/health/live");
      }
      connected.arrive_and_wait();
      while (start_ns.load() == 0) std::this_thread::yield();
      const Clock::time_point start{std::chrono::nanoseconds(start_ns.load())};
      for (size_t i; (i = next++) < plan.size();) {
        const auto intended = start + std::chrono::microseconds(static_cast<int64_t>(plan[i].at_us));
        std::this_thread::sleep_until(intended);
        // Round-robin over the replicas, like a plain Kubernetes Service.
        auto& c = *clients[i % clients.size()];
        auto r = c.Post(("/v2/models/" + model + "/infer").c_str(), bodies[plan[i].cls], "application/json");
        samples[i] = {plan[i].cls, r ? r->status : 0,
                      std::chrono::duration<double, std::micro>(Clock::now() - intended).count()};
      }
    });
  connected.wait();
  const auto start = Clock::now() + std::chrono::milliseconds(50);
  start_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(start.time_since_epoch()).count();
  for (auto& t : pool) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  json result = {{"rate", rate}, {"seconds", seconds}, {"wall_seconds", wall}};
  for (int c = 0; c < 2; ++c) {
    std::vector<double> ok;
    int64_t rejected = 0, n = 0;
    for (const auto& s : samples) {
      if (s.cls != c) continue;
      ++n;
      if (s.status == 200) {
        ok.push_back(s.latency_us);
      } else {
        ++rejected;
      }
    }
    std::sort(ok.begin(), ok.end());
    auto q = [&](double p) { return ok.empty() ? 0.0 : ok[static_cast<size_t>(p * (ok.size() - 1))]; };
    result[c == 0 ? "high" : "low"] = {{"requests", n}, {"ok", ok.size()}, {"rejected", rejected},
                                       {"p50_us", q(0.5)}, {"p99_us", q(0.99)},
                                       {"throughput", ok.size() / wall}};
  }
  std::cout << result.dump() << "\n";
  if (f.count("json")) std::ofstream(f.at("json")) << result.dump(1) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: load_gen make-model DIR | calibrate DIR | run --targets H:P[,H:P] ...\n";
    return 2;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "make-model" && argc >= 3) return make_model(argv[2], flags(argc, argv, 3));
    if (cmd == "calibrate" && argc >= 3) return calibrate(argv[2]);
    if (cmd == "run") return run(flags(argc, argv, 2));
  } catch (const std::exception& e) {
    std::cerr << "load_gen: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "load_gen: unknown command '" << cmd << "'\n";
  return 2;
}
