// Replays the fuzzer's seed corpus (fuzz/corpus/infer_request) through the v2
// request parser: each body parses or is refused with a 400, nothing else.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "serve/infer_json.h"

namespace fs = std::filesystem;

TEST(ServeFuzzCorpus, EveryBodyParsesOrIsABadRequest) {
  const fs::path dir = fs::path(__FILE__).parent_path() / ".." / ".." / "fuzz" / "corpus" / "infer_request";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  const std::vector<ds::serve::InputSpec> inputs = {{"x", ds::DType::Float32, {ds::dyn, 3}},
                                                    {"ids", ds::DType::Int64, {ds::dyn}},
                                                    {"mask", ds::DType::Bool, {ds::dyn, 2}},
                                                    {"small", ds::DType::Int8, {ds::dyn, 1}}};
  int parsed = 0, refused = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream f(e.path(), std::ios::binary);
    std::stringstream body;
    body << f.rdbuf();
    try {
      auto r = ds::serve::parse_infer_request(body.str(), inputs, {"y"}, 8);
      ASSERT_EQ(r.inputs.size(), inputs.size());
      for (const auto& t : r.inputs) EXPECT_TRUE(t.defined());
      ++parsed;
    } catch (const ds::serve::HttpError& err) {
      EXPECT_EQ(err.status(), 400) << e.path();
      ++refused;
    }
  }
  EXPECT_EQ(parsed, 1);  // valid.json
  EXPECT_GE(refused, 7);
}

TEST(ServeFuzzCorpus, ParsedValuesAreExact) {
  const std::vector<ds::serve::InputSpec> inputs = {{"ids", ds::DType::Int64, {ds::dyn}},
                                                    {"small", ds::DType::Int8, {ds::dyn, 1}}};
  auto r = ds::serve::parse_infer_request(
      R"({"inputs": [{"name": "ids", "shape": [2], "datatype": "INT64", "data": [9007199254740993, -3]},
                     {"name": "small", "shape": [2, 1], "datatype": "INT8", "data": [[-128], [127]]}]})",
      inputs, {}, 8);
  EXPECT_EQ(r.inputs[0].data<int64_t>()[0], 9007199254740993);  // above 2^53: not rounded via double
  EXPECT_EQ(r.inputs[1].data<int8_t>()[0], -128);
  EXPECT_THROW(ds::serve::parse_infer_request(
                   R"({"inputs": [{"name": "ids", "shape": [1], "datatype": "INT64", "data": [1]},
                     {"name": "small", "shape": [1, 1], "datatype": "INT8", "data": [128]}]})",
                   inputs, {}, 8),
               ds::serve::HttpError);
}
