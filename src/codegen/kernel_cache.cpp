#include "codegen/kernel_cache.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ds::codegen {
namespace {

constexpr char kMagic[8] = {'D', 'S', 'K', 'E', 'R', 'N', 'E', 'L'};
constexpr uint32_t kFormatVersion = 1;

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

void put_u64(std::string& out, uint64_t v) {
  out.append(reinterpret_cast<const char*>(&v), 8);
}
void put_str(std::string& out, const std::string& s) {
  put_u64(out, s.size());
  out += s;
}

// A bounds-checked reader over the file's bytes.
struct Reader {
  const std::string& bytes;
  size_t pos = 0;
  bool u64(uint64_t* v) {
    if (bytes.size() - pos < 8) return false;
    std::memcpy(v, bytes.data() + pos, 8);
    pos += 8;
    return true;
  }
  bool str(std::string* s) {
    uint64_t n = 0;
    if (!u64(&n) || bytes.size() - pos < n) return false;
    s->assign(bytes, pos, n);
    pos += n;
    return true;
  }
};

std::string header(const CacheKey& key) {
  std::string h(kMagic, sizeof kMagic);
  put_u64(h, kFormatVersion);
  for (const std::string* s : {&key.compiler, &key.triple, &key.cpu, &key.features, &key.region})
    put_str(h, *s);
  return h;
}

}  // namespace

std::filesystem::path kernel_cache_dir() {
  const char* env = std::getenv("DS_CACHE_DIR");
  if (env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home && *home ? home : ".") / ".cache" / "deepseek";
}

uint64_t fnv1a(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string CacheKey::file_name() const {
  return hex(fnv1a(region)) + "-" +
         hex(fnv1a(compiler + "|" + triple + "|" + cpu + "|" + features)) + ".dsk";
}

CacheLookup cache_load(const std::filesystem::path& dir, const CacheKey& key,
                       std::string* payload) {
  std::ifstream in(dir / key.file_name(), std::ios::binary);
  if (!in) return CacheLookup::Missing;
  std::ostringstream buf;
  buf << in.rdbuf();
  const std::string bytes = buf.str();
  const std::string want = header(key);
  if (bytes.compare(0, want.size(), want) != 0) return CacheLookup::Rejected;  // foreign or torn
  Reader r{bytes, want.size()};
  uint64_t checksum = 0;
  std::string body;
  if (!r.u64(&checksum) || !r.str(&body) || r.pos != bytes.size() || fnv1a(body) != checksum)
    return CacheLookup::Rejected;
  *payload = std::move(body);
  return CacheLookup::Hit;
}

void cache_store(const std::filesystem::path& dir, const CacheKey& key,
                 const std::string& payload) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return;
  std::string bytes = header(key);
  put_u64(bytes, fnv1a(payload));
  put_str(bytes, payload);
  const auto final_path = dir / key.file_name();
  auto tmp = final_path;
  tmp += ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, final_path, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

}  // namespace ds::codegen
