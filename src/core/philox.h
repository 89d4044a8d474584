// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11): a counter-based generator. Plain uint32_t arithmetic only, so the same
// header compiles for the CPU and in CUDA device code, and a value depends only on
// (seed, index): identical for every thread count and backend.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define DS_PHILOX_FN __host__ __device__ inline
#else
#define DS_PHILOX_FN inline
#endif

namespace ds::philox {

struct Block {
  uint32_t v[4];
};

constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1

DS_PHILOX_FN Block round(Block c, uint32_t k0, uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kMul0) * c.v[0];
  const uint64_t p1 = static_cast<uint64_t>(kMul1) * c.v[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  return Block{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
}

// Ten rounds; the key advances by the Weyl constants between rounds.
DS_PHILOX_FN Block philox4x32_10(Block counter, uint32_t key0, uint32_t key1) {
  Block c = counter;
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      key0 += kWeyl0;
      key1 += kWeyl1;
    }
    c = round(c, key0, key1);
  }
  return c;
}

// The word stream of a seed: words 4b..4b+3 are Philox(counter = {b_lo, b_hi, 0, 0},
// key = {seed_lo, seed_hi}).
DS_PHILOX_FN Block stream_block(uint64_t seed, uint64_t block) {
  return philox4x32_10(
      Block{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}
DS_PHILOX_FN uint32_t stream_word(uint64_t seed, uint64_t word) {
  return stream_block(seed, word >> 2).v[word & 3];
}

// Uniform [0, 1) from the top 24 bits of one word: exact in float32.
DS_PHILOX_FN float uniform24(uint32_t w) {
  return static_cast<float>(w >> 8) * (1.0f / 16777216.0f);
}
// Uniform [0, 1) with 53 bits from two words: exact in float64.
DS_PHILOX_FN double uniform53(uint32_t a, uint32_t b) {
  const uint64_t bits = (static_cast<uint64_t>(a) << 21) | (b >> 11);
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}
// Uniform (0, 1] from one word: never 0, so log() of it is finite (Box-Muller).
DS_PHILOX_FN double uniform32_open0(uint32_t w) {
  return (static_cast<double>(w) + 1.0) * (1.0 / 4294967296.0);
}
// Uniform [0, 1) from one word with 32 bits.
DS_PHILOX_FN double uniform32(uint32_t w) {
  return static_cast<double>(w) * (1.0 / 4294967296.0);
}

}  // namespace ds::philox

#undef DS_PHILOX_FN
