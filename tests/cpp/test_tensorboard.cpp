#include <gtest/gtest.h>

#include <cfloat>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <thread>

#include "ds/ds.h"
#include "ds/nn/layers.h"
#include "ds/tensorboard.h"
#include "tools/crc32c.h"
#include "tools/proto_writer.h"
#include "tools/tfrecord.h"

namespace fs = std::filesystem;
using ds::tensorboard::SummaryWriter;

namespace {

class TensorBoardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ds_tb_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// A protobuf message decoded one level deep: field number -> raw values (varints
// and fixed-width values as integers, length-delimited ones as bytes).
struct Decoded {
  std::multimap<int, uint64_t> numbers;
  std::multimap<int, std::string> bytes;
};

uint64_t read_varint(const std::string& s, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    const auto b = static_cast<uint8_t>(s.at(pos++));
    v |= uint64_t{b & 0x7fu} << shift;
    if (!(b & 0x80)) return v;
  }
}

Decoded decode(const std::string& s) {
  Decoded d;
  size_t pos = 0;
  while (pos < s.size()) {
    const uint64_t key = read_varint(s, pos);
    const int field = static_cast<int>(key >> 3);
    switch (key & 7) {
      case 0: d.numbers.emplace(field, read_varint(s, pos)); break;
      case 1:
      case 5: {
        const size_t n = (key & 7) == 1 ? 8 : 4;
        uint64_t v = 0;
        std::memcpy(&v, s.data() + pos, n);
        d.numbers.emplace(field, v);
        pos += n;
        break;
      }
      case 2: {
        const size_t n = read_varint(s, pos);
        d.bytes.emplace(field, s.substr(pos, n));
        pos += n;
        break;
      }
      default: throw std::runtime_error("bad wire type");
    }
  }
  return d;
}

double as_double(uint64_t bits) { return std::bit_cast<double>(bits); }
float as_float(uint64_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits)); }

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  return out;
}

}  // namespace

