// Saving and loading models: a Graph with its constant weights.
// The native format is a folder: graph.json (nodes, attributes, outputs) and
// weights.safetensors (every constant and tensor attribute). Other formats (ONNX)
// plug in as loaders, so ds::load reads whatever a model repository holds.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ds/graph.h"

namespace ds {

// Writes `graph` to the folder `dir` (created if missing). Throws IOError.
void save(const Graph& graph, const std::string& dir);
// Reads a model with the first registered loader that recognizes `path`.
// Throws NotFoundError when nothing recognizes it, IOError when it is malformed.
Graph load(const std::string& path);

struct ModelFormat {
  std::string name;                                 // "ds", "onnx"
  std::function<bool(const std::string&)> detects;  // cheap check of the path
  std::function<Graph(const std::string&)> load;
};
void register_model_format(ModelFormat format);
std::vector<std::string> model_formats();

}  // namespace ds
