#include "cli/train_tools.h"

#include <cstdio>
#include <iostream>

namespace ds::cli {
namespace {

std::unique_ptr<tensorboard::SummaryWriter> open_writer(const std::string& dir) {
  if (dir.empty()) return nullptr;
  return std::make_unique<tensorboard::SummaryWriter>(dir);
}

}  // namespace

bool parse_train_tools_flag(TrainToolsOptions& o, int argc, char** argv, int& i) {
  const std::string flag = argv[i];
  if (flag == "--profile") {
    o.profile = true;
    return true;
  }
  if (flag != "--tensorboard" && flag != "--log-every" && flag != "--debug-every" &&
      flag != "--profile-steps")
    return false;
  DS_CHECK(i + 1 < argc, ValueError, "option ", flag, " needs a value");
  const std::string v = argv[++i];
  if (flag == "--tensorboard") {
    DS_CHECK(!v.empty(), ValueError, "option --tensorboard needs a directory");
    o.tensorboard = v;
    return true;
  }
  const int64_t min = flag == "--debug-every" ? 0 : 1;
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DS_CHECK(used == v.size() && n >= min, ValueError, "option ", flag, " expects an integer >= ",
           min, ", got '", v, "'");
  (flag == "--log-every" ? o.log_every : flag == "--debug-every" ? o.debug_every : o.profile_steps) = n;
  return true;
}

TrainTools::TrainTools(TrainToolsOptions options, nn::Module& model, optim::TrainStep& step,
                       optim::LossFn loss, const Shape& input_shape)
    : o_(std::move(options)),
      writer_(open_writer(o_.tensorboard)),
      debugger_(model, step, std::move(loss), writer_.get(),
                {.every = writer_ ? o_.debug_every : 0}) {
  if (!writer_) return;
  writer_->add_graph(model, input_shape);
  monitor_ = std::make_unique<ResourceMonitor>();
}

TrainTools::~TrainTools() = default;

optim::StepResult TrainTools::step(const Tensor& input, const Tensor& target) {
  if (o_.profile && !profiled_ && !profiler_ && debugger_.steps() == kProfileWarmup)
    profiler_ = std::make_unique<Profiler>();
  optim::StepResult r = debugger_.step(input, target);
  if (profiler_ && debugger_.steps() >= kProfileWarmup + o_.profile_steps) finish_profile();
  return r;
}

void TrainTools::log(int64_t step, double loss, double accuracy_pct, double lr,
                     int64_t batch_images) {
  images_since_log_ += batch_images;
  if (!writer_ || step % o_.log_every != 0) return;
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(now - last_log_).count();
  writer_->add_scalar("train/loss", loss, step);
  writer_->add_scalar("train/accuracy", accuracy_pct, step);
  writer_->add_scalar("train/lr", lr, step);
  if (secs > 0) writer_->add_scalar("train/images_per_sec", double(images_since_log_) / secs, step);
  images_since_log_ = 0;
  last_log_ = now;
  monitor_next_ = monitor_->write_scalars(*writer_, monitor_next_);
}

void TrainTools::log_test_accuracy(int64_t step, double accuracy_pct) {
  if (writer_) writer_->add_scalar("test/accuracy", accuracy_pct, step);
}

void TrainTools::finish_profile() {
  profiler_->stop();
  profiled_ = true;
  if (monitor_) monitor_->export_counters(*profiler_);
  std::printf("profile of %lld steps after %lld warm-up steps:\n%s",
              (long long)(debugger_.steps() - kProfileWarmup), (long long)kProfileWarmup,
              profiler_->key_averages().table("self_time", 30).c_str());
  const std::string path =
      (o_.tensorboard.empty() ? std::string(".") : o_.tensorboard) + "/ds_profile.json";
  profiler_->export_chrome_trace(path);
  std::printf("chrome trace: %s\n", path.c_str());
  profiler_.reset();
}

void TrainTools::finish() {
  if (profiler_) finish_profile();
  if (o_.profile && !profiled_)
    std::cerr << "ds train: --profile: the run ended within the " << kProfileWarmup
              << " warm-up steps; nothing was profiled\n";
  if (!writer_) return;
  monitor_->sample_now();
  monitor_next_ = monitor_->write_scalars(*writer_, monitor_next_);
  writer_->flush();
}

}  // namespace ds::cli
