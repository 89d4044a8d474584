// The IDX format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code,
// the number of dimensions, then each extent as a big-endian int32, then the data
// in row-major order, big-endian.
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/thread_pool.h"
#include "ds/data.h"

namespace ds::data {

namespace {

struct IdxType {
  uint8_t code;
  const char* name;
  size_t file_bytes;  // element size in the file
  DType dtype;        // what we load it as
};
constexpr IdxType kIdxTypes[] = {{0x08, "ubyte", 1, DType::UInt8}, {0x09, "byte", 1, DType::Int8},
                                 {0x0B, "short", 2, DType::Int32}, {0x0C, "int", 4, DType::Int32},
                                 {0x0D, "float", 4, DType::Float32},
                                 {0x0E, "double", 8, DType::Float64}};
constexpr int kMaxDims = 16;

[[noreturn]] void malformed(const std::string& path, const std::string& what) {
  throw IOError(detail::cat("read_idx: '", path, "' is not a valid IDX file: ", what));
}

// The whole (decompressed) file. zlib reads plain files as they are, so one path
// serves both; a truncated gzip stream is reported, not silently shortened.
std::vector<uint8_t> read_decompressed(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw NotFoundError(detail::cat("read_idx: no file '", path, "'"));
  gzFile f = gzopen(path.c_str(), "rb");
  DS_CHECK(f != nullptr, IOError, "read_idx: cannot open '", path, "': ", std::strerror(errno));
  gzbuffer(f, 1 << 18);
  std::vector<uint8_t> bytes;
  constexpr size_t kChunk = 1 << 20;
  for (;;) {
    const size_t have = bytes.size();
    bytes.resize(have + kChunk);
    const int n = gzread(f, bytes.data() + have, static_cast<unsigned>(kChunk));
    bytes.resize(have + static_cast<size_t>(std::max(n, 0)));
    if (n <= 0) break;
  }
  int err = Z_OK;
  const std::string zmsg = gzerror(f, &err);
  gzclose(f);
  if (err != Z_OK && err != Z_STREAM_END)
    malformed(path, detail::cat("the gzip data is truncated or corrupt (zlib: ", zmsg, ")"));
  return bytes;
}

template <typename U> U byteswap(U u) {
  if constexpr (sizeof(U) == 2) return __builtin_bswap16(u);
  if constexpr (sizeof(U) == 4) return __builtin_bswap32(u);
  if constexpr (sizeof(U) == 8) return __builtin_bswap64(u);
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Converts n big-endian file elements of type `t` into the tensor's elements.
void decode(const IdxType& t, const uint8_t* src, int64_t n, void* dst) {
  const auto load = [&](int64_t i, auto zero) {
    using U = decltype(zero);
    U u;
    std::memcpy(&u, src + i * static_cast<int64_t>(sizeof(U)), sizeof(U));
    return byteswap(u);
  };
  switch (t.code) {
    case 0x08:
    case 0x09: std::memcpy(dst, src, static_cast<size_t>(n)); break;
    case 0x0B:
      for (int64_t i = 0; i < n; ++i)
        static_cast<int32_t*>(dst)[i] = static_cast<int16_t>(load(i, uint16_t{}));
      break;
    case 0x0C:
      for (int64_t i = 0; i < n; ++i)
        static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(load(i, uint32_t{}));
      break;
    case 0x0D:
      for (int64_t i = 0; i < n; ++i)
        static_cast<float*>(dst)[i] = std::bit_cast<float>(load(i, uint32_t{}));
      break;
    case 0x0E:
      for (int64_t i = 0; i < n; ++i)
        static_cast<double*>(dst)[i] = std::bit_cast<double>(load(i, uint64_t{}));
      break;
  }
}

std::string find_file(const std::string& dir, const std::string& stem) {
  for (const char* suffix : {"", ".gz"}) {
    const auto p = std::filesystem::path(dir) / (stem + suffix);
    std::error_code ec;
    if (std::filesystem::is_regular_file(p, ec)) return p.string();
  }
  throw NotFoundError(detail::cat(
      "fashion_mnist: no '", stem, "' or '", stem, ".gz' in '", dir,
      "' (on Debian, install the package dataset-fashion-mnist, which puts the files in ",
      kFashionMnistDir, ")"));
}

}  // namespace

Tensor read_idx(const std::string& path) {
  static_assert(std::endian::native == std::endian::little);
  const std::vector<uint8_t> bytes = read_decompressed(path);
  if (bytes.size() < 4) malformed(path, detail::cat("it has ", bytes.size(), " bytes, no header"));
  if (bytes[0] != 0 || bytes[1] != 0)
    malformed(path, detail::cat("bad magic: the first two bytes are ", int{bytes[0]}, " ",
                                int{bytes[1]}, ", expected 0 0"));
  const IdxType* type = nullptr;
  for (const auto& t : kIdxTypes)
    if (t.code == bytes[2]) type = &t;
  if (!type)
    malformed(path, detail::cat("bad magic: unknown element type code 0x", std::hex,
                                int{bytes[2]}, " (expected 0x08, 0x09, 0x0b-0x0e)"));
  const int ndim = bytes[3];
  if (ndim < 1 || ndim > kMaxDims)
    malformed(path, detail::cat("bad magic: ", ndim, " dimensions (expected 1 to ", kMaxDims, ")"));
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  if (bytes.size() < header)
    malformed(path, detail::cat("truncated header: ", ndim, " dimensions need ", header,
                                " bytes, the file has ", bytes.size()));
  Shape shape;
  uint64_t count = 1;
  for (int i = 0; i < ndim; ++i) {
    const uint32_t d = big_endian_u32(&bytes[4 + 4 * static_cast<size_t>(i)]);
    if (d > static_cast<uint32_t>(std::numeric_limits<int32_t>::max()))
      malformed(path, detail::cat("dimension ", i, " has the negative extent ",
                                  static_cast<int32_t>(d)));
    shape.push_back(d);
    if (d != 0 && count > (uint64_t{1} << 48) / d)
      malformed(path, detail::cat("dimensions ", shape_str(shape), "... are implausibly large"));
    count *= d;
  }
  const uint64_t data_bytes = count * type->file_bytes;
  const uint64_t have = bytes.size() - header;
  if (have != data_bytes)
    malformed(path, detail::cat(have < data_bytes ? "truncated: " : "size mismatch: ",
                                "dimensions ", shape_str(shape), " of ", type->name, " need ",
                                data_bytes, " bytes of data, the file has ", have));
  Tensor out = Tensor::empty(shape, type->dtype);
  decode(*type, bytes.data() + header, static_cast<int64_t>(count), out.raw_data());
  return out;
}

std::shared_ptr<TensorDataset> fashion_mnist(const std::string& dir, bool train) {
  const std::string split = train ? "train" : "t10k";
  const std::string images_path = find_file(dir, split + "-images-idx3-ubyte");
  const std::string labels_path = find_file(dir, split + "-labels-idx1-ubyte");
  const Tensor raw = read_idx(images_path);
  const Tensor raw_labels = read_idx(labels_path);
  DS_CHECK(raw.dtype() == DType::UInt8 && raw.ndim() == 3, IOError, "fashion_mnist: '",
           images_path, "' holds ", dtype_name(raw.dtype()), shape_str(raw.shape()),
           ", expected uint8 images [N, rows, cols]");
  DS_CHECK(raw_labels.dtype() == DType::UInt8 && raw_labels.ndim() == 1, IOError,
           "fashion_mnist: '", labels_path, "' holds ", dtype_name(raw_labels.dtype()),
           shape_str(raw_labels.shape()), ", expected uint8 labels [N]");
  DS_CHECK(raw_labels.dim(0) == raw.dim(0), IOError, "fashion_mnist: '", images_path, "' has ",
           raw.dim(0), " images but '", labels_path, "' has ", raw_labels.dim(0), " labels");

  Tensor images = Tensor::empty({raw.dim(0), 1, raw.dim(1), raw.dim(2)}, DType::Float32);
  const uint8_t* src = raw.data<uint8_t>();
  float* dst = images.data<float>();
  parallel_for(images.numel(), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f;
  });
  Tensor labels = Tensor::empty({raw_labels.dim(0)}, DType::Int64);
  const uint8_t* lsrc = raw_labels.data<uint8_t>();
  int64_t* ldst = labels.data<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) ldst[i] = lsrc[i];
  return std::make_shared<TensorDataset>(std::vector<Tensor>{images, labels});
}

}  // namespace ds::data
