// ds sched-sim: compare batching policies on a simulated model, deterministic by seed.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <tuple>

#include "cli/commands.h"
#include "ds/model_io.h"
#include "ds/sched.h"

namespace ds::cli {
namespace {

using namespace ds::sched;

constexpr const char* kUsage = R"(usage: ds sched-sim [options]
  --service SPEC        t(b) table "rows:us,..." (default 1:400,16:1600: t(16) = 4 t(1))
  --model DIR           measure t(b) from a saved model instead (ds::load, compiled for the CPU)
  --rate R              requests/s, one phase of --seconds (default 0.8 x no-batching capacity)
  --load L              rate as a fraction of the no-batching capacity (workers / t(1))
  --phases S:R,...      phases of seconds:rate (a load that shifts); overrides --rate
  --seconds S           length of the single phase (default 20)
  --high-share F        fraction of high-priority (level 1) requests (default 0.2)
  --high-timeout-us T   deadline of high-priority requests (default 10 x t(1))
  --low-timeout-us T    deadline of low-priority requests (default 0: none)
  --workers N           model instances (default 1)
  --policy P            static | grid | aimd | qlearning | all (default all)
  --max-batch B --delay-us D   static policy knobs (default 16, 0)
  --grid-caps C,...     batch caps the static grid search tries (default 1,2,4,8,12,16,24,32)
  --grid-delays-us D,...   queue delays it tries (default 0, t(1)/2, t(1), 2 t(1))
  --target-us T         AIMD latency target (default the high-priority timeout / 2)
  --train-runs N        Q-learning training episodes before the greedy runs (default 30)
  --train-seed S        seed of the first training episode (default 1000); training
                        seeds S .. S+N-1 must not be evaluation seeds
  --save-table F --load-table F   Q-table file (loaded before training, saved after)
  --seed S              evaluation seed (default 1)
  --seeds S,...         several evaluation seeds: a table per seed, then a summary
  --json F              also write the results as JSON
)";

struct Args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& d) const {
    auto it = kv.find(k);
    return it == kv.end() ? d : it->second;
  }
  double num(const std::string& k, double d) const {
    auto it = kv.find(k);
    if (it == kv.end()) return d;
    try {
      return std::stod(it->second);
    } catch (const std::logic_error&) {
      throw ValueError("sched-sim: --" + k + " expects a number, got '" + it->second + "'");
    }
  }
};

std::vector<SimPhase> parse_phases(const std::string& spec) {
  std::vector<SimPhase> p;
  std::istringstream is(spec);
  std::string item;
  while (std::getline(is, item, ',')) {
    SimPhase ph;
    char colon = 0;
    std::istringstream one(item);
    DS_CHECK((one >> ph.seconds >> colon >> ph.rate) && colon == ':', ValueError,
             "sched-sim: --phases item '", item, "' is not seconds:rate");
    p.push_back(ph);
  }
  return p;
}

// t(b) of a saved model: every input gets a batch of zeros (dim 0 symbolic).
ServiceModel measured(const std::string& dir) {
  Executable exe = compile(load(dir), "cpu");
  Outputs one_row;
  for (const IOSpec& in : exe.inputs()) {
    Shape s = in.type.shape;
    DS_CHECK(!s.empty(), ValueError, "sched-sim: input '", in.name, "' has no batch dimension");
    s[0] = 1;
    DS_CHECK(is_static(s), ValueError, "sched-sim: input '", in.name, "' has symbolic extents besides the batch: ",
             shape_str(in.type.shape));
    one_row.push_back(Tensor::zeros(s, in.type.dtype));
  }
  return measure_service_model(batch_fn(exe), one_row, {1, 2, 4, 8, 16, 32}, 7);
}

void print(const SimResult& r, std::ostream& os) {
  for (const auto& c : r.classes)
    os << std::left << std::setw(26) << r.policy << std::setw(6) << c.name << std::right
       << std::fixed << std::setprecision(0) << std::setw(9) << c.p50_us << std::setw(10)
       << c.p99_us << std::setprecision(1) << std::setw(9) << c.throughput << std::setw(8)
       << c.rejected << std::setw(8) << c.expired << std::setw(7) << c.late << std::setprecision(2)
       << std::setw(7) << r.avg_batch_size << std::setw(6) << r.utilization << std::setw(7)
       << r.deadline_hit_rate << "\n";
}

