// A minimal protocol-buffer encoder: enough to write TensorBoard's messages
// (Event, Summary, HistogramProto, TensorProto, GraphDef) without libprotobuf.
// Fields are appended in the order written; nested messages are encoded first
// and added as length-delimited bytes.
#pragma once

#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace ds::tools {

class ProtoWriter {
 public:
  // int32, int64, uint64, bool and enum fields (negative values take 10 bytes, as
  // protobuf encodes them).
  ProtoWriter& varint(int field, int64_t v) {
    tag(field, 0);
    put_varint(static_cast<uint64_t>(v));
    return *this;
  }
  ProtoWriter& f64(int field, double v) {
    tag(field, 1);
    put_fixed(std::bit_cast<uint64_t>(v), 8);
    return *this;
  }
  ProtoWriter& f32(int field, float v) {
    tag(field, 5);
    put_fixed(std::bit_cast<uint32_t>(v), 4);
    return *this;
  }
  // string, bytes, and embedded messages (pass their encoding).
  ProtoWriter& bytes(int field, std::string_view b) {
    tag(field, 2);
    put_varint(b.size());
    out_.append(b);
    return *this;
  }
  ProtoWriter& message(int field, const ProtoWriter& m) { return bytes(field, m.str()); }
  // repeated double / float / int64 in packed form.
  ProtoWriter& packed_f64(int field, std::span<const double> values) {
    ProtoWriter body;
    for (double v : values) body.put_fixed(std::bit_cast<uint64_t>(v), 8);
    return bytes(field, body.str());
  }
  ProtoWriter& packed_f32(int field, std::span<const float> values) {
    ProtoWriter body;
    for (float v : values) body.put_fixed(std::bit_cast<uint32_t>(v), 4);
    return bytes(field, body.str());
  }
  ProtoWriter& packed_varint(int field, std::span<const int64_t> values) {
    ProtoWriter body;
    for (int64_t v : values) body.put_varint(static_cast<uint64_t>(v));
    return bytes(field, body.str());
  }

  const std::string& str() const { return out_; }

 private:
  void tag(int field, int wire_type) {
    put_varint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
  }
  void put_varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void put_fixed(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }

  std::string out_;
};

}  // namespace ds::tools
