#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "ds/data.h"
#include "ds/ds.h"

namespace fs = std::filesystem;
using ds::data::DataLoader;
using ds::data::DataLoaderOptions;
using ds::data::Example;

namespace {

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ds_data_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// An IDX file: magic, big-endian extents, then `payload` (already big-endian).
std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::string& payload) {
  std::string out{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) put_be(out, d, 4);
  return out + payload;
}

std::string u8_payload(int n, int start = 0) {
  std::string p;
  for (int i = 0; i < n; ++i) p.push_back(static_cast<char>((start + i) % 256));
  return p;
}

void write_plain(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void expect_idx_error(const std::string& path, const std::string& what) {
  try {
    ds::data::read_idx(path);
    FAIL() << "no error for " << what;
  } catch (const ds::IOError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

// Rows 0..n-1: a float32 [n, 2] feature (i, -i) and an int64 [n] index.
std::shared_ptr<ds::data::TensorDataset> indexed_dataset(int64_t n) {
  std::vector<float> x;
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < n; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(-static_cast<float>(i));
    idx.push_back(i);
  }
  return std::make_shared<ds::data::TensorDataset>(std::vector<ds::Tensor>{
      ds::Tensor::from_vector(x, {n, 2}), ds::Tensor::from_vector(idx, {n})});
}

// The example indices of every batch of one epoch.
std::vector<std::vector<int64_t>> epoch_indices(DataLoader& loader) {
  std::vector<std::vector<int64_t>> out;
  for (const Example& batch : loader) {
    const int64_t* p = batch[1].data<int64_t>();
    out.emplace_back(p, p + batch[1].numel());
  }
  return out;
}

}  // namespace

TEST_F(DataTest, ReadsIdxPlainAndGzip) {
  const std::string bytes = idx_bytes(0x08, {3, 2, 5}, u8_payload(30, 250));
  write_plain(file("a.idx"), bytes);
  write_gz(file("a.idx.gz"), bytes);
  for (const std::string& p : {file("a.idx"), file("a.idx.gz")}) {
    const ds::Tensor t = ds::data::read_idx(p);
    EXPECT_EQ(t.dtype(), ds::DType::UInt8);
    EXPECT_EQ(t.shape(), (ds::Shape{3, 2, 5}));
    EXPECT_EQ(t.data<uint8_t>()[0], 250);
    EXPECT_EQ(t.data<uint8_t>()[29], (250 + 29) % 256);
  }
}

TEST_F(DataTest, ReadsEveryIdxElementTypeBigEndian) {
  std::string p;
  put_be(p, 0xfffe, 2);  // short -2
  put_be(p, 0x0102, 2);
  write_plain(file("s"), idx_bytes(0x0B, {2}, p));
  const ds::Tensor s = ds::data::read_idx(file("s"));
  EXPECT_EQ(s.dtype(), ds::DType::Int32);
  EXPECT_EQ(s.data<int32_t>()[0], -2);
  EXPECT_EQ(s.data<int32_t>()[1], 0x0102);

  p.clear();
  put_be(p, 0xfffffff9u, 4);  // int -7
  write_plain(file("i"), idx_bytes(0x0C, {1, 1}, p));
  EXPECT_EQ(ds::data::read_idx(file("i")).data<int32_t>()[0], -7);

  p.clear();
  put_be(p, std::bit_cast<uint32_t>(1.5f), 4);
  write_plain(file("f"), idx_bytes(0x0D, {1}, p));
  EXPECT_EQ(ds::data::read_idx(file("f")).data<float>()[0], 1.5f);

  p.clear();
  put_be(p, std::bit_cast<uint64_t>(-0.125), 8);
  write_plain(file("d"), idx_bytes(0x0E, {1}, p));
  EXPECT_EQ(ds::data::read_idx(file("d")).data<double>()[0], -0.125);

  write_plain(file("b"), idx_bytes(0x09, {2}, std::string{'\xff', '\x05'}));
  const ds::Tensor b = ds::data::read_idx(file("b"));
  EXPECT_EQ(b.dtype(), ds::DType::Int8);
  EXPECT_EQ(b.data<int8_t>()[0], -1);

  write_plain(file("empty"), idx_bytes(0x08, {0, 28}, ""));
  EXPECT_EQ(ds::data::read_idx(file("empty")).shape(), (ds::Shape{0, 28}));
}

TEST_F(DataTest, MalformedIdxFilesNameTheProblem) {
  const std::string good = idx_bytes(0x08, {4, 3}, u8_payload(12));
  write_plain(file("magic"), "\x01\x02" + good.substr(2));
  expect_idx_error(file("magic"), "bad magic");
  write_plain(file("type"), idx_bytes(0x07, {4, 3}, u8_payload(12)));
  expect_idx_error(file("type"), "unknown element type code 0x7");
  write_plain(file("ndim"), idx_bytes(0x08, {}, ""));
  expect_idx_error(file("ndim"), "0 dimensions");
  write_plain(file("tiny"), good.substr(0, 3));
  expect_idx_error(file("tiny"), "no header");
  write_plain(file("dims"), good.substr(0, 9));
  expect_idx_error(file("dims"), "truncated header");
  write_plain(file("short"), good.substr(0, good.size() - 1));
  expect_idx_error(file("short"), "truncated: dimensions [4, 3] of ubyte need 12 bytes");
  write_gz(file("short.gz"), good.substr(0, good.size() - 5));
  expect_idx_error(file("short.gz"), "truncated");
  write_plain(file("long"), good + "x");
  expect_idx_error(file("long"), "size mismatch");
  write_plain(file("neg"), idx_bytes(0x08, {0x80000000u}, ""));
  expect_idx_error(file("neg"), "negative extent");

  // A gzip stream cut in the middle is reported by zlib, not read as a short file.
  write_gz(file("cut.gz"), idx_bytes(0x08, {1000}, u8_payload(1000)));
  const std::string gz = read_bytes(file("cut.gz"));
  write_plain(file("cut.gz"), gz.substr(0, gz.size() / 2));
  expect_idx_error(file("cut.gz"), "gzip data is truncated or corrupt");

  EXPECT_THROW(ds::data::read_idx(file("absent")), ds::NotFoundError);
}

TEST_F(DataTest, FashionMnistFromIdxFiles) {
  write_gz(file("train-images-idx3-ubyte.gz"), idx_bytes(0x08, {3, 28, 28}, u8_payload(3 * 784)));
  write_plain(file("train-labels-idx1-ubyte"), idx_bytes(0x08, {3}, std::string{9, 0, 4}));
  auto ds_train = ds::data::fashion_mnist(dir_.string(), true);
  ASSERT_EQ(ds_train->size(), 3);
  const ds::Tensor& images = ds_train->tensors()[0];
  const ds::Tensor& labels = ds_train->tensors()[1];
  EXPECT_EQ(images.shape(), (ds::Shape{3, 1, 28, 28}));
  EXPECT_EQ(images.dtype(), ds::DType::Float32);
  EXPECT_FLOAT_EQ(images.data<float>()[255], 1.0f);
  EXPECT_FLOAT_EQ(images.data<float>()[256], 0.0f);
  EXPECT_FLOAT_EQ(images.data<float>()[51], 51.0f / 255.0f);
  EXPECT_EQ(labels.dtype(), ds::DType::Int64);
  EXPECT_EQ(labels.data<int64_t>()[0], 9);
  EXPECT_EQ(labels.data<int64_t>()[2], 4);

  try {
    ds::data::fashion_mnist(dir_.string(), false);
    FAIL();
  } catch (const ds::NotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("dataset-fashion-mnist"), std::string::npos);
  }
  write_plain(file("t10k-images-idx3-ubyte"), idx_bytes(0x08, {2, 28, 28}, u8_payload(2 * 784)));
  write_plain(file("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {3}, std::string{1, 2, 3}));
  EXPECT_THROW(ds::data::fashion_mnist(dir_.string(), false), ds::IOError);
}

TEST(DataFashionMnist, InstalledDatasetWhenPresent) {
  if (!fs::exists(ds::data::kFashionMnistDir)) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto test = ds::data::fashion_mnist(ds::data::kFashionMnistDir, false);
  ASSERT_EQ(test->size(), 10000);
  const ds::Tensor& labels = test->tensors()[1];
  std::vector<int> counts(10);
  for (int64_t i = 0; i < labels.numel(); ++i) {
    const int64_t l = labels.data<int64_t>()[i];
    ASSERT_TRUE(l >= 0 && l < 10);
    ++counts[static_cast<size_t>(l)];
  }
  for (int c : counts) EXPECT_EQ(c, 1000);  // the test split is balanced
  const ds::Tensor& images = test->tensors()[0];
  float lo = 1, hi = 0;
  for (int64_t i = 0; i < images.numel(); ++i) {
    lo = std::min(lo, images.data<float>()[i]);
    hi = std::max(hi, images.data<float>()[i]);
  }
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);
}

TEST(DataTensorDataset, RowsAndGather) {
  auto d = indexed_dataset(5);
  const Example ex = d->get(3);
  EXPECT_EQ(ex[0].shape(), (ds::Shape{2}));
  EXPECT_EQ(ex[0].data<float>()[1], -3.0f);
  EXPECT_EQ(ex[1].shape(), (ds::Shape{}));
  EXPECT_EQ(ex[1].item<int64_t>(), 3);
  const std::vector<int64_t> idx{4, 0, 4};
  const Example b = d->get_batch(idx);
  EXPECT_EQ(b[0].shape(), (ds::Shape{3, 2}));
  EXPECT_EQ(b[0].data<float>()[0], 4.0f);
  EXPECT_EQ(b[0].data<float>()[3], -0.0f);
  EXPECT_EQ(b[1].data<int64_t>()[2], 4);
  EXPECT_THROW(d->get(5), ds::ValueError);
  EXPECT_THROW(d->get_batch(std::vector<int64_t>{-1}), ds::ValueError);
  EXPECT_THROW(ds::data::TensorDataset({ds::Tensor{1, 2}, ds::Tensor{1, 2, 3}}), ds::ShapeError);
}

TEST(DataTensorDataset, DefaultGetBatchStacksExamples) {
  // A dataset computed on the fly uses Dataset's stacking get_batch.
  struct Squares : ds::data::Dataset {
    int64_t size() const override { return 4; }
    Example get(int64_t i) const override {
      return {ds::Tensor::full({2}, double(i * i)), ds::Tensor::scalar(double(i), ds::DType::Int64)};
    }
  } squares;
  const Example b = squares.get_batch(std::vector<int64_t>{3, 1});
  EXPECT_EQ(b[0].shape(), (ds::Shape{2, 2}));
  EXPECT_EQ(b[0].data<float>()[1], 9.0f);
  EXPECT_EQ(b[0].data<float>()[2], 1.0f);
  EXPECT_EQ(b[1].shape(), (ds::Shape{2}));
  EXPECT_EQ(b[1].data<int64_t>()[1], 1);
}

TEST(DataLoader, CoversEveryExampleOncePerEpoch) {
  auto d = indexed_dataset(103);
  for (int prefetch : {0, 1, 3}) {
    DataLoader loader(d, {.batch_size = 10, .shuffle = true, .seed = 7, .prefetch = prefetch});
    EXPECT_EQ(loader.num_batches(), 11);
    const auto batches = epoch_indices(loader);
    ASSERT_EQ(batches.size(), 11u);
    EXPECT_EQ(batches.back().size(), 3u);
    std::multiset<int64_t> seen;
    for (const auto& b : batches) seen.insert(b.begin(), b.end());
    EXPECT_EQ(seen.size(), 103u);
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 103u);
  }
}