std::string json(const SimResult& r, uint64_t seed) {
  std::ostringstream os;
  os << "{\"seed\":" << seed << ",\"policy\":\"" << r.policy << "\",\"avg_batch_size\":" << r.avg_batch_size
     << ",\"utilization\":" << r.utilization << ",\"deadline_hit_rate\":" << r.deadline_hit_rate
     << ",\"classes\":[";
  for (size_t i = 0; i < r.classes.size(); ++i) {
    const auto& c = r.classes[i];
    os << (i ? "," : "") << "{\"name\":\"" << c.name << "\",\"requests\":" << c.requests
       << ",\"completed\":" << c.completed << ",\"rejected\":" << c.rejected
       << ",\"expired\":" << c.expired << ",\"late\":" << c.late << ",\"p50_us\":" << c.p50_us
       << ",\"p90_us\":" << c.p90_us << ",\"p99_us\":" << c.p99_us
       << ",\"throughput\":" << c.throughput << "}";
  }
  os << "]}";
  return os.str();
}

std::vector<int64_t> parse_ints(const std::string& spec, const std::string& option) {
  std::vector<int64_t> v;
  std::istringstream is(spec);
  std::string item;
  while (std::getline(is, item, ',')) {
    try {
      size_t used = 0;
      v.push_back(std::stoll(item, &used));
      DS_CHECK(used == item.size() && v.back() >= 0, ValueError, "");
    } catch (const std::exception&) {
      throw ValueError("sched-sim: --" + option + " expects non-negative integers separated by commas, got '" +
                       spec + "'");
    }
  }
  DS_CHECK(!v.empty(), ValueError, "sched-sim: --", option, " is empty");
  return v;
}

// The best fixed (Triton-like) setting for this very trace: every cap x delay
// of the grid is replayed; the highest deadline hit rate wins, then the most
// requests answered, then the lowest p99 summed over the classes.
SimResult best_static(const SimOptions& o, const ServiceModel& service,
                      const std::vector<int64_t>& caps, const std::vector<int64_t>& delays) {
  auto rank = [](const SimResult& r) {
    int64_t answered = 0;
    double p99 = 0;
    for (const auto& c : r.classes) answered += c.completed, p99 += c.p99_us;
    return std::make_tuple(r.deadline_hit_rate, answered, -p99);
  };
  std::optional<SimResult> best;
  for (int64_t b : caps)
    for (int64_t d : delays) {
      SimResult r = simulate(o, service, *static_policy(std::max<int64_t>(1, b), d));
      if (!best || rank(r) > rank(*best)) best = std::move(r);
    }
  best->policy = "best " + best->policy;
  return *best;
}