TEST(TensorBoardCrc32c, KnownVectors) {
  // RFC 3720 (iSCSI) B.4 and the classic check value.
  EXPECT_EQ(ds::tools::crc32c("123456789"), 0xe3069283u);
  EXPECT_EQ(ds::tools::crc32c(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(ds::tools::crc32c(std::string(32, '\xff')), 0x62a8ab43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(ds::tools::crc32c(up), 0x46dd794eu);
  EXPECT_EQ(ds::tools::crc32c(down), 0x113fdb5cu);
  EXPECT_EQ(ds::tools::crc32c(""), 0u);
  // Extending a CRC equals the CRC of the concatenation (any split, odd lengths).
  const std::string text = "The quick brown fox jumps over the lazy dog, 0123456789!";
  for (size_t k = 0; k <= text.size(); ++k)
    EXPECT_EQ(ds::tools::crc32c(text.data() + k, text.size() - k,
                                ds::tools::crc32c(text.data(), k)),
              ds::tools::crc32c(text));
  EXPECT_EQ(ds::tools::mask_crc32c(0), 0xa282ead8u);
}

TEST(TensorBoardProto, EncodesWireFormat) {
  ds::tools::ProtoWriter w;
  w.varint(1, 300).varint(2, -1).bytes(3, "hi").f32(4, 1.0f);
  const std::string expected =
      std::string("\x08\xac\x02", 3) + "\x10" + std::string(9, '\xff') + "\x01" +
      "\x1a\x02hi" + std::string("\x25\x00\x00\x80\x3f", 5);
  EXPECT_EQ(w.str(), expected);
  ds::tools::ProtoWriter p;
  p.packed_varint(6, std::vector<int64_t>{1, 150});
  EXPECT_EQ(p.str(), std::string("\x32\x03\x01\x96\x01", 5));
}

TEST_F(TensorBoardTest, TfRecordFramingRoundTripsAndDetectsDamage) {
  fs::create_directories(dir_);
  const std::string path = (dir_ / "r.tfrecord").string();
  const std::string a = ds::tools::frame_record("hello"), b = ds::tools::frame_record("");
  EXPECT_EQ(a.size(), 16u + 5u);
  std::ofstream(path, std::ios::binary) << a << b;
  EXPECT_EQ(ds::tools::read_records(path), (std::vector<std::string>{"hello", ""}));

  std::string bad = a;
  bad[13] ^= 1;  // inside the data
  std::ofstream(path, std::ios::binary) << bad;
  EXPECT_THROW(ds::tools::read_records(path), ds::IOError);
  bad = a;
  bad[2] ^= 1;  // inside the length
  std::ofstream(path, std::ios::binary) << bad;
  EXPECT_THROW(ds::tools::read_records(path), ds::IOError);
  std::ofstream(path, std::ios::binary) << a.substr(0, a.size() - 1);
  EXPECT_THROW(ds::tools::read_records(path), ds::IOError);
}

TEST_F(TensorBoardTest, EventFileNameFirstRecordAndScalars) {
  {
    SummaryWriter w(dir_.string(), {.filename_suffix = ".run"});
    const std::string name = fs::path(w.file_path()).filename().string();
    EXPECT_TRUE(std::regex_match(name, std::regex(R"(events\.out\.tfevents\.\d{10}\..+\.\d+\.\d+\.run)")))
        << name;
    w.add_scalar("loss", 0.25, 7, 1234.5);
    w.add_scalar("loss", -3.0, 8);
  }
  const auto files = event_files(dir_);
  ASSERT_EQ(files.size(), 1u);
  const auto records = ds::tools::read_records(files[0].string());
  ASSERT_EQ(records.size(), 3u);
  const Decoded first = decode(records[0]);
  EXPECT_EQ(first.bytes.find(3)->second, "brain.Event:2");
  EXPECT_GT(as_double(first.numbers.find(1)->second), 1.6e9);  // a real wall time

  const Decoded e = decode(records[1]);
  EXPECT_EQ(as_double(e.numbers.find(1)->second), 1234.5);
  EXPECT_EQ(e.numbers.find(2)->second, 7u);
  const Decoded value = decode(decode(e.bytes.find(5)->second).bytes.find(1)->second);
  EXPECT_EQ(value.bytes.find(1)->second, "loss");
  EXPECT_EQ(as_float(value.numbers.find(2)->second), 0.25f);
  const Decoded value2 = decode(decode(decode(records[2]).bytes.find(5)->second).bytes.find(1)->second);
  EXPECT_EQ(as_float(value2.numbers.find(2)->second), -3.0f);
}

TEST_F(TensorBoardTest, BackgroundThreadFlushesWithoutBeingAsked) {
  SummaryWriter w(dir_.string(), {.flush_secs = 0.05, .max_queue = 1000});
  w.add_scalar("x", 1, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  size_t n = 0;
  while ((n = ds::tools::read_records(w.file_path()).size()) < 2 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(n, 2u);
}

TEST_F(TensorBoardTest, QueueOfMaxQueueEventsIsWrittenBeforeTheTimer) {
  SummaryWriter w(dir_.string(), {.flush_secs = 1000, .max_queue = 3});
  w.add_scalar("x", 1, 0);
  w.add_scalar("x", 2, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(ds::tools::read_records(w.file_path()).size(), 1u);  // still pending
  w.add_scalar("x", 3, 2);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ds::tools::read_records(w.file_path()).size() < 4 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(ds::tools::read_records(w.file_path()).size(), 4u);
}

TEST_F(TensorBoardTest, PurgeStepWritesSessionStart) {
  SummaryWriter w(dir_.string(), {.purge_step = 42});
  const auto records = ds::tools::read_records(w.file_path());
  ASSERT_EQ(records.size(), 2u);
  const Decoded e = decode(records[1]);
  EXPECT_EQ(e.numbers.find(2)->second, 42u);
  EXPECT_EQ(decode(e.bytes.find(7)->second).numbers.find(1)->second, 1u);  // START
}

TEST_F(TensorBoardTest, AddScalarsWritesOneRunPerKey) {
  {
    SummaryWriter w(dir_.string());
    w.add_scalars("loss", {{"train", 1.0}, {"test/a", 2.0}}, 3);
  }
  ASSERT_TRUE(fs::is_directory(dir_ / "loss_train"));
  ASSERT_TRUE(fs::is_directory(dir_ / "loss_test_a"));
  const auto files = event_files(dir_ / "loss_test_a");
  ASSERT_EQ(files.size(), 1u);
  const auto records = ds::tools::read_records(files[0].string());
  ASSERT_EQ(records.size(), 2u);
  const Decoded v = decode(decode(decode(records[1]).bytes.find(5)->second).bytes.find(1)->second);
  EXPECT_EQ(v.bytes.find(1)->second, "loss");
  EXPECT_EQ(as_float(v.numbers.find(2)->second), 2.0f);
}

TEST(TensorBoardHistogram, DefaultBucketsAndCounts) {
  const auto& limits = ds::tensorboard::default_bucket_limits();
  ASSERT_EQ(limits.size(), 1551u);  // 775 per sign and 0, as TensorFlow
  EXPECT_TRUE(std::is_sorted(limits.begin(), limits.end()));
  EXPECT_EQ(limits[775], 0.0);
  EXPECT_EQ(limits.back(), DBL_MAX);
  EXPECT_EQ(limits.front(), -DBL_MAX);

  const auto h = ds::tensorboard::Histogram::from_values(
      ds::Tensor::from_vector(std::vector<double>{0.0, 1.0, 1.0, -2.5, 1e30}, {5}));
  EXPECT_EQ(h.num, 5);
  EXPECT_EQ(h.min, -2.5);
  EXPECT_EQ(h.max, 1e30);
  EXPECT_DOUBLE_EQ(h.sum, -0.5 + 1e30);
  ASSERT_EQ(h.bucket_limits.size(), h.bucket_counts.size());
  double total = 0;
  for (size_t i = 0; i < h.bucket_counts.size(); ++i) {
    total += h.bucket_counts[i];
    if (h.bucket_counts[i] > 0) {
      ASSERT_GT(i, 0u);
      // Every non-empty bucket keeps its own edges: [previous limit, limit).
      const auto it = std::find(limits.begin(), limits.end(), h.bucket_limits[i]);
      ASSERT_NE(it, limits.end());
      EXPECT_EQ(*(it - 1), h.bucket_limits[i - 1]);
    }
    if (i > 0) {
      EXPECT_FALSE(h.bucket_counts[i] == 0 && h.bucket_counts[i - 1] == 0);
    }
  }
  EXPECT_EQ(total, 5);
  // The bucket of 1.0 (counted twice) ends just above it.
  for (size_t i = 0; i < h.bucket_limits.size(); ++i)
    if (h.bucket_counts[i] == 2) {
      EXPECT_GT(h.bucket_limits[i], 1.0);
      EXPECT_LE(h.bucket_limits[i - 1], 1.0);
    }
  EXPECT_THROW(ds::tensorboard::Histogram::from_values(ds::Tensor::zeros({0})), ds::ValueError);
  EXPECT_THROW(ds::tensorboard::Histogram::from_values(ds::Tensor{1.0f, std::numeric_limits<float>::quiet_NaN()}), ds::ValueError);
}

TEST_F(TensorBoardTest, GraphTextAndErrors) {
  ds::Graph g;
  ds::Tensor x = g.placeholder("x", {ds::dyn, 4});
  g.relu(x, "block.act");
  std::string path;
  {
    SummaryWriter w(dir_.string());
    path = w.file_path();
    w.add_graph(g);
    w.add_text("notes", "**hello**", 1);
    w.close();
    EXPECT_THROW(w.add_scalar("x", 1, 0), ds::ValueError);
    EXPECT_THROW(w.add_scalar("", 1, 0), ds::ValueError);
  }
  const auto records = ds::tools::read_records(path);
  ASSERT_EQ(records.size(), 3u);
  const Decoded graph = decode(decode(records[1]).bytes.find(4)->second);
  ASSERT_EQ(graph.bytes.count(1), 2u);  // two NodeDefs
  const Decoded relu = decode(std::next(graph.bytes.find(1))->second);
  EXPECT_EQ(relu.bytes.find(1)->second, "block/act");
  EXPECT_EQ(relu.bytes.find(3)->second, "x");  // its input

  const Decoded text = decode(decode(decode(records[2]).bytes.find(5)->second).bytes.find(1)->second);
  const Decoded tensor = decode(text.bytes.find(8)->second);
  EXPECT_EQ(tensor.numbers.find(1)->second, 7u);  // DT_STRING
  EXPECT_EQ(tensor.bytes.find(8)->second, "**hello**");

  fs::create_directories(dir_);
  std::ofstream((dir_ / "file").string()) << "x";
  EXPECT_THROW(SummaryWriter((dir_ / "file" / "sub").string()), ds::IOError);
}

TEST_F(TensorBoardTest, GraphOfAModuleTreeIsScopedAndLeavesTheModelAsItWas) {
  auto model = std::make_shared<ds::nn::Sequential>(std::vector<ds::nn::ModulePtr>{
      std::make_shared<ds::nn::Linear>(4, 3), ds::nn::ReLU(),
      std::make_shared<ds::nn::Linear>(3, 2)});
  const auto before = model->named_parameters();
  const ds::Graph g = ds::tensorboard::module_graph(*model, {ds::dyn, 4});
  std::set<std::string> names;
  for (const ds::Node& n : g.nodes()) names.insert(n.name);
  for (const char* p : {"input", "0.weight", "0.bias", "2.weight", "2.bias"})
    EXPECT_TRUE(names.count(p)) << p;
  int scoped_in_0 = 0;
  for (const std::string& n : names) scoped_in_0 += n.rfind("0.", 0) == 0 && n != "0.weight" && n != "0.bias";
  EXPECT_GE(scoped_in_0, 1);  // the first Linear's op(s)
  const auto outputs = g.outputs();
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_EQ(g.type(outputs[0].second).shape, (ds::Shape{ds::dyn, 2}));
  // The parameters are the same concrete tensors as before.
  const auto after = model->named_parameters();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_TRUE(after[i].second.same(before[i].second)) << after[i].first;
    EXPECT_FALSE(after[i].second.is_symbolic());
  }
  {
    SummaryWriter w(dir_.string());
    w.add_graph(*model, {ds::dyn, 4});
  }
  const auto records = ds::tools::read_records(event_files(dir_)[0].string());
  ASSERT_EQ(records.size(), 2u);
  const Decoded graph = decode(decode(records[1]).bytes.find(4)->second);
  std::set<std::string> tb_names;
  for (auto it = graph.bytes.lower_bound(1); it != graph.bytes.upper_bound(1); ++it)
    tb_names.insert(decode(it->second).bytes.find(1)->second);
  EXPECT_TRUE(tb_names.count("2/weight"));
}
