// The resource monitor: /proc parsing against fixture text, NVML behind a fake
// function table, the ring buffer and the exports, and the real sampling thread.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "ds/error.h"
#include "ds/monitor.h"
#include "ds/profile.h"
#include "ds/tensorboard.h"

namespace ds {
namespace {

std::string fixture(const std::string& name) {
  const auto path = std::filesystem::path(__FILE__).parent_path() / "fixtures" / name;
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "missing fixture " << path;
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(MonitorProc, ParsesSelfStatWithParenthesesInTheName) {
  const ProcessCpuTicks t = parse_proc_self_stat(fixture("proc_self_stat_a.txt"));
  EXPECT_EQ(t.user, 1200u);
  EXPECT_EQ(t.system, 300u);
  EXPECT_THROW(parse_proc_self_stat("garbage"), IOError);
  EXPECT_THROW(parse_proc_self_stat("1 (x) S 1 2 3"), IOError);
}

TEST(MonitorProc, ParsesSystemStatFirstLineWithoutGuestTime) {
  const SystemCpuTicks t = parse_proc_stat(fixture("proc_stat_a.txt"));
  EXPECT_EQ(t.total, 95000u);  // guest (200) is already inside user
  EXPECT_EQ(t.busy, 14000u);   // minus idle 80000 and iowait 1000
  EXPECT_THROW(parse_proc_stat("intr 1 2 3\n"), IOError);
  EXPECT_THROW(parse_proc_stat("cpu 1 2\n"), IOError);
}

TEST(MonitorProc, ParsesRssAndPeakRss) {
  const ProcessMemory m = parse_proc_status(fixture("proc_self_status.txt"));
  EXPECT_EQ(m.rss_bytes, 204800 * 1024LL);
  EXPECT_EQ(m.peak_rss_bytes, 262144 * 1024LL);
  EXPECT_FALSE(parse_proc_status("Name:\tx\n").rss_bytes.has_value());
  EXPECT_THROW(parse_proc_status("VmRSS:\t12 pages\n"), IOError);
}

// A fake NVML: device 0 reports everything, device 1 has no power sensor,
// device 2's handle lookup fails.
struct FakeNvml {
  int init_result = 0;
  int inits = 0, shutdowns = 0;
  NvmlApi api() {
    NvmlApi a;
    a.init = [this] { ++inits; return init_result; };
    a.shutdown = [this] { ++shutdowns; return 0; };
    a.device_count = [](unsigned int* n) { *n = 3; return 0; };
    a.device_handle = [](unsigned int i, void** h) {
      if (i == 2) return 1;
      *h = reinterpret_cast<void*>(static_cast<uintptr_t>(0x100 + i));
      return 0;
    };
    a.utilization = [](void* h, NvmlUtilization* u) {
      *u = {h == reinterpret_cast<void*>(0x100) ? 75u : 10u, 30u};
      return 0;
    };
    a.memory = [](void*, NvmlMemory* m) {
      *m = {80ull << 30, 60ull << 30, 20ull << 30};
      return 0;
    };
    a.power_mw = [](void* h, unsigned int* mw) {
      if (h != reinterpret_cast<void*>(0x100)) return 3;  // NVML_ERROR_NOT_SUPPORTED
      *mw = 350500;
      return 0;
    };
    a.temperature = [](void*, int sensor, unsigned int* c) {
      *c = sensor == 0 ? 61 : 0;
      return 0;
    };
    a.name = [](void* h, char* buf, unsigned int len) {
      std::snprintf(buf, len, "Fake GPU %d", h == reinterpret_cast<void*>(0x100) ? 0 : 1);
      return 0;
    };
    return a;
  }
};

TEST(MonitorNvml, ReadsThroughTheFunctionTableAndSkipsUnsupported) {
  FakeNvml fake;
  {
    GpuReader reader(fake.api());
    ASSERT_EQ(reader.device_count(), 2);  // device 2's handle failed
    const auto gpus = reader.read();
    ASSERT_EQ(gpus.size(), 2u);
    EXPECT_EQ(gpus[0].name, "Fake GPU 0");
    EXPECT_EQ(gpus[0].utilization_pct, 75.0);
    EXPECT_EQ(gpus[0].memory_utilization_pct, 30.0);
    EXPECT_EQ(gpus[0].memory_used_bytes, int64_t{20} << 30);
    EXPECT_EQ(gpus[0].memory_total_bytes, int64_t{80} << 30);
    EXPECT_DOUBLE_EQ(*gpus[0].power_watts, 350.5);
    EXPECT_EQ(gpus[0].temperature_c, 61.0);
    EXPECT_EQ(gpus[1].index, 1);
    EXPECT_FALSE(gpus[1].power_watts.has_value());
    EXPECT_EQ(gpus[1].utilization_pct, 10.0);
  }
  EXPECT_EQ(fake.inits, 1);
  EXPECT_EQ(fake.shutdowns, 1);
}

TEST(MonitorNvml, FailedInitOrMissingEntriesMeanNoGpus) {
  FakeNvml fake;
  fake.init_result = 9;  // NVML_ERROR_DRIVER_NOT_LOADED
  GpuReader failed(fake.api());
  EXPECT_EQ(failed.device_count(), 0);
  EXPECT_TRUE(failed.read().empty());
  FakeNvml full;
  NvmlApi partial = full.api();
  partial.power_mw = nullptr;
  partial.name = nullptr;
  GpuReader reader(partial);
  const auto gpus = reader.read();
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].name, "GPU 0");
  EXPECT_FALSE(gpus[0].power_watts.has_value());
  EXPECT_TRUE(gpus[0].temperature_c.has_value());
}

// A monitor over the fixtures: the first sample reads the "_a" files, later ones
// the "_b" files, 4 s apart.
struct FixtureMonitor {
  FakeNvml nvml;
  int64_t now = 0;
  bool second = false;
  std::unique_ptr<ResourceMonitor> monitor;

