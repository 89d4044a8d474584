#include "serve/infer_json.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace ds::serve {

using json = nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& msg) { throw HttpError(400, msg); }

// Appends the leaves of a flat or nested "data" array; nesting may not exceed
// the tensor's rank.
void flatten(const json& j, int depth_left, std::vector<const json*>& out, const std::string& where) {
  if (!j.is_array()) {
    out.push_back(&j);
    return;
  }
  if (depth_left == 0) bad(where + ": \"data\" is nested deeper than the shape's rank");
  for (const auto& x : j) flatten(x, depth_left - 1, out, where);
}

template <typename T>
void fill_integral(Tensor& t, const std::vector<const json*>& data, const std::string& where) {
  T* p = t.data<T>();
  for (size_t i = 0; i < data.size(); ++i) {
    const json& v = *data[i];
    if (v.is_boolean()) {
      p[i] = static_cast<T>(v.get<bool>());
      continue;
    }
    if (!v.is_number_integer())
      bad(where + ": element " + std::to_string(i) + " is not an integer");
    if (v.is_number_unsigned()) {
      const auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        bad(where + ": element " + std::to_string(i) + " is out of range for " +
            v2_datatype(t.dtype()));
      p[i] = static_cast<T>(u);
    } else {
      const auto s = v.get<int64_t>();
      if (s < static_cast<int64_t>(std::numeric_limits<T>::lowest()) ||
          (s > 0 && static_cast<uint64_t>(s) > static_cast<uint64_t>(std::numeric_limits<T>::max())))
        bad(where + ": element " + std::to_string(i) + " is out of range for " +
            v2_datatype(t.dtype()));
      p[i] = static_cast<T>(s);
    }
  }
}

Tensor make_tensor(DType dtype, const Shape& shape, const std::vector<const json*>& data,
                   const std::string& where) {
  if (dtype == DType::Bool) {
    Tensor t = Tensor::empty(shape, DType::Bool);
    auto* p = static_cast<bool*>(t.raw_data());
    for (size_t i = 0; i < data.size(); ++i) {
      if (!data[i]->is_boolean()) bad(where + ": element " + std::to_string(i) + " is not a boolean");
      p[i] = data[i]->get<bool>();
    }
    return t;
  }
  if (is_floating(dtype)) {
    Tensor f = Tensor::empty(shape, DType::Float64);
    double* p = f.data<double>();
    for (size_t i = 0; i < data.size(); ++i) {
      if (!data[i]->is_number()) bad(where + ": element " + std::to_string(i) + " is not a number");
      p[i] = data[i]->get<double>();
    }
    if (dtype == DType::Float64) return f;
    Tensor t = Tensor::empty(shape, dtype);
    copy_into(f, t);
    return t;
  }
  Tensor t = Tensor::empty(shape, dtype);
  switch (dtype) {
    case DType::Int8: fill_integral<int8_t>(t, data, where); break;
    case DType::UInt8: fill_integral<uint8_t>(t, data, where); break;
    case DType::Int32: fill_integral<int32_t>(t, data, where); break;
    case DType::Int64: fill_integral<int64_t>(t, data, where); break;
    default: bad(where + ": datatype " + v2_datatype(dtype) + " is not supported");
  }
  return t;
}

json tensor_data(const Tensor& t) {
  json arr = json::array();
  const Tensor c = t.contiguous();
  const int64_t n = c.numel();
  switch (c.dtype()) {
    case DType::Bool:
      for (int64_t i = 0; i < n; ++i) arr.push_back(static_cast<const bool*>(c.raw_data())[i]);
      break;
    case DType::Float32:
      for (int64_t i = 0; i < n; ++i) arr.push_back(c.data<float>()[i]);
      break;
    case DType::Int64:
      for (int64_t i = 0; i < n; ++i) arr.push_back(c.data<int64_t>()[i]);
      break;
    default:
      for (int64_t i = 0; i < n; ++i) {
        const double v = element_as_double(c, i);
        if (is_floating(c.dtype())) {
          arr.push_back(v);
        } else {
          arr.push_back(static_cast<int64_t>(v));
        }
      }
  }
  return arr;
}

}  // namespace

const char* v2_datatype(DType d) {
  switch (d) {
    case DType::Float32: return "FP32";
    case DType::Float64: return "FP64";
    case DType::Float16: return "FP16";
    case DType::BFloat16: return "BF16";
    case DType::Int8: return "INT8";
    case DType::UInt8: return "UINT8";
    case DType::Int32: return "INT32";
    case DType::Int64: return "INT64";
    case DType::Bool: return "BOOL";
  }
  return "UNKNOWN";
}

DType dtype_from_v2(const std::string& s) {
  for (DType d : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16, DType::Int8,
                  DType::UInt8, DType::Int32, DType::Int64, DType::Bool})
    if (s == v2_datatype(d)) return d;
  bad("unknown datatype '" + s + "' (expected FP32, FP64, FP16, BF16, INT8, UINT8, INT32, INT64 or BOOL)");
}

