// CRC-32C (Castagnoli), the checksum of TFRecord framing, and its masked form.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ds::tools {

// Extends `crc` (0 to start) over `n` bytes at `data`.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }

// TFRecord stores CRCs masked (rotated and offset) so that a CRC of data that
// itself contains CRCs stays well distributed.
inline uint32_t mask_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

}  // namespace ds::tools