  explicit FixtureMonitor(size_t capacity = 16) {
    MonitorOptions opt;
    opt.start_thread = false;
    opt.capacity = capacity;
    opt.nvml = nvml.api();
    opt.clock = [this] { return now; };
    opt.read_file = [this](const std::string& path) {
      const std::string suffix = second ? "_b.txt" : "_a.txt";
      if (path == "/proc/self/stat") return fixture("proc_self_stat" + suffix);
      if (path == "/proc/stat") return fixture("proc_stat" + suffix);
      if (path == "/proc/self/status") return fixture("proc_self_status.txt");
      return std::string();
    };
    monitor = std::make_unique<ResourceMonitor>(opt);
  }
  ResourceSample next() {
    now += 4'000'000'000;
    ResourceSample s = monitor->sample_now();
    second = true;
    return s;
  }
};

TEST(Monitor, CpuPercentFromTickDeltas) {
  FixtureMonitor fm;
  const ResourceSample first = fm.next();
  EXPECT_FALSE(first.process_cpu_pct.has_value());  // no previous sample yet
  EXPECT_EQ(first.rss_bytes, 204800 * 1024LL);
  EXPECT_EQ(first.gpus.size(), 2u);
  const ResourceSample second = fm.next();
  // 200 ticks of CPU time over 4 s of wall time.
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  EXPECT_DOUBLE_EQ(*second.process_cpu_pct, 100.0 * 200 / ticks / 4.0);
  EXPECT_DOUBLE_EQ(*second.system_cpu_pct, 50.0);  // busy +1000 of +2000 ticks
  EXPECT_EQ(fm.monitor->latest().time_ns, second.time_ns);
  EXPECT_EQ(fm.monitor->gpu_count(), 2);
}

TEST(Monitor, RingBufferKeepsTheNewestAndScalarsCarryTheirStep) {
  FixtureMonitor fm(3);
  for (int i = 0; i < 5; ++i) fm.next();
  const auto samples = fm.monitor->samples();
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples.front().time_ns, 12'000'000'000);
  std::map<std::string, std::vector<std::pair<double, int64_t>>> scalars;
  auto sink = [&](const std::string& tag, double v, int64_t step) {
    scalars[tag].emplace_back(v, step);
  };
  EXPECT_EQ(fm.monitor->write_scalars(sink), 5);
  ASSERT_EQ(scalars["monitor/gpu0/power_watts"].size(), 3u);
  EXPECT_EQ(scalars["monitor/gpu0/power_watts"][0], std::make_pair(350.5, int64_t{2}));
  ASSERT_EQ(scalars["monitor/rss_bytes"].size(), 3u);
  EXPECT_EQ(scalars["monitor/rss_bytes"].back().second, 4);
  // Later samples read the same ticks: no time passed, so no system CPU figure.
  EXPECT_EQ(scalars.count("monitor/system_cpu_pct"), 0u);
  EXPECT_EQ(scalars.count("monitor/gpu1/power_watts"), 0u);  // unsupported: skipped
  EXPECT_EQ(scalars["monitor/rss_bytes"][0].first, 204800 * 1024.0);

  // Periodic writes pass the returned step back: each sample is written once.
  EXPECT_EQ(fm.monitor->write_scalars(sink, 5), 5);
  EXPECT_EQ(scalars["monitor/rss_bytes"].size(), 3u);
  fm.next();
  EXPECT_EQ(fm.monitor->write_scalars(sink, 5), 6);
  ASSERT_EQ(scalars["monitor/rss_bytes"].size(), 4u);
  EXPECT_EQ(scalars["monitor/rss_bytes"].back().second, 5);

  const std::string summary = fm.monitor->summary();
  EXPECT_NE(summary.find("3 samples over 8.0 s"), std::string::npos) << summary;  // 16 s .. 24 s
  EXPECT_NE(summary.find("2 GPU(s)"), std::string::npos);
  EXPECT_NE(summary.find("gpu0/temperature_c"), std::string::npos);
  EXPECT_NE(summary.find("200.0 MiB"), std::string::npos);  // RSS
  EXPECT_EQ(summary.find("gpu1/power_watts"), std::string::npos);
}

TEST(Monitor, ExportsCounterTracksIntoTheProfilerTrace) {
  FixtureMonitor fm;
  fm.next();
  fm.next();
  Profiler prof;
  prof.stop();
  fm.monitor->export_counters(prof);
  const auto trace = nlohmann::json::parse(prof.chrome_trace());
  std::map<std::string, int> tracks;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "C") continue;
    ++tracks[e["name"].get<std::string>()];
    if (e["name"] == "monitor gpu0") {
      EXPECT_EQ(e["args"]["power_watts"].get<double>(), 350.5);
    }
    if (e["name"] == "monitor gpu1") {
      EXPECT_FALSE(e["args"].contains("power_watts"));
    }
  }
  EXPECT_EQ(tracks["monitor cpu"], 1);  // the first sample has no CPU figures yet
  EXPECT_EQ(tracks["monitor memory"], 2);
  EXPECT_EQ(tracks["monitor gpu0"], 2);
  EXPECT_EQ(tracks["monitor gpu1"], 2);
}

