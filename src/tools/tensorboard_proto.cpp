#include "tools/tensorboard_proto.h"

#include <chrono>

namespace ds::tensorboard::proto {

namespace {

// tensorboard.Event fields.
enum EventField { kWallTime = 1, kStep = 2, kFileVersion = 3, kGraphDef = 4, kSummary = 5,
                  kSessionLog = 7 };
// tensorboard.Summary.Value fields.
enum ValueField { kTag = 1, kSimpleValue = 2, kHisto = 5, kTensor = 8, kMetadata = 9 };
constexpr int kSessionStart = 1;  // SessionLog.SessionStatus.START
constexpr int kDtString = 7;      // DataType.DT_STRING

tools::ProtoWriter event_header(double wall_time, int64_t step) {
  tools::ProtoWriter e;
  e.f64(kWallTime, wall_time).varint(kStep, step);
  return e;
}

}  // namespace

double now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string file_version_event(double wall_time) {
  return event_header(wall_time, 0).bytes(kFileVersion, "brain.Event:2").str();
}

std::string session_start_event(double wall_time, int64_t step) {
  tools::ProtoWriter log;
  log.varint(1, kSessionStart);
  return event_header(wall_time, step).message(kSessionLog, log).str();
}

std::string summary_event(double wall_time, int64_t step, const tools::ProtoWriter& value) {
  tools::ProtoWriter summary;
  summary.message(1, value);
  return event_header(wall_time, step).message(kSummary, summary).str();
}

std::string graph_event(double wall_time, const Graph& graph) {
  return event_header(wall_time, 0).bytes(kGraphDef, graph_def(graph).str()).str();
}

tools::ProtoWriter scalar_value(const std::string& tag, float value) {
  tools::ProtoWriter v;
  v.bytes(kTag, tag).f32(kSimpleValue, value);
  return v;
}

tools::ProtoWriter histogram_value(const std::string& tag, const Histogram& h) {
  tools::ProtoWriter histo;
  histo.f64(1, h.min).f64(2, h.max).f64(3, h.num).f64(4, h.sum).f64(5, h.sum_squares);
  histo.packed_f64(6, h.bucket_limits).packed_f64(7, h.bucket_counts);
  tools::ProtoWriter v;
  v.bytes(kTag, tag).message(kHisto, histo);
  return v;
}

tools::ProtoWriter text_value(const std::string& tag, const std::string& text) {
  // As tf.summary.text: a string tensor of shape [1], and plugin "text" (whose
  // TextPluginData{version = 0} encodes to no bytes).
  tools::ProtoWriter dim, shape, tensor, plugin, metadata, v;
  dim.varint(1, 1);
  shape.message(2, dim);
  tensor.varint(1, kDtString).message(2, shape).bytes(8, text);
  plugin.bytes(1, "text").bytes(2, "");
  metadata.message(1, plugin);
  v.bytes(kTag, tag).message(kMetadata, metadata).message(kTensor, tensor);
  return v;
}

}  // namespace ds::tensorboard::proto
