// The ds model folder: graph.json + weights.safetensors, and the loader registry.
#include "ds/model_io.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "ds/op.h"
#include "ds/safetensors.h"

namespace ds {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kGraphFile = "graph.json";
constexpr const char* kWeightsFile = "weights.safetensors";
constexpr int kVersion = 1;

// JSON has no NaN or infinity; those travel as strings.
json encode_double(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}
double decode_double(const json& j) {
  if (j.is_number()) return j.get<double>();
  const std::string s = j.get<std::string>();
  if (s == "nan") return std::nan("");
  if (s == "inf") return INFINITY;
  if (s == "-inf") return -INFINITY;
  throw IOError("load: '" + s + "' is not a number");
}

json encode_shape(const Shape& s) {
  json j = json::array();
  for (int64_t d : s) j.push_back(d == dyn ? json(nullptr) : json(d));
  return j;
}
Shape decode_shape(const json& j) {
  Shape s;
  for (const auto& d : j) s.push_back(d.is_null() ? dyn : d.get<int64_t>());
  return s;
}

json encode_attr(const Attr& a, const std::string& tensor_key, TensorMap& weights) {
  return std::visit(
      [&](const auto& v) -> json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) return {{"int", v}};
        if constexpr (std::is_same_v<T, double>) return {{"float", encode_double(v)}};
        if constexpr (std::is_same_v<T, bool>) return {{"bool", v}};
        if constexpr (std::is_same_v<T, std::string>) return {{"string", v}};
        if constexpr (std::is_same_v<T, std::vector<int64_t>>) return {{"ints", v}};
        if constexpr (std::is_same_v<T, std::vector<double>>) {
          json arr = json::array();
          for (double d : v) arr.push_back(encode_double(d));
          return {{"floats", arr}};
        }
        if constexpr (std::is_same_v<T, DType>) return {{"dtype", dtype_name(v)}};
        if constexpr (std::is_same_v<T, Tensor>) {
          weights[tensor_key] = v;
          return {{"tensor", tensor_key}};
        }
      },
      a);
}

Attr decode_attr(const json& j, const TensorMap& weights, const std::string& where) {
  DS_CHECK(j.is_object() && j.size() == 1, IOError, where, "an attribute must be {kind: value}");
  const std::string kind = j.begin().key();
  const json& v = j.begin().value();
  if (kind == "int") return v.get<int64_t>();
  if (kind == "float") return decode_double(v);
  if (kind == "bool") return v.get<bool>();
  if (kind == "string") return v.get<std::string>();
  if (kind == "ints") return v.get<std::vector<int64_t>>();
  if (kind == "floats") {
    std::vector<double> d;
    for (const auto& x : v) d.push_back(decode_double(x));
    return d;
  }
  if (kind == "dtype") return dtype_from_name(v.get<std::string>());
  if (kind == "tensor") {
    auto it = weights.find(v.get<std::string>());
    DS_CHECK(it != weights.end(), IOError, where, "tensor '", v.get<std::string>(), "' is missing from ",
             kWeightsFile);
    return it->second;
  }
  throw IOError(where + "unknown attribute kind '" + kind + "'");
}

Graph load_ds_folder(const std::string& dir) {
  const fs::path gpath = fs::path(dir) / kGraphFile;
  std::ifstream f(gpath);
  DS_CHECK(f, IOError, "load: cannot read '", gpath.string(), "'");
  json doc;
  try {
    doc = json::parse(f);
  } catch (const json::exception& e) {
    throw IOError("load: '" + gpath.string() + "' is not valid JSON: " + e.what());
  }
  DS_CHECK(doc.value("format", "") == "ds-model", IOError, "load: '", gpath.string(),
           "' is not a ds model (no \"format\": \"ds-model\")");
  DS_CHECK(doc.value("version", 0) == kVersion, IOError, "load: '", gpath.string(),
           "' has version ", doc.value("version", 0), ", this build reads version ", kVersion);
  const fs::path wpath = fs::path(dir) / kWeightsFile;
  const TensorMap weights = fs::exists(wpath) ? load_safetensors(wpath.string()) : TensorMap{};

  Graph g;
  std::vector<std::vector<Tensor>> values;  // by saved node index
  try {
    for (const auto& n : doc.at("nodes")) {
      const std::string op = n.at("op").get<std::string>();
      const std::string name = n.value("name", "");
      const std::string where = "load: node " + std::to_string(values.size()) + " (" + op + "): ";
      if (op == "placeholder") {
        values.push_back({g.placeholder(name, decode_shape(n.at("shape")),
                                        dtype_from_name(n.at("dtype").get<std::string>()))});
        continue;
      }
      AttrMap attrs;
      const json attrs_json = n.value("attrs", json::object());
      for (const auto& [k, v] : attrs_json.items()) attrs[k] = decode_attr(v, weights, where);
      if (op == "constant") {
        DS_CHECK(attrs.count("value"), IOError, where, "a constant needs a value");
        values.push_back({g.constant(std::get<Tensor>(attrs.at("value")), name)});
        continue;
      }
      std::vector<Tensor> inputs;
      for (const auto& in : n.value("inputs", json::array())) {
        const auto node = in.at(0).get<size_t>(), out = in.at(1).get<size_t>();
        DS_CHECK(node < values.size() && out < values[node].size(), IOError, where, "input [",
                 node, ", ", out, "] does not name an earlier value");
        inputs.push_back(values[node][out]);
      }
      values.push_back(g.add(op, inputs, attrs, name));
    }
    for (const auto& o : doc.at("outputs")) {
      const auto node = o.at(1).get<size_t>(), out = o.at(2).get<size_t>();
      DS_CHECK(node < values.size() && out < values[node].size(), IOError,
               "load: output '", o.at(0).get<std::string>(), "' names a missing value");
      g.output(values[node][out], o.at(0).get<std::string>());
    }
  } catch (const json::exception& e) {
    throw IOError("load: '" + gpath.string() + "' is malformed: " + e.what());
  }
  return g;
}