int run(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) {
      std::cerr << "sched-sim: expected --option value, got '" << k << "'\n" << kUsage;
      return 2;
    }
    a.kv[k.substr(2)] = argv[++i];
  }
  const ServiceModel service = a.kv.count("model") ? measured(a.get("model", ""))
                                                   : ServiceModel::parse(a.get("service", "1:400,16:1600"));
  std::cout << "t(b) us:";
  for (const auto& [b, t] : service.table()) std::cout << " " << b << ":" << std::setprecision(0) << std::fixed << t;
  std::cout << "\n";
  SimOptions o;
  o.workers = static_cast<int>(a.num("workers", 1));
  o.seed = static_cast<uint64_t>(a.num("seed", 1));
  const double capacity = o.workers * 1e6 / service(1);
  if (a.kv.count("phases")) {
    o.phases = parse_phases(a.get("phases", ""));
  } else {
    o.phases = {{a.num("seconds", 20), a.num("rate", a.num("load", 0.8) * capacity)}};
  }
  const double high_share = a.num("high-share", 0.2);
  const double high_timeout = a.num("high-timeout-us", 10 * service(1));
  const double low_timeout = a.num("low-timeout-us", 0);
  o.classes = {{"high", 1, high_share, 1, static_cast<int64_t>(high_timeout)},
               {"low", 3, 1 - high_share, 1, std::nullopt}};
  if (low_timeout > 0) o.classes[1].timeout_us = static_cast<int64_t>(low_timeout);

  const std::string which = a.get("policy", "all");
  if (which != "static" && which != "grid" && which != "aimd" && which != "qlearning" && which != "all")
    throw ValueError("sched-sim: unknown --policy '" + which + "'");
  const bool all = which == "all";
  std::vector<uint64_t> seeds;
  for (int64_t s : parse_ints(a.get("seeds", std::to_string(o.seed)), "seeds")) seeds.push_back(s);

  // Q-learning trains once, on seeds of its own, and each evaluation starts
  // from the trained table (it keeps learning online during the run).
  std::optional<QLearningOptions> qo;
  std::string table;
  if (which == "qlearning" || all) {
    qo.emplace();
    // The top rate bucket just above the most the batch caps can serve.
    double most = 0;
    for (int64_t b : qo->batch_caps) most = std::max(most, o.workers * 1e6 * b / service(b));
    qo->max_rate = 1.1 * most;
    // Waiting longer than one batch-of-one time never pays off against deadlines
    // a few such times long, so the delays on offer scale with t(1).
    qo->queue_delays_us = {0, static_cast<int64_t>(service(1))};
    qo->seed = o.seed;
    QLearningPolicy q(*qo);
    if (a.kv.count("load-table")) q.load(a.get("load-table", ""));
    const int episodes = static_cast<int>(a.num("train-runs", 30));
    const auto first = static_cast<uint64_t>(a.num("train-seed", 1000));
    for (uint64_t s : seeds)
      DS_CHECK(s < first || s >= first + static_cast<uint64_t>(episodes), ValueError,
               "sched-sim: evaluation seed ", s, " is also a training seed (", first, "..",
               first + episodes - 1, "); pick another --train-seed");
    for (int e = 0; e < episodes; ++e) {
      // Exploration decays over the training runs: broad at first, then refining.
      q.set_exploration(0.2 * (1 - static_cast<double>(e) / episodes) + 0.01);
      SimOptions train = o;
      train.seed = first + e;
      simulate(train, service, q);
    }
    table = a.kv.count("save-table")
                ? a.get("save-table", "")
                : (std::filesystem::temp_directory_path() / ("ds_sched_sim_" + std::to_string(::getpid()) + ".qtable"))
                      .string();
    q.save(table);
  }

  std::vector<int64_t> caps = {1, 2, 4, 8, 12, 16, 24, 32};
  std::vector<int64_t> delays = {0, static_cast<int64_t>(service(1) / 2), static_cast<int64_t>(service(1)),
                                 static_cast<int64_t>(2 * service(1))};
  if (a.kv.count("grid-caps")) caps = parse_ints(a.get("grid-caps", ""), "grid-caps");
  if (a.kv.count("grid-delays-us")) delays = parse_ints(a.get("grid-delays-us", ""), "grid-delays-us");

  std::cout << "capacity without batching: " << std::fixed << std::setprecision(0) << capacity
            << " req/s; offered: ";
  for (const auto& p : o.phases) std::cout << p.rate << " req/s x " << p.seconds << " s  ";
  std::cout << "\n";
  struct SeedRow {
    uint64_t seed;
    std::vector<SimResult> results;
  };
  std::vector<SeedRow> rows;
  for (uint64_t seed : seeds) {
    SimOptions eval = o;
    eval.seed = seed;
    std::vector<SimResult> results;
    if (which == "static" || all)
      results.push_back(simulate(eval, service,
                                 *static_policy(static_cast<int64_t>(a.num("max-batch", 16)),
                                                static_cast<int64_t>(a.num("delay-us", 0)))));
    if (which == "grid" || all) results.push_back(best_static(eval, service, caps, delays));
    if (which == "aimd" || all)
      results.push_back(simulate(eval, service, *aimd_policy(a.num("target-us", high_timeout / 2), 32, 0)));
    if (qo) {
      QLearningPolicy q(*qo);
      q.load(table);
      q.set_exploration(0);
      results.push_back(simulate(eval, service, q));
    }
    std::cout << "seed " << seed << "\n"
              << std::left << std::setw(26) << "policy" << std::setw(6) << "class" << std::right
              << std::setw(9) << "p50_us" << std::setw(10) << "p99_us" << std::setw(9) << "req/s"
              << std::setw(8) << "reject" << std::setw(8) << "expire" << std::setw(7) << "late"
              << std::setw(7) << "batch" << std::setw(6) << "util" << std::setw(7) << "hit"
              << "\n";
    for (const auto& r : results) print(r, std::cout);
    rows.push_back({seed, std::move(results)});
  }
  if (qo && !a.kv.count("save-table")) std::filesystem::remove(table);
  if (rows.size() > 1) {
    // Deadline hit rate per seed and policy, in the order of the tables above;
    // the grid's best setting differs by seed, so it is named at the end.
    auto label = [](const std::string& p) { return p.substr(0, std::min(p.find('('), p.size())); };
    std::cout << "\ndeadline hit rate\n" << std::setw(6) << "seed";
    for (const auto& r : rows.front().results) std::cout << std::setw(13) << label(r.policy);
    std::cout << "\n";
    for (const auto& row : rows) {
      std::cout << std::setw(6) << row.seed << std::setprecision(4);
      std::string best;
      for (const auto& r : row.results) {
        std::cout << std::setw(13) << r.deadline_hit_rate;
        if (r.policy.rfind("best ", 0) == 0) best = r.policy;
      }
      std::cout << "  " << best << "\n";
    }
  }
  if (a.kv.count("json")) {
    std::ofstream f(a.get("json", ""));
    DS_CHECK(f, IOError, "sched-sim: cannot write '", a.get("json", ""), "'");
    f << "[";
    bool first = true;
    for (const auto& row : rows)
      for (const auto& r : row.results) {
        f << (first ? "" : ",\n") << json(r, row.seed);
        first = false;
      }
    f << "]\n";
  }
  return 0;
}

const CommandRegistrar reg{{"sched-sim", "compare batching policies in a discrete-event simulation", run}};

}  // namespace
}  // namespace ds::cli
