// ds serve over loopback: the v2 endpoints, batching through HTTP, clean errors
// for bad input, metrics, and shutdown. The server runs inside the test on an
// ephemeral port; the client is cpp-httplib's.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "ds/ds.h"
#include "ds/model_io.h"
#include "ds/serve.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A repository with one model: y = 3 * relu(x), x: float32[batch, 3].
fs::path make_repository(const std::string& name, const std::string& config) {
  fs::path repo = fs::temp_directory_path() / ("ds_serve_" + name);
  fs::remove_all(repo);
  ds::Graph g;
  ds::Tensor x = g.placeholder("x", {ds::dyn, 3});
  g.output(ds::relu(x) * 3.0, "y");
  ds::save(g, (repo / "relu3" / "model").string());
  std::ofstream(repo / "relu3" / "config.json") << config;
  return repo;
}

class ServeHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = make_repository(::testing::UnitTest::GetInstance()->current_test_info()->name(),
                            R"({"max_batch_size": 8, "priority_levels": 2, "max_queue_delay_us": 0})");
    ds::serve::ServerOptions o;
    o.model_repository = repo_.string();
    o.port = 0;
    o.max_body_bytes = 4096;
    server_ = std::make_unique<ds::serve::Server>(o);
    port_ = server_->start();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client_->set_tcp_nodelay(true);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(repo_);
  }
  httplib::Result infer(const std::string& body, const std::string& model = "relu3") {
    return client_->Post(("/v2/models/" + model + "/infer").c_str(), body, "application/json");
  }
  // Asserts `status` and an {"error": ...} body containing `needle`.
  void expect_error(const httplib::Result& r, int status, const std::string& needle) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    EXPECT_NE(j["error"].get<std::string>().find(needle), std::string::npos) << j["error"];
  }

  fs::path repo_;
  std::unique_ptr<ds::serve::Server> server_;
  int port_ = 0;
  std::unique_ptr<httplib::Client> client_;
};

const char* kOneRow =
    R"({"id": "r1", "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[-1, 2, 3]]}]})";

}  // namespace

TEST_F(ServeHttp, HealthAndMetadata) {
  auto r = client_->Get("/v2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["name"], "deepseek");
  EXPECT_EQ(client_->Get("/v2/health/live")->status, 200);
  EXPECT_EQ(client_->Get("/v2/health/ready")->status, 200);
  EXPECT_EQ(client_->Get("/v2/models/relu3/ready")->status, 200);
  r = client_->Get("/v2/models/relu3");
  ASSERT_EQ(r->status, 200);
  json m = json::parse(r->body);
  EXPECT_EQ(m["inputs"][0]["name"], "x");
  EXPECT_EQ(m["inputs"][0]["datatype"], "FP32");
  EXPECT_EQ(m["inputs"][0]["shape"], json::parse("[-1, 3]"));
  EXPECT_EQ(m["outputs"][0]["name"], "y");
  EXPECT_EQ(m["parameters"]["max_batch_size"], 8);
  expect_error(client_->Get("/v2/models/nope"), 404, "unknown model 'nope'");
  expect_error(client_->Get("/v2/models/nope/ready"), 404, "nope");
  expect_error(client_->Get("/v3/whatever"), 404, "no endpoint GET /v3/whatever");
}

TEST_F(ServeHttp, InferReturnsV2Tensors) {
  auto r = infer(kOneRow);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["model_name"], "relu3");
  EXPECT_EQ(j["id"], "r1");
  EXPECT_EQ(j["outputs"][0]["name"], "y");
  EXPECT_EQ(j["outputs"][0]["datatype"], "FP32");
  EXPECT_EQ(j["outputs"][0]["shape"], json::parse("[1, 3]"));
  EXPECT_EQ(j["outputs"][0]["data"], json::parse("[0.0, 6.0, 9.0]"));
  // Flat data, batch 2, priority and a generous timeout; the versioned path.
  r = client_->Post("/v2/models/relu3/versions/1/infer",
                    R"({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                        "data": [1, -2, 3, 4, 5, -6]}],
                        "parameters": {"priority": 1, "timeout": 10000000},
                        "outputs": [{"name": "y"}]})",
                    "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["outputs"][0]["data"], json::parse("[3.0, 0.0, 9.0, 12.0, 15.0, 0.0]"));
}

