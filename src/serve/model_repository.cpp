// Model configs and loading a model folder of the repository.
#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "ds/model_io.h"
#include "serve/served_model.h"

namespace ds::serve {

namespace fs = std::filesystem;
using json = nlohmann::json;

ModelConfig read_model_config(const std::string& model_dir) {
  ModelConfig c;
  c.name = fs::path(model_dir).filename().string();
  c.model_path = (fs::absolute(model_dir) / "model").string();
  const fs::path path = fs::path(model_dir) / "config.json";
  if (!fs::exists(path)) return c;
  std::ifstream f(path);
  DS_CHECK(f, IOError, "cannot read '", path.string(), "'");
  json j = json::parse(f, nullptr, false);
  DS_CHECK(!j.is_discarded() && j.is_object(), IOError, "'", path.string(),
           "' is not a JSON object");
  const std::string where = "'" + path.string() + "': ";
  auto integer = [&](const char* key, int64_t lo, int64_t fallback) {
    if (!j.contains(key)) return fallback;
    DS_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() >= lo, ValueError, where, key,
             " must be an integer >= ", lo, ", got ", j[key].dump());
    return j[key].get<int64_t>();
  };
  const std::set<std::string> known = {"max_batch_size", "max_queue_delay_us", "preferred_batch_sizes",
                                       "priority_levels", "default_priority", "default_timeout_us",
                                       "instance_count", "max_queue_size", "target", "model", "name",
                                       "policy", "latency_target_us", "qtable"};
  for (const auto& [k, _] : j.items())
    DS_CHECK(known.count(k), ValueError, where, "unknown field '", k, "'");
  c.max_batch_size = integer("max_batch_size", 1, c.max_batch_size);
  c.max_queue_delay_us = integer("max_queue_delay_us", 0, c.max_queue_delay_us);
  c.priority_levels = static_cast<int>(integer("priority_levels", 1, c.priority_levels));
  c.default_priority = static_cast<int>(integer("default_priority", 1, c.priority_levels));
  DS_CHECK(c.default_priority <= c.priority_levels, ValueError, where, "default_priority ",
           c.default_priority, " exceeds priority_levels ", c.priority_levels);
  c.default_timeout_us = integer("default_timeout_us", 0, c.default_timeout_us);
  c.instance_count = static_cast<int>(integer("instance_count", 1, c.instance_count));
  c.max_queue_size = static_cast<size_t>(integer("max_queue_size", 1, static_cast<int64_t>(c.max_queue_size)));
  if (j.contains("preferred_batch_sizes")) {
    DS_CHECK(j["preferred_batch_sizes"].is_array(), ValueError, where,
             "preferred_batch_sizes must be an array of integers");
    for (const auto& v : j["preferred_batch_sizes"]) {
      DS_CHECK(v.is_number_integer() && v.get<int64_t>() >= 1 && v.get<int64_t>() <= c.max_batch_size,
               ValueError, where, "preferred_batch_sizes entries must be in 1..max_batch_size");
      c.preferred_batch_sizes.push_back(v.get<int64_t>());
    }
  }
  if (j.contains("target")) {
    DS_CHECK(j["target"].is_string(), ValueError, where, "target must be a string");
    c.target = j["target"].get<std::string>();
  }
  if (j.contains("policy")) {
    DS_CHECK(j["policy"].is_string(), ValueError, where, "policy must be a string");
    c.policy = j["policy"].get<std::string>();
    DS_CHECK(c.policy == "static" || c.policy == "aimd" || c.policy == "qlearning", ValueError,
             where, "policy must be static, aimd or qlearning, got '", c.policy, "'");
  }
  c.latency_target_us = integer("latency_target_us", 1, 0);
  DS_CHECK(c.policy != "aimd" || c.latency_target_us > 0, ValueError, where,
           "policy aimd needs latency_target_us");
  if (j.contains("qtable")) {
    DS_CHECK(j["qtable"].is_string(), ValueError, where, "qtable must be a path string");
    c.qtable = (fs::absolute(model_dir) / j["qtable"].get<std::string>()).string();
  }
  if (j.contains("model")) {
    DS_CHECK(j["model"].is_string(), ValueError, where, "model must be a path string");
    c.model_path = (fs::absolute(model_dir) / j["model"].get<std::string>()).string();
  }
  return c;
}

std::unique_ptr<ServedModel> load_served_model(const std::string& model_dir) {
  auto m = std::make_unique<ServedModel>();
  m->config = read_model_config(model_dir);
  Executable exe = compile(load(m->config.model_path), m->config.target);
  for (const IOSpec& in : exe.inputs()) {
    DS_CHECK(!in.type.shape.empty(), ValueError, "model '", m->config.name, "': input '", in.name,
             "' is a scalar; served models take a batch as dim 0");
    m->inputs.push_back({in.name, in.type.dtype, in.type.shape});
  }
  for (const IOSpec& out : exe.outputs()) {
    m->output_names.push_back(out.name);
    m->output_types.push_back(out.type);
  }
  m->run_batch = sched::batch_fn(exe);
  return m;
}

}  // namespace ds::serve
