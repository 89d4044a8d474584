// The on-disk kernel cache: one file per (region, target) holding a compiled
// object behind a header that names everything it depends on. An entry whose
// header or checksum does not match is reported as rejected and never loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace ds::codegen {

struct CacheKey {
  std::string compiler;  // "LLVM 16.0.6": objects from another compiler are foreign
  std::string triple, cpu, features;
  std::string region;             // the kernel IR text (guards against hash collisions)
  std::string file_name() const;  // "<region hash>-<target hash>.dsk"
};

// DS_CACHE_DIR, else ~/.cache/deepseek (read on every call, so tests can redirect it).
std::filesystem::path kernel_cache_dir();

enum class CacheLookup { Hit, Missing, Rejected };

// Reads the entry for `key` from `dir` into `payload`.
CacheLookup cache_load(const std::filesystem::path& dir, const CacheKey& key, std::string* payload);
// Writes it atomically (a temporary file renamed over the entry); I/O failures
// only cost the cache, so they are ignored.
void cache_store(const std::filesystem::path& dir, const CacheKey& key, const std::string& payload);

uint64_t fnv1a(const std::string& bytes);

}  // namespace ds::codegen