TEST_F(ServeHttp, BadRequestsGetCleanErrors) {
  expect_error(infer("{not json"), 400, "not valid JSON");
  expect_error(infer("[1, 2]"), 400, "JSON object");
  expect_error(infer(R"({"inputs": 3})"), 400, "\"inputs\" must be an array");
  expect_error(infer(R"({"inputs": []})"), 400, "input 'x' is missing");
  expect_error(infer(R"({"inputs": [{"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})"),
               400, "not an input of the model");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]})"),
               400, "the model expects FP32");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP99", "data": [1, 2, 3]}]})"),
               400, "unknown datatype");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})"),
               400, "the model expects [None, 3]");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]})"),
               400, "has 2 elements");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, "a", 3]}]})"),
               400, "element 1 is not a number");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[[[1, 2, 3]]]]}]})"),
               400, "nested deeper");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [9, 3], "datatype": "FP32", "data": []}]})"),
               400, "max_batch_size");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                         "parameters": {"priority": 3}})"),
               400, "priority must be 1..2");
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                         "parameters": {"timeout": -5}})"),
               400, "timeout");
  expect_error(infer(kOneRow, "nope"), 404, "unknown model");
  expect_error(infer(std::string(5000, ' ')), 413, "exceeds the limit of 4096 bytes");
  // A deadline of 1 us has passed before the request is queued: 504, not a late answer.
  expect_error(infer(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                         "parameters": {"timeout": 1}})"),
               504, "deadline");
  // The server still works after all of that.
  EXPECT_EQ(infer(kOneRow)->status, 200);
}

TEST_F(ServeHttp, ConcurrentClientsAreBatchedAndCounted) {
  constexpr int kThreads = 8, kEach = 10;
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", port_);
      c.set_tcp_nodelay(true);
      for (int i = 0; i < kEach; ++i) {
        const float v = static_cast<float>(t * 100 + i);
        json body = {{"inputs", {{{"name", "x"}, {"shape", {1, 3}}, {"datatype", "FP32"}, {"data", {v, -v, 1}}}}}};
        auto r = c.Post("/v2/models/relu3/infer", body.dump(), "application/json");
        if (r && r->status == 200 &&
            json::parse(r->body)["outputs"][0]["data"] == json::array({3 * v, 0.0, 3.0}))
          ++ok;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok, kThreads * kEach);
  const std::string metrics = client_->Get("/metrics")->body;
  EXPECT_NE(metrics.find("ds_inference_request_success_total{model=\"relu3\"} 80"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("ds_inference_count_total{model=\"relu3\"} 80"), std::string::npos);
  EXPECT_NE(metrics.find("ds_queue_depth{model=\"relu3\",level=\"2\"} 0"), std::string::npos);
  EXPECT_NE(metrics.find("ds_inference_latency_us{model=\"relu3\",quantile=\"0.99\"}"), std::string::npos);
  EXPECT_NE(metrics.find("# TYPE ds_inference_latency_us summary"), std::string::npos);
  EXPECT_NE(metrics.find("ds_device_utilization{device=\"cpu\"}"), std::string::npos);
}

// A raw connection that sends `bytes`, then stays open (slow client) or closes
// before reading the answer (dropped client).
int raw_send(int port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  return fd;
}

TEST_F(ServeHttp, SlowAndDroppedClientsDoNotBlockOthers) {
  // Slow: headers promise a body that never comes.
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i)
    slow.push_back(raw_send(port_, "POST /v2/models/relu3/infer HTTP/1.1\r\nHost: x\r\n"
                                   "Content-Length: 100\r\n\r\n{\"inp"));
  // Dropped: a full request whose client is gone before the answer.
  for (int i = 0; i < 4; ++i) {
    const std::string body = kOneRow;
    ::close(raw_send(port_, "POST /v2/models/relu3/infer HTTP/1.1\r\nHost: x\r\nContent-Type: "
                            "application/json\r\nContent-Length: " + std::to_string(body.size()) +
                                "\r\n\r\n" + body));
  }
  for (int i = 0; i < 5; ++i) EXPECT_EQ(infer(kOneRow)->status, 200);
  for (int fd : slow) ::close(fd);
  EXPECT_EQ(client_->Get("/v2/health/ready")->status, 200);
}

