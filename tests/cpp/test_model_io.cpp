// ds::save / ds::load: the graph and its weights survive a round trip and run
// to the same outputs; bad folders give clear errors; formats plug in.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "ds/ds.h"
#include "ds/model_io.h"

namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("ds_model_io_" + name);
  fs::remove_all(p);
  return p;
}

ds::Tensor random_tensor(const ds::Shape& s, uint64_t seed) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> n;
  std::vector<float> v(static_cast<size_t>(ds::numel(s)));
  for (auto& x : v) x = n(rng);
  return ds::Tensor::from_vector(v, s);
}

}  // namespace

TEST(ModelIO, RoundTripRunsToTheSameOutputs) {
  ds::Graph g;
  ds::Tensor x = g.placeholder("x", {ds::dyn, 4});
  ds::Tensor w = g.constant(random_tensor({1, 4}, 1), "w");
  ds::Tensor h = ds::relu(x * w + 0.5);
  g.output(ds::sum(h, {1}, true), "s");
  g.output(ds::leaky_relu(h - 1.0, 0.2), "l");
  const fs::path dir = fresh_dir("roundtrip");
  ds::save(g, dir.string());
  EXPECT_TRUE(fs::exists(dir / "graph.json"));
  EXPECT_TRUE(fs::exists(dir / "weights.safetensors"));

  ds::Graph back = ds::load(dir.string());
  auto a = ds::compile(g, "cpu"), b = ds::compile(back, "cpu");
  ASSERT_EQ(b.inputs().size(), 1u);
  EXPECT_EQ(b.inputs()[0].name, "x");
  EXPECT_EQ(b.inputs()[0].type.shape, (ds::Shape{ds::dyn, 4}));
  ASSERT_EQ(b.outputs().size(), 2u);
  EXPECT_EQ(b.outputs()[0].name, "s");
  EXPECT_EQ(b.outputs()[1].name, "l");
  for (int64_t batch : {1, 5}) {
    ds::Tensor in = random_tensor({batch, 4}, 10 + batch);
    auto ya = a.run(std::vector<ds::Tensor>{in}), yb = b.run(std::vector<ds::Tensor>{in});
    for (size_t o = 0; o < ya.size(); ++o) {
      ASSERT_EQ(ya[o].shape(), yb[o].shape());
      for (int64_t i = 0; i < ya[o].numel(); ++i)
        EXPECT_EQ(ds::element_as_double(ya[o], i), ds::element_as_double(yb[o], i));
    }
  }
  EXPECT_EQ(g.hash(), back.hash());
  fs::remove_all(dir);
}

TEST(ModelIO, ClearErrorsForMissingOrBrokenModels) {
  const fs::path dir = fresh_dir("broken");
  try {
    ds::load(dir.string());
    FAIL() << "expected NotFoundError";
  } catch (const ds::NotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("graph.json"), std::string::npos);
  }
  fs::create_directories(dir);
  std::ofstream(dir / "graph.json") << "{ not json";
  EXPECT_THROW(ds::load(dir.string()), ds::IOError);
  std::ofstream(dir / "graph.json") << R"({"format": "ds-model", "version": 1,
    "nodes": [{"op": "relu", "inputs": [[3, 0]]}], "outputs": []})";
  try {
    ds::load(dir.string());
    FAIL() << "expected IOError";
  } catch (const ds::IOError& e) {
    EXPECT_NE(std::string(e.what()).find("does not name an earlier value"), std::string::npos);
  }
  std::ofstream(dir / "graph.json") << R"({"format": "ds-model", "version": 1,
    "nodes": [{"op": "no_such_op"}], "outputs": []})";
  EXPECT_THROW(ds::load(dir.string()), ds::Error);
  std::ofstream(dir / "graph.json") << R"({"format": "other", "version": 1})";
  EXPECT_THROW(ds::load(dir.string()), ds::IOError);
  fs::remove_all(dir);
}

TEST(ModelIO, OtherFormatsPlugIn) {
  ds::register_model_format({"test-relu",
                             [](const std::string& p) { return p.ends_with(".relu-model"); },
                             [](const std::string&) {
                               ds::Graph g;
                               g.output(ds::relu(g.placeholder("x", {ds::dyn})), "y");
                               return g;
                             }});
  const auto names = ds::model_formats();
  EXPECT_EQ(names.front(), "ds");
  EXPECT_NE(std::find(names.begin(), names.end(), "test-relu"), names.end());
  ds::Graph g = ds::load("anything.relu-model");
  auto y = ds::compile(g, "cpu").run(std::vector<ds::Tensor>{ds::Tensor{-1.f, 2.f}});
  EXPECT_FLOAT_EQ(y[0].data<float>()[0], 0.f);
  EXPECT_FLOAT_EQ(y[0].data<float>()[1], 2.f);
}
