// permute (transpose) on the CPU for every dtype (elements of 1, 2, 4 or 8 bytes). The reference
// kernel walks the output in order and reads the input at a stride, a cache miss
// per element once a row of the input is larger than a line: a 512x784 float32
// transpose took 115 us. Here axes that stay adjacent are merged; when the output's
// last axis is also the input's last, rows are copied with memcpy, otherwise the
// two axes are copied in square tiles, so both sides use whole cache lines.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "ds/op.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace ds::cpu {
namespace {

// One output axis after merging: its extent and the input stride of a step along it.
struct Axis {
  int64_t extent;
  int64_t src_stride;
};

// The output's axes (size-1 axes dropped, neighbours merged where the input holds
// them in the same order) with the input strides, in elements.
std::vector<Axis> merged_axes(const Shape& in, const std::vector<int64_t>& axes) {
  const int nd = static_cast<int>(in.size());
  std::vector<int64_t> in_stride(in.size(), 1);
  for (int d = nd - 2; d >= 0; --d) in_stride[d] = in_stride[d + 1] * in[d + 1];
  std::vector<Axis> out;
  for (int64_t a : axes) {
    const int d = normalize_axis(a, nd, "permute");
    if (in[d] == 1) continue;
    if (!out.empty() && out.back().src_stride == in_stride[d] * in[d]) {
      out.back() = {out.back().extent * in[d], in_stride[d]};
      continue;
    }
    out.push_back({in[d], in_stride[d]});
  }
  return out;
}

// Element offsets of output index `i` over `axes` (row-major), in input and output.
struct Offsets {
  int64_t src = 0, dst = 0;
};
Offsets offsets_of(int64_t i, const std::vector<Axis>& axes, const std::vector<int64_t>& dst_stride) {
  Offsets o;
  for (int d = static_cast<int>(axes.size()) - 1; d >= 0; --d) {
    const int64_t k = i % axes[d].extent;
    i /= axes[d].extent;
    o.src += k * axes[d].src_stride;
    o.dst += k * dst_stride[d];
  }
  return o;
}

// d[u * ld_d + l] = s[l * ld_s + u] for u in [0, nu), l in [0, nl).
template <typename T>
void copy_tile_scalar(const T* s, int64_t ld_s, T* d, int64_t ld_d, int64_t nu, int64_t nl) {
  for (int64_t u = 0; u < nu; ++u)
    for (int64_t l = 0; l < nl; ++l) d[u * ld_d + l] = s[l * ld_s + u];
}

template <typename T>
void copy_tile(const T* s, int64_t ld_s, T* d, int64_t ld_d, int64_t nu, int64_t nl) {
  copy_tile_scalar(s, ld_s, d, ld_d, nu, nl);
}

#if defined(__AVX2__)
// 4-byte elements: 8x8 blocks transposed in registers (moves only: bits are kept),
// eight times fewer loads and stores than one element at a time.
void transpose8x8(const float* s, int64_t ld_s, float* d, int64_t ld_d) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(s + i * ld_s);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(d + i * ld_d, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(d + (i + 4) * ld_d, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

template <>
void copy_tile(const uint32_t* s, int64_t ld_s, uint32_t* d, int64_t ld_d, int64_t nu, int64_t nl) {
  const int64_t fu = nu - nu % 8, fl = nl - nl % 8;
  for (int64_t u = 0; u < fu; u += 8)
    for (int64_t l = 0; l < fl; l += 8)
      transpose8x8(reinterpret_cast<const float*>(s + l * ld_s + u), ld_s,
                   reinterpret_cast<float*>(d + u * ld_d + l), ld_d);
  if (fl < nl) copy_tile_scalar(s + fl * ld_s, ld_s, d + fl, ld_d, fu, nl - fl);
  if (fu < nu) copy_tile_scalar(s + fu, ld_s, d + fu * ld_d, ld_d, nu - fu, nl);
}
#endif

template <typename T>
void permute_as(const T* src, T* dst, std::vector<Axis> axes) {
  const int nd = static_cast<int>(axes.size());
  std::vector<int64_t> dst_stride(axes.size(), 1);
  for (int d = nd - 2; d >= 0; --d) dst_stride[d] = dst_stride[d + 1] * axes[d + 1].extent;
  int64_t total = 1;
  for (const Axis& a : axes) total *= a.extent;
  if (nd == 0 || axes.back().src_stride == 1) {
    // Contiguous runs: the last merged axis is contiguous in both tensors.
    const int64_t row = nd == 0 ? 1 : axes.back().extent;
    std::vector<Axis> outer(axes.begin(), axes.end() - (nd == 0 ? 0 : 1));
    std::vector<int64_t> outer_dst(dst_stride.begin(), dst_stride.end() - (nd == 0 ? 0 : 1));
    parallel_for(total / row, std::max<int64_t>(1, 16384 / row), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const Offsets o = offsets_of(r, outer, outer_dst);
        std::memcpy(dst + o.dst, src + o.src, static_cast<size_t>(row) * sizeof(T));
      }
    });
    return;
  }
  // Tiles over the output's last axis (strided in the input) and the input's last
  // axis (the merged axis of stride 1, strided in the output); the rest index tiles.
  const int last = nd - 1;
  const int unit = static_cast<int>(
      std::find_if(axes.begin(), axes.end(), [](const Axis& a) { return a.src_stride == 1; }) -
      axes.begin());
  constexpr int64_t kTile = 128 / sizeof(T);  // two cache lines of a row
  const int64_t tiles_unit = (axes[unit].extent + kTile - 1) / kTile;
  const int64_t tiles_last = (axes[last].extent + kTile - 1) / kTile;
  std::vector<Axis> rest;
  std::vector<int64_t> rest_dst;
  for (int d = 0; d < nd; ++d)
    if (d != unit && d != last) rest.push_back(axes[d]), rest_dst.push_back(dst_stride[d]);
  const int64_t blocks = total / (axes[unit].extent * axes[last].extent);
  const int64_t src_step = axes[last].src_stride, dst_step = dst_stride[unit];
  parallel_for(blocks * tiles_unit * tiles_last, std::max<int64_t>(1, 16384 / (kTile * kTile)),
               [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const Offsets o = offsets_of(t / (tiles_unit * tiles_last), rest, rest_dst);
      const int64_t u0 = (t / tiles_last % tiles_unit) * kTile, l0 = (t % tiles_last) * kTile;
      const int64_t u1 = std::min(u0 + kTile, axes[unit].extent);
      const int64_t l1 = std::min(l0 + kTile, axes[last].extent);
      copy_tile(src + o.src + l0 * src_step + u0, src_step, dst + o.dst + u0 * dst_step + l0,
                dst_step, u1 - u0, l1 - l0);
    }
  });
}

void permute_kernel(const KernelCall& k) {
  const Tensor& x = k.inputs[0];
  Tensor& y = k.outputs[0];
  if (y.numel() == 0) return;
  std::vector<Axis> axes = merged_axes(x.shape(), k.ctx.ints("axes"));
  const void* src = x.raw_data();
  void* dst = y.raw_data();
  switch (dtype_size(x.dtype())) {
    case 1: return permute_as(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), axes);
    case 2: return permute_as(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), axes);
    case 4: return permute_as(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), axes);
    default: return permute_as(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), axes);
  }
}

const OpRegistrar reg([] {
  register_kernel("permute", DeviceKind::CPU,
                  {permute_kernel, {}, "tiled", 10});
});

}  // namespace
}  // namespace ds::cpu