struct Formats {
  std::mutex m;
  std::vector<ModelFormat> list;
};
Formats& formats() {
  static Formats* f = [] {
    auto* r = new Formats;
    r->list.push_back({"ds",
                       [](const std::string& p) {
                         return fs::is_directory(p) && fs::exists(fs::path(p) / kGraphFile);
                       },
                       load_ds_folder});
    return r;
  }();
  return *f;
}

}  // namespace

void save(const Graph& graph, const std::string& dir) {
  graph.verify();
  std::error_code ec;
  fs::create_directories(dir, ec);
  DS_CHECK(!ec, IOError, "save: cannot create folder '", dir, "': ", ec.message());
  TensorMap weights;
  json nodes = json::array();
  for (const Node& n : graph.nodes()) {
    json j = {{"op", n.op->name}};
    if (!n.name.empty()) j["name"] = n.name;
    if (n.op->name == "placeholder") {
      j["dtype"] = dtype_name(n.outputs[0].dtype);
      j["shape"] = encode_shape(n.outputs[0].shape);
    }
    if (!n.inputs.empty()) {
      json ins = json::array();
      for (const ValueRef& v : n.inputs) ins.push_back({v.node, v.output});
      j["inputs"] = ins;
    }
    json attrs = json::object();
    for (const auto& [k, a] : n.attrs)
      attrs[k] = encode_attr(a, "node" + std::to_string(n.id) + "." + k, weights);
    if (!attrs.empty()) j["attrs"] = attrs;
    nodes.push_back(j);
  }
  json outputs = json::array();
  for (const auto& [name, v] : graph.outputs()) outputs.push_back({name, v.node, v.output});
  const json doc = {{"format", "ds-model"}, {"version", kVersion}, {"nodes", nodes},
                    {"outputs", outputs}};
  save_safetensors((fs::path(dir) / kWeightsFile).string(), weights, {{"format", "ds-model"}});
  const fs::path gpath = fs::path(dir) / kGraphFile;
  std::ofstream f(gpath);
  DS_CHECK(f, IOError, "save: cannot write '", gpath.string(), "'");
  f << doc.dump(1) << "\n";
  DS_CHECK(f.good(), IOError, "save: writing '", gpath.string(), "' failed");
}

Graph load(const std::string& path) {
  std::vector<ModelFormat> list;
  {
    std::lock_guard lock(formats().m);
    list = formats().list;
  }
  for (const auto& f : list)
    if (f.detects(path)) return f.load(path);
  std::string names;
  for (const auto& f : list) names += (names.empty() ? "" : ", ") + f.name;
  throw NotFoundError("load: '" + path + "' is not a model this build can read (formats: " +
                      names + "; a ds model is a folder with " + kGraphFile + " and " +
                      kWeightsFile + ")");
}

void register_model_format(ModelFormat format) {
  DS_CHECK(format.detects && format.load, ValueError, "register_model_format: '", format.name,
           "' needs detects and load");
  std::lock_guard lock(formats().m);
  formats().list.push_back(std::move(format));
}

std::vector<std::string> model_formats() {
  std::lock_guard lock(formats().m);
  std::vector<std::string> names;
  for (const auto& f : formats().list) names.push_back(f.name);
  return names;
}

}  // namespace ds
