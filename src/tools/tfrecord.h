// TFRecord framing, the container of TensorBoard event files: per record a
// uint64 length, the masked CRC-32C of those 8 bytes, the data, and the masked
// CRC-32C of the data (all little-endian).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ds::tools {

std::string frame_record(std::string_view data);

// Every record of a TFRecord file; throws IOError naming the file and the record
// on a truncated record or a CRC mismatch.
std::vector<std::string> read_records(const std::string& path);

}  // namespace ds::tools
