#include "ds/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <tuple>
#include <utility>
#include <nlohmann/json.hpp>
#include <vector>

namespace ds {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; a big-endian host needs byte swaps");

namespace {

using json = nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
// The reference implementation refuses headers above 100 MB; so do we, so that a
// corrupt length cannot make us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kHeaderAlignment = 8;

struct DTypeCode {
  DType dtype;
  const char* code;
};
constexpr DTypeCode kCodes[] = {
    {DType::Float32, "F32"}, {DType::Float64, "F64"}, {DType::Float16, "F16"},
    {DType::BFloat16, "BF16"}, {DType::Int8, "I8"},   {DType::UInt8, "U8"},
    {DType::Int32, "I32"},   {DType::Int64, "I64"},   {DType::Bool, "BOOL"}};

std::string errno_text() { return std::strerror(errno); }

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    DS_CHECK(w > 0, IOError, "save_safetensors: writing '", path, "' failed: ", errno_text());
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Reads exactly n bytes at `offset`; false when the file ends first.
bool read_all(int fd, void* data, size_t n, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

// Tensors ordered by descending element size, then name: with the data section
// starting 8-aligned, every tensor then starts aligned to its element size.
std::vector<std::pair<std::string, Tensor>> in_storage_order(const TensorMap& tensors) {
  std::vector<std::pair<std::string, Tensor>> order(tensors.begin(), tensors.end());
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return dtype_size(a.second.dtype()) > dtype_size(b.second.dtype());
  });
  return order;
}

std::string build_header(const std::vector<std::pair<std::string, Tensor>>& order,
                         const SafetensorsMetadata& metadata) {
  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : order) {
    const uint64_t n = t.nbytes();
    header[name] = {{"dtype", safetensors_dtype_code(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((kHeaderAlignment - text.size() % kHeaderAlignment) % kHeaderAlignment, ' ');
  return text;
}

void check_saveable(const std::string& path, const std::string& name, const Tensor& t) {
  DS_CHECK(name != kMetadataKey, IOError, "save_safetensors: '", path, "': the name '",
           kMetadataKey, "' is reserved for the metadata");
  DS_CHECK(t.defined(), IOError, "save_safetensors: '", path, "': tensor '", name,
           "' is undefined");
  DS_CHECK(!t.is_symbolic(), IOError, "save_safetensors: '", path, "': tensor '", name,
           "' is symbolic (a graph value); only concrete tensors can be saved");
  DS_CHECK(t.device() == Device::cpu(), IOError, "save_safetensors: '", path, "': tensor '",
           name, "' is on ", t.device().str(), "; move it to the CPU first");
}

void sync_directory(const std::filesystem::path& dir, const std::string& path) {
  Fd d(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DS_CHECK(d.get() >= 0 && ::fsync(d.get()) == 0, IOError, "save_safetensors: syncing the ",
           "directory of '", path, "' failed: ", errno_text());
}

// ---- reading -------------------------------------------------------------------

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

struct ParsedHeader {
  std::vector<Entry> entries;  // sorted by data offset
  SafetensorsMetadata metadata;
  uint64_t data_start = 0;  // file offset of the data section
};

[[noreturn]] void malformed(const std::string& path, const std::string& what) {
  throw IOError(detail::cat("load_safetensors: '", path, "' is not a valid safetensors file: ",
                            what));
}

uint64_t checked_byte_size(const std::string& path, const Entry& e) {
  uint64_t n = dtype_size(e.dtype);
  for (int64_t d : e.shape) {
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d))
      malformed(path, detail::cat("tensor '", e.name, "' has shape ", shape_str(e.shape),
                                  " whose byte size overflows"));
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

Entry parse_entry(const std::string& path, const std::string& name, const json& v) {
  const std::string where = detail::cat("tensor '", name, "'");
  if (!v.is_object()) malformed(path, where + " is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) malformed(path, detail::cat(where, " has no \"", key, "\""));
  Entry e;
  e.name = name;
  const json& dt = v["dtype"];
  if (!dt.is_string()) malformed(path, where + ": \"dtype\" is not a string");
  try {
    e.dtype = dtype_from_safetensors_code(dt.get<std::string>());
  } catch (const ValueError& err) {
    malformed(path, detail::cat(where, ": ", err.what()));
  }
  const json& shape = v["shape"];
  if (!shape.is_array()) malformed(path, where + ": \"shape\" is not an array");
  for (const json& d : shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t{1} << 62)
      malformed(path, detail::cat(where, ": shape ", shape.dump(),
                                  " has an extent that is not a non-negative integer"));
    e.shape.push_back(d.get<int64_t>());
  }
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    malformed(path, detail::cat(where, ": \"data_offsets\" must be [begin, end] with ",
                                "non-negative integers, got ", off.dump()));
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.end < e.begin)
    malformed(path, detail::cat(where, ": data_offsets ", off.dump(), " end before they begin"));
  const uint64_t expected = checked_byte_size(path, e);
  if (e.end - e.begin != expected)
    malformed(path, detail::cat(where, ": data_offsets ", off.dump(), " span ", e.end - e.begin,
                                " bytes but dtype ", dt.get<std::string>(), " and shape ",
                                shape_str(e.shape), " need ", expected));
  return e;
}

SafetensorsMetadata parse_metadata(const std::string& path, const json& v) {
  if (!v.is_object()) malformed(path, "\"__metadata__\" is not a JSON object");
  SafetensorsMetadata m;
  for (const auto& [key, value] : v.items()) {
    if (!value.is_string())
      malformed(path, detail::cat("metadata value of '", key, "' is not a string: ",
                                  value.dump()));
    m[key] = value.get<std::string>();
  }
  return m;
}

ParsedHeader read_header(int fd, const std::string& path) {
  struct stat st {};
  DS_CHECK(::fstat(fd, &st) == 0, IOError, "load_safetensors: cannot stat '", path,
           "': ", errno_text());
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  uint64_t header_len = 0;
  if (file_size < 8 || !read_all(fd, &header_len, 8, 0))
    malformed(path, detail::cat("the file is ", file_size,
                                " bytes, too short for the 8-byte header length"));
  if (header_len == 0 || header_len > kMaxHeaderBytes || header_len > file_size - 8)
    malformed(path, detail::cat("bad header length ", header_len, " (the file is ", file_size,
                                " bytes; the header must fit in it and be at most ",
                                kMaxHeaderBytes, " bytes)"));
  std::string text(header_len, '\0');
  if (!read_all(fd, text.data(), header_len, 8))
    malformed(path, "the file ended inside the JSON header");
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    malformed(path, detail::cat("JSON error in the header: ", e.what()));
  }
  if (!header.is_object()) malformed(path, "the JSON header is not an object");

  ParsedHeader parsed;
  parsed.data_start = 8 + header_len;
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey)
      parsed.metadata = parse_metadata(path, value);
    else
      parsed.entries.push_back(parse_entry(path, name, value));
  }
  std::sort(parsed.entries.begin(), parsed.entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  const uint64_t data_size = file_size - parsed.data_start;
  const Entry* previous = nullptr;  // the last non-empty range; empty ones overlap nothing
  for (const Entry& e : parsed.entries) {
    if (e.end > data_size)
      malformed(path, detail::cat("tensor '", e.name, "' has data_offsets [", e.begin, ", ",
                                  e.end, "] out of range: the data section has ", data_size,
                                  " bytes (truncated file?)"));
    if (e.begin == e.end) continue;
    if (previous && e.begin < previous->end)
      malformed(path, detail::cat("tensors '", previous->name, "' and '", e.name,
                                  "' have overlapping data_offsets"));
    previous = &e;
  }
  return parsed;
}