TEST(DataLoader, DropLastAndSequentialOrder) {
  auto d = indexed_dataset(25);
  DataLoader loader(d, {.batch_size = 10, .drop_last = true});
  EXPECT_EQ(loader.num_batches(), 2);
  const auto batches = epoch_indices(loader);
  ASSERT_EQ(batches.size(), 2u);
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(batches[i / 10][i % 10], i);
  DataLoader exact(indexed_dataset(20), {.batch_size = 10, .drop_last = true});
  EXPECT_EQ(epoch_indices(exact).size(), 2u);
  DataLoader none(indexed_dataset(5), {.batch_size = 10, .drop_last = true});
  EXPECT_TRUE(epoch_indices(none).empty());
}

TEST(DataLoader, OrderDependsOnlyOnSeedAndEpoch) {
  auto d = indexed_dataset(64);
  DataLoader a(d, {.batch_size = 8, .shuffle = true, .seed = 3, .prefetch = 0});
  DataLoader b(d, {.batch_size = 8, .shuffle = true, .seed = 3, .prefetch = 4});
  const auto a0 = epoch_indices(a), a1 = epoch_indices(a);
  EXPECT_EQ(a0, epoch_indices(b));
  EXPECT_EQ(a1, epoch_indices(b));
  EXPECT_NE(a0, a1);  // each epoch reshuffles
  b.set_epoch(1);     // resuming at epoch 1 repeats its order
  EXPECT_EQ(epoch_indices(b), a1);
  DataLoader c(d, {.batch_size = 8, .shuffle = true, .seed = 4});
  EXPECT_NE(epoch_indices(c), a0);
  EXPECT_EQ(a.order(0), b.order(0));
}