InferRequest parse_infer_request(std::string_view body, const std::vector<InputSpec>& specs,
                                 const std::vector<std::string>& output_names,
                                 int64_t max_batch_size) {
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) bad("the request body is not valid JSON");
  if (!doc.is_object()) bad("the request body must be a JSON object");
  InferRequest r;
  if (doc.contains("id")) {
    if (!doc["id"].is_string()) bad("\"id\" must be a string");
    r.id = doc["id"].get<std::string>();
  }
  if (doc.contains("parameters")) {
    const json& p = doc["parameters"];
    if (!p.is_object()) bad("\"parameters\" must be an object");
    if (p.contains("priority")) {
      if (!p["priority"].is_number_integer()) bad("parameters.priority must be an integer");
      r.priority = p["priority"].get<int64_t>();
    }
    if (p.contains("timeout")) {
      if (!p["timeout"].is_number_integer() || p["timeout"].get<int64_t>() < 0)
        bad("parameters.timeout must be a non-negative integer (microseconds)");
      r.timeout_us = p["timeout"].get<int64_t>();
    }
  }
  if (!doc.contains("inputs") || !doc["inputs"].is_array()) bad("\"inputs\" must be an array");
  const json& ins = doc["inputs"];
  r.inputs.resize(specs.size());
  int64_t batch = -1;
  for (const json& in : ins) {
    if (!in.is_object()) bad("every entry of \"inputs\" must be an object");
    if (!in.contains("name") || !in["name"].is_string()) bad("an input has no \"name\" string");
    const std::string name = in["name"].get<std::string>();
    const std::string where = "input '" + name + "'";
    size_t k = 0;
    while (k < specs.size() && specs[k].name != name) ++k;
    if (k == specs.size()) {
      std::string known;
      for (const auto& s : specs) known += (known.empty() ? "" : ", ") + s.name;
      bad(where + " is not an input of the model (inputs: " + known + ")");
    }
    if (r.inputs[k].defined()) bad(where + " is given twice");
    const InputSpec& spec = specs[k];
    if (!in.contains("datatype") || !in["datatype"].is_string()) bad(where + ": no \"datatype\" string");
    const DType dtype = dtype_from_v2(in["datatype"].get<std::string>());
    if (dtype != spec.dtype)
      bad(where + ": datatype " + v2_datatype(dtype) + " given, the model expects " +
          v2_datatype(spec.dtype));
    if (!in.contains("shape") || !in["shape"].is_array()) bad(where + ": no \"shape\" array");
    Shape shape;
    for (const json& d : in["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t{1} << 40))
        bad(where + ": shape extents must be non-negative integers");
      shape.push_back(d.get<int64_t>());
    }
    bool shape_ok = shape.size() == spec.shape.size() && !shape.empty();
    for (size_t d = 1; shape_ok && d < shape.size(); ++d)
      shape_ok = spec.shape[d] == dyn || spec.shape[d] == shape[d];
    if (!shape_ok)
      bad(where + ": shape " + shape_str(shape) + " given, the model expects " +
          shape_str(spec.shape));
    if (shape[0] < 1 || shape[0] > max_batch_size)
      bad(where + ": batch " + std::to_string(shape[0]) + " is outside 1.." +
          std::to_string(max_batch_size) + " (max_batch_size)");
    if (batch >= 0 && shape[0] != batch)
      bad(where + ": batch " + std::to_string(shape[0]) + " differs from the other inputs' " +
          std::to_string(batch));
    batch = shape[0];
    if (!in.contains("data")) bad(where + ": no \"data\"");
    std::vector<const json*> leaves;
    flatten(in["data"], static_cast<int>(shape.size()), leaves, where);
    // Checked before multiplying: each extent is bounded, and the product is
    // compared step by step against the (body-bounded) element count.
    int64_t n = 1;
    for (int64_t d : shape) {
      if (d != 0 && n > static_cast<int64_t>(leaves.size()) / d + 1) {
        n = -1;
        break;
      }
      n *= d;
    }
    if (n != static_cast<int64_t>(leaves.size()))
      bad(where + ": \"data\" has " + std::to_string(leaves.size()) +
          " elements, the shape " + shape_str(shape) + " needs " +
          (n < 0 ? std::string("more") : std::to_string(n)));
    r.inputs[k] = make_tensor(dtype, shape, leaves, where);
  }
  for (size_t k = 0; k < specs.size(); ++k)
    if (!r.inputs[k].defined()) bad("input '" + specs[k].name + "' is missing");
  if (doc.contains("outputs")) {
    if (!doc["outputs"].is_array()) bad("\"outputs\" must be an array");
    for (const json& o : doc["outputs"]) {
      if (!o.is_object() || !o.contains("name") || !o["name"].is_string())
        bad("every requested output needs a \"name\" string");
      const std::string name = o["name"].get<std::string>();
      if (std::find(output_names.begin(), output_names.end(), name) == output_names.end())
        bad("output '" + name + "' is not an output of the model");
      r.outputs.push_back(name);
    }
  }
  return r;
}

std::string infer_response(const std::string& model, const std::string& id,
                           const std::vector<std::string>& names, const std::vector<Tensor>& outputs) {
  json outs = json::array();
  for (size_t i = 0; i < outputs.size(); ++i)
    outs.push_back({{"name", names[i]},
                    {"datatype", v2_datatype(outputs[i].dtype())},
                    {"shape", outputs[i].shape()},
                    {"data", tensor_data(outputs[i])}});
  json doc = {{"model_name", model}, {"model_version", "1"}, {"outputs", outs}};
  if (!id.empty()) doc["id"] = id;
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_body(const std::string& message) {
  return json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace ds::serve