Fd open_for_reading(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const std::string why = errno_text();
    if (errno == ENOENT) throw NotFoundError(detail::cat("load_safetensors: no file '", path, "'"));
    throw IOError(detail::cat("load_safetensors: cannot open '", path, "': ", why));
  }
  return Fd(fd.release());
}

}  // namespace

const char* safetensors_dtype_code(DType dtype) {
  for (const auto& c : kCodes)
    if (c.dtype == dtype) return c.code;
  throw ValueError(detail::cat("safetensors has no code for dtype ", dtype_name(dtype)));
}

DType dtype_from_safetensors_code(const std::string& code) {
  for (const auto& c : kCodes)
    if (code == c.code) return c.dtype;
  throw ValueError(detail::cat("dtype \"", code,
                               "\" is unknown or unsupported (supported: F32 F64 F16 BF16 I8 U8 "
                               "I32 I64 BOOL)"));
}

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const SafetensorsMetadata& metadata) {
  for (const auto& [name, t] : tensors) check_saveable(path, name, t);
  const auto order = in_storage_order(tensors);
  const std::string header = build_header(order, metadata);

  static std::atomic<uint64_t> counter{0};
  const std::string tmp = detail::cat(path, ".tmp-", ::getpid(), "-", counter++);
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  DS_CHECK(fd.get() >= 0, IOError, "save_safetensors: cannot create '", tmp, "' to write '",
           path, "': ", errno_text());
  try {
    const uint64_t header_len = header.size();
    write_all(fd.get(), &header_len, 8, path);
    write_all(fd.get(), header.data(), header.size(), path);
    for (const auto& [name, t] : order) {
      const Tensor c = t.is_contiguous() ? t : t.contiguous();
      if (c.nbytes() > 0) write_all(fd.get(), c.raw_data(), c.nbytes(), path);
    }
    DS_CHECK(::fsync(fd.get()) == 0, IOError, "save_safetensors: syncing '", tmp,
             "' failed: ", errno_text());
    DS_CHECK(::close(fd.release()) == 0, IOError, "save_safetensors: closing '", tmp,
             "' failed: ", errno_text());
    DS_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, IOError, "save_safetensors: renaming '",
             tmp, "' to '", path, "' failed: ", errno_text());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  sync_directory(std::filesystem::path(path).parent_path(), path);
}

TensorMap load_safetensors(const std::string& path) {
  Fd fd = open_for_reading(path);
  const ParsedHeader header = read_header(fd.get(), path);
  TensorMap out;
  for (const Entry& e : header.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (!read_all(fd.get(), t.raw_data(), t.nbytes(), header.data_start + e.begin))
      malformed(path, detail::cat("the file ended inside the data of tensor '", e.name, "'"));
    if (e.dtype == DType::Bool) {
      const auto* bytes = static_cast<const uint8_t*>(t.raw_data());
      if (std::any_of(bytes, bytes + t.nbytes(), [](uint8_t b) { return b > 1; }))
        malformed(path, detail::cat("BOOL tensor '", e.name, "' holds bytes other than 0 and 1"));
    }
    out.emplace(e.name, std::move(t));
  }
  return out;
}

SafetensorsMetadata load_safetensors_metadata(const std::string& path) {
  Fd fd = open_for_reading(path);
  return read_header(fd.get(), path).metadata;
}

}  // namespace ds