TEST_F(ServeHttp, StopAnswersInFlightThenCloses) {
  std::atomic<int> answered{0}, other{0}, running{4};
  std::atomic<bool> go{true};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      httplib::Client c("127.0.0.1", port_);
      while (go) {
        auto r = c.Post("/v2/models/relu3/infer", kOneRow, "application/json");
        if (!r) break;  // the listener closed
        (r->status == 200 || r->status == 503 ? answered : other)++;
      }
      --running;
    });
  while (answered < 20 && running > 0) std::this_thread::yield();
  EXPECT_GE(answered, 20) << "the clients stopped before the server did";
  server_->stop();
  go = false;
  for (auto& t : ts) t.join();
  EXPECT_EQ(other, 0);
  EXPECT_FALSE(httplib::Client("127.0.0.1", port_).Get("/v2/health/live"));
}

TEST(ServeConfig, LearningPoliciesServeCorrectAnswers) {
  for (const char* config : {R"({"policy": "qlearning", "max_batch_size": 4})",
                             R"({"policy": "aimd", "latency_target_us": 100000})"}) {
    const fs::path repo = make_repository("policy", config);
    ds::serve::ServerOptions o;
    o.model_repository = repo.string();
    o.port = 0;
    ds::serve::Server server(o);
    httplib::Client c("127.0.0.1", server.start());
    for (int i = 0; i < 20; ++i) {
      auto r = c.Post("/v2/models/relu3/infer", kOneRow, "application/json");
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 200) << config << ": " << r->body;
      EXPECT_EQ(json::parse(r->body)["outputs"][0]["data"], json::parse("[0.0, 6.0, 9.0]"));
    }
    server.stop();
    fs::remove_all(repo);
  }
}

TEST(ServeConfig, ReadsAndValidatesModelConfig) {
  fs::path dir = fs::temp_directory_path() / "ds_serve_config" / "m";
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"max_batch_size": 16, "max_queue_delay_us": 500,
    "preferred_batch_sizes": [4, 8], "priority_levels": 4, "default_timeout_us": 1000,
    "instance_count": 2, "target": "cpu"})";
  auto c = ds::serve::read_model_config(dir.string());
  EXPECT_EQ(c.name, "m");
  EXPECT_EQ(c.max_batch_size, 16);
  EXPECT_EQ(c.preferred_batch_sizes, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(c.default_priority, 4);
  EXPECT_EQ(c.instance_count, 2);
  std::ofstream(dir / "config.json") << R"({"max_batch_size": 0})";
  EXPECT_THROW(ds::serve::read_model_config(dir.string()), ds::ValueError);
  std::ofstream(dir / "config.json") << R"({"max_batch_sise": 4})";
  EXPECT_THROW(ds::serve::read_model_config(dir.string()), ds::ValueError);
  std::ofstream(dir / "config.json") << R"({"max_batch_size": 4, "preferred_batch_sizes": [8]})";
  EXPECT_THROW(ds::serve::read_model_config(dir.string()), ds::ValueError);
  std::ofstream(dir / "config.json") << R"({"policy": "aimd"})";
  EXPECT_THROW(ds::serve::read_model_config(dir.string()), ds::ValueError);  // no latency target
  std::ofstream(dir / "config.json") << R"({"policy": "fastest"})";
  EXPECT_THROW(ds::serve::read_model_config(dir.string()), ds::ValueError);
  std::ofstream(dir / "config.json") << R"({"policy": "aimd", "latency_target_us": 5000})";
  EXPECT_EQ(ds::serve::read_model_config(dir.string()).policy, "aimd");
  fs::remove_all(dir.parent_path());
  ds::serve::ServerOptions o;
  o.model_repository = "/nonexistent/repo";
  EXPECT_THROW(ds::serve::Server s(o), ds::NotFoundError);
}