TEST(DataLoader, PrefetchRunsAheadWithinItsBound) {
  struct Counting : ds::data::TensorDataset {
    using TensorDataset::TensorDataset;
    Example get_batch(std::span<const int64_t> idx) const override {
      ++loads;
      return TensorDataset::get_batch(idx);
    }
    mutable std::atomic<int> loads{0};
  };
  auto d = std::make_shared<Counting>(std::vector<ds::Tensor>{indexed_dataset(100)->tensors()});
  DataLoader loader(d, {.batch_size = 5, .prefetch = 3});
  auto epoch = loader.epoch();
  ASSERT_TRUE(epoch.next().has_value());
  // With one batch taken, the worker fills the queue (3) and then waits.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (d->loads < 4 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(d->loads, 4);
}

TEST(DataLoader, StoppingEarlyAndErrorsFromTheDataset) {
  auto d = indexed_dataset(1000);
  {
    DataLoader loader(d, {.batch_size = 1, .prefetch = 2});
    int n = 0;
    for (const Example& batch : loader) {
      (void)batch;
      if (++n == 3) break;  // the epoch's worker is stopped and joined
    }
    EXPECT_EQ(n, 3);
  }
  struct Failing : ds::data::Dataset {
    int64_t size() const override { return 10; }
    Example get(int64_t i) const override {
      DS_CHECK(i != 6, IOError, "example ", i, " is unreadable");
      return {ds::Tensor::scalar(double(i))};
    }
  };
  DataLoader loader(std::make_shared<Failing>(), {.batch_size = 2, .prefetch = 2});
  auto epoch = loader.epoch();
  for (int b = 0; b < 3; ++b) EXPECT_TRUE(epoch.next().has_value());
  EXPECT_THROW(epoch.next(), ds::IOError);
  EXPECT_FALSE(epoch.next().has_value());
  EXPECT_THROW(DataLoader(d, {.batch_size = 0}), ds::ValueError);
}