TEST(Monitor, WritesScalarsIntoATensorBoardRun) {
  FixtureMonitor fm;
  fm.next();
  fm.next();
  const auto dir = std::filesystem::temp_directory_path() / "ds_monitor_tb_test";
  std::filesystem::remove_all(dir);
  std::string file;
  {
    tensorboard::SummaryWriter writer(dir.string());
    EXPECT_EQ(fm.monitor->write_scalars(writer), 2);
    writer.close();
    file = writer.file_path();
  }
  std::ifstream f(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::filesystem::remove_all(dir);
  EXPECT_NE(bytes.find("monitor/gpu0/power_watts"), std::string::npos);
  EXPECT_NE(bytes.find("monitor/system_cpu_pct"), std::string::npos);
  EXPECT_EQ(bytes.find("monitor/gpu1/power_watts"), std::string::npos);
}

TEST(Monitor, IntervalBelowTheMinimumIsRejected) {
  MonitorOptions opt;
  opt.interval = std::chrono::milliseconds(50);
  try {
    ResourceMonitor m(opt);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("50 ms is below the minimum of 100 ms"), std::string::npos);
  }
  opt.interval = std::chrono::milliseconds(100);
  opt.capacity = 0;
  EXPECT_THROW(ResourceMonitor m(opt), ValueError);
}

TEST(Monitor, RealSamplingThreadReadsThisProcess) {
  MonitorOptions opt;
  opt.interval = ResourceMonitor::kMinInterval;
  opt.nvml = NvmlApi{};  // an empty table: no GPU access from a unit test
  ResourceMonitor mon(opt);
  for (int i = 0; i < 100 && mon.samples().size() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  mon.stop();
  const auto samples = mon.samples();
  ASSERT_GE(samples.size(), 2u);
  const ResourceSample& s = samples.back();
  ASSERT_TRUE(s.rss_bytes.has_value());
  EXPECT_GT(*s.rss_bytes, 0);
  EXPECT_GE(*s.peak_rss_bytes, *s.rss_bytes);
  ASSERT_TRUE(s.process_cpu_pct.has_value());
  EXPECT_GE(*s.process_cpu_pct, 0.0);
  ASSERT_TRUE(s.system_cpu_pct.has_value());
  EXPECT_LE(*s.system_cpu_pct, 100.0);
  EXPECT_GT(s.time_ns, samples.front().time_ns);
  EXPECT_TRUE(s.gpus.empty());
  EXPECT_EQ(mon.summary().find("last sampling error"), std::string::npos);
}

}  // namespace
}  // namespace ds
