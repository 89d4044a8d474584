// oneDNN's channel-blocked activation layouts, as the layout propagation pass
// carries them between convolutions. A blocked value is an ordinary 5-D tensor
// [n, ceil(c / B), h, w, B]: element (n, ch, y, x) of the NCHW tensor sits at
// [n, ch / B, y, x, ch % B]; the channels past c in the last block are zeros.
// B = 8 or 16 is oneDNN's nChw8c / nChw16c; B = c (one block) is channels-last
// (nhwc), which oneDNN's AVX-512 brgemm convolutions pick. Elementwise ops run
// on it unchanged (same shape on both sides); to_blocked / from_blocked reorder,
// blocked_conv2d convolves it.
#pragma once

#include "ds/shape.h"

namespace ds::ops {

// A block size standing for "each value's own channel count": channels-last.
inline constexpr int64_t kChannelsLast = -1;

inline int64_t channel_blocks(int64_t channels, int64_t block) { return (channels + block - 1) / block; }

// [n, c, h, w] -> [n, ceil(c / block), h, w, block].
inline Shape blocked_shape(const Shape& nchw, int64_t block) {
  return {nchw[0], channel_blocks(nchw[1], block), nchw[2], nchw[3], block};
}

// [n, cb, h, w, block] holding `channels` channels -> [n, channels, h, w].
inline Shape plain_shape(const Shape& blocked, int64_t channels) {
  return {blocked[0], channels, blocked[2], blocked[3]};
}

}  // namespace ds::ops
