#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "ds/ds.h"
#include "ds/safetensors.h"

namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ds_safetensors_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

ds::Tensor random_tensor(const ds::Shape& shape, ds::DType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-100, 100);
  ds::Tensor t = ds::Tensor::empty(shape, dtype);
  ds::visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_same_v<T, bool>)
        p[i] = (rng() & 1) != 0;
      else
        p[i] = static_cast<T>(static_cast<float>(u(rng)));
    }
  });
  return t;
}

bool same_bytes(const ds::Tensor& a, const ds::Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const ds::Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A file with the given JSON header text (unpadded) and `data_bytes` zero bytes.
std::string raw_file(const std::string& header, size_t data_bytes) {
  const uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + std::string(data_bytes, '\0');
}

// Expects load_safetensors to throw IOError whose message has the path and `what`.
void expect_io_error(const std::string& path, const std::string& what) {
  try {
    ds::load_safetensors(path);
    FAIL() << "no error for " << what;
  } catch (const ds::IOError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

}  // namespace

TEST_F(SafetensorsTest, RoundTripsEveryDTypeAndEdgeShapes) {
  ds::TensorMap tensors;
  uint32_t seed = 1;
  for (ds::DType dt : ds::kAllDTypes) {
    const std::string n = ds::dtype_name(dt);
    tensors[n + ".matrix"] = random_tensor({3, 5}, dt, seed++);
    tensors[n + ".scalar"] = random_tensor({}, dt, seed++);
    tensors[n + ".empty"] = random_tensor({0, 4}, dt, seed++);
    tensors[n + ".odd"] = random_tensor({7}, dt, seed++);
  }
  const ds::SafetensorsMetadata meta{{"format", "pt"}, {"epoch", "3"}};
  ds::save_safetensors(file("a.safetensors"), tensors, meta);

  const ds::TensorMap back = ds::load_safetensors(file("a.safetensors"));
  ASSERT_EQ(back.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(back.count(name)) << name;
    EXPECT_TRUE(same_bytes(back.at(name), t)) << name;
  }
  EXPECT_EQ(ds::load_safetensors_metadata(file("a.safetensors")), meta);
}

TEST_F(SafetensorsTest, SavesNonContiguousViewsByValue) {
  ds::Tensor m = random_tensor({4, 6}, ds::DType::Float32, 7);
  ds::Tensor t = m.transpose(0, 1);
  ds::Tensor s = m.slice(1, 1, 6, 2);
  ds::save_safetensors(file("v.safetensors"), {{"t", t}, {"s", s}});
  const auto back = ds::load_safetensors(file("v.safetensors"));
  EXPECT_TRUE(same_bytes(back.at("t"), t));
  EXPECT_TRUE(same_bytes(back.at("s"), s));
  EXPECT_EQ(back.at("t").shape(), (ds::Shape{6, 4}));
}

TEST_F(SafetensorsTest, LayoutFollowsTheFormat) {
  ds::save_safetensors(file("l.safetensors"),
                       {{"a", random_tensor({3}, ds::DType::UInt8, 1)},
                        {"b", random_tensor({2}, ds::DType::Float64, 2)},
                        {"c", random_tensor({1}, ds::DType::Float16, 3)}},
                       {{"k", "v"}});
  const std::string bytes = read_file(file("l.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);  // the data section starts 8-byte aligned
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  EXPECT_EQ(header["b"]["dtype"], "F64");
  EXPECT_EQ(header["b"]["shape"], nlohmann::json::array({2}));
  // Wider dtypes first, each tensor aligned to its element size, no holes.
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json::array({0, 16}));
  EXPECT_EQ(header["c"]["data_offsets"], nlohmann::json::array({16, 18}));
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json::array({18, 21}));
  EXPECT_EQ(bytes.size(), 8 + n + 21);
}

TEST_F(SafetensorsTest, OverwritesAtomicallyAndLeavesNoTemporaries) {
  const std::string path = file("w.safetensors");
  ds::save_safetensors(path, {{"x", ds::Tensor{1, 2}}});
  ds::save_safetensors(path, {{"y", ds::Tensor{3, 4, 5}}});
  const auto back = ds::load_safetensors(path);
  EXPECT_EQ(back.count("x"), 0u);
  EXPECT_EQ(back.at("y").numel(), 3);
  // A failed write (the target is a directory) keeps nothing half-written.
  fs::create_directories(file("taken"));
  EXPECT_THROW(ds::save_safetensors(file("taken"), {{"x", ds::Tensor{1}}}), ds::IOError);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    ++entries;
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
  EXPECT_EQ(entries, 2);
}

TEST_F(SafetensorsTest, RejectsBadInputsToSave) {
  EXPECT_THROW(ds::save_safetensors(file("m.safetensors"), {{"__metadata__", ds::Tensor{1}}}),
               ds::IOError);
  EXPECT_THROW(ds::save_safetensors(file("u.safetensors"), {{"x", ds::Tensor()}}), ds::IOError);
  ds::Graph g;
  ds::Tensor p = g.placeholder("p", {2});
  EXPECT_THROW(ds::save_safetensors(file("s.safetensors"), {{"p", p}}), ds::IOError);
  EXPECT_THROW(ds::save_safetensors(file("no/such/dir/x.safetensors"), {{"x", ds::Tensor{1}}}),
               ds::IOError);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  EXPECT_THROW(ds::load_safetensors(file("absent.safetensors")), ds::NotFoundError);
}

TEST_F(SafetensorsTest, TruncatedFilesNameTheProblem) {
  const std::string good = file("good.safetensors");
  ds::save_safetensors(good, {{"w", random_tensor({16}, ds::DType::Float32, 3)}});
  const std::string bytes = read_file(good);

  write_file(file("t4"), bytes.substr(0, 4));
  expect_io_error(file("t4"), "too short for the 8-byte header length");
  write_file(file("t20"), bytes.substr(0, 20));
  expect_io_error(file("t20"), "bad header length");
  write_file(file("tdata"), bytes.substr(0, bytes.size() - 1));
  expect_io_error(file("tdata"), "out of range");
}

TEST_F(SafetensorsTest, MalformedHeadersNameTheProblem) {
  const std::string p = file("bad.safetensors");
  write_file(p, raw_file("{\"a\": {\"dtype\": \"F32\", ", 0));
  expect_io_error(p, "JSON error");
  write_file(p, raw_file("[1, 2]", 0));
  expect_io_error(p, "not an object");
  write_file(p, raw_file(R"({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}})", 4));
  expect_io_error(p, "\"Q7\" is unknown");
  write_file(p, raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 8));
  expect_io_error(p, "need 8");
  write_file(p, raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4));
  expect_io_error(p, "out of range");
  write_file(p, raw_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                         8));
  expect_io_error(p, "overlapping");
  write_file(p, raw_file(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4));
  expect_io_error(p, "non-negative integer");
  write_file(p, raw_file(R"({"a": {"dtype": "F32", "shape": [1]}})", 4));
  expect_io_error(p, "no \"data_offsets\"");
  write_file(p, raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", 4));
  expect_io_error(p, "end before they begin");
  write_file(p, raw_file(R"({"__metadata__": {"k": 3}})", 0));
  expect_io_error(p, "metadata value of 'k' is not a string");
  write_file(p, raw_file(R"({"a": {"dtype": "BOOL", "shape": [1], "data_offsets": [0, 1]}})", 0) +
                    std::string(1, '\x07'));
  expect_io_error(p, "bytes other than 0 and 1");
  write_file(p, raw_file(R"({"a": {"dtype": "U8", "shape": [4611686018427387904, 8],
                                   "data_offsets": [0, 1]}})", 1));
  expect_io_error(p, "overflows");
}

TEST_F(SafetensorsTest, DTypeCodes) {
  for (ds::DType dt : ds::kAllDTypes)
    EXPECT_EQ(ds::dtype_from_safetensors_code(ds::safetensors_dtype_code(dt)), dt);
  EXPECT_THROW(ds::dtype_from_safetensors_code("I16"), ds::ValueError);
}
