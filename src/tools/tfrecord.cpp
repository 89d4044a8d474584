#include "tools/tfrecord.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <iterator>

#include "ds/error.h"
#include "tools/crc32c.h"

namespace ds::tools {

static_assert(std::endian::native == std::endian::little, "TFRecord fields are little-endian");

std::string frame_record(std::string_view data) {
  const uint64_t length = data.size();
  const uint32_t length_crc = mask_crc32c(crc32c(&length, 8));
  const uint32_t data_crc = mask_crc32c(crc32c(data.data(), data.size()));
  std::string out;
  out.reserve(16 + data.size());
  out.append(reinterpret_cast<const char*>(&length), 8);
  out.append(reinterpret_cast<const char*>(&length_crc), 4);
  out.append(data);
  out.append(reinterpret_cast<const char*>(&data_crc), 4);
  return out;
}

std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DS_CHECK(in, NotFoundError, "read_records: cannot open '", path, "'");
  const std::string bytes{std::istreambuf_iterator<char>(in), {}};
  std::vector<std::string> records;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t index = records.size();
    DS_CHECK(bytes.size() - pos >= 12, IOError, "read_records: '", path, "': record ", index,
             " is truncated inside its length header");
    uint64_t length;
    uint32_t length_crc, data_crc;
    std::memcpy(&length, bytes.data() + pos, 8);
    std::memcpy(&length_crc, bytes.data() + pos + 8, 4);
    DS_CHECK(length_crc == mask_crc32c(crc32c(&length, 8)), IOError, "read_records: '", path,
             "': record ", index, " has a bad length CRC");
    DS_CHECK(bytes.size() - pos - 12 >= length + 4 && length < bytes.size(), IOError,
             "read_records: '", path, "': record ", index, " of ", length,
             " bytes is truncated");
    std::string data = bytes.substr(pos + 12, length);
    std::memcpy(&data_crc, bytes.data() + pos + 12 + length, 4);
    DS_CHECK(data_crc == mask_crc32c(crc32c(data)), IOError, "read_records: '", path,
             "': record ", index, " has a bad data CRC");
    records.push_back(std::move(data));
    pos += 16 + length;
  }
  return records;
}

}  // namespace ds::tools
