// Encoders for the TensorBoard protos we write (field numbers from tensorflow's
// event.proto, summary.proto, tensor.proto, tensor_shape.proto, graph.proto,
// node_def.proto, attr_value.proto, versions.proto and types.proto).
#pragma once

#include <cstdint>
#include <string>

#include "ds/graph.h"
#include "ds/tensorboard.h"
#include "tools/proto_writer.h"

namespace ds::tensorboard::proto {

double now();  // seconds since the Unix epoch

// Events (serialized tensorboard.Event messages).
std::string file_version_event(double wall_time);
std::string session_start_event(double wall_time, int64_t step);
// An Event holding a Summary with the one `value` (a Summary.Value).
std::string summary_event(double wall_time, int64_t step, const tools::ProtoWriter& value);
std::string graph_event(double wall_time, const Graph& graph);

// Summary.Value messages.
tools::ProtoWriter scalar_value(const std::string& tag, float value);
tools::ProtoWriter histogram_value(const std::string& tag, const Histogram& h);
tools::ProtoWriter text_value(const std::string& tag, const std::string& text);

// The GraphDef of a ds graph (see SummaryWriter::add_graph).
tools::ProtoWriter graph_def(const Graph& graph);
// tensorflow.DataType of a ds dtype.
int tf_dtype(DType t);

}  // namespace ds::tensorboard::proto
