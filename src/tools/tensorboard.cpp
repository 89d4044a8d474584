#include "ds/tensorboard.h"

#include <algorithm>
#include <filesystem>

#include "tools/event_file.h"
#include "tools/tensorboard_proto.h"

namespace ds::tensorboard {

namespace {

double wall(std::optional<double> t) { return t ? *t : proto::now(); }

void check_tag(const std::string& tag, const char* who) {
  DS_CHECK(!tag.empty(), ValueError, "SummaryWriter::", who, ": the tag is empty");
}

}  // namespace

SummaryWriter::SummaryWriter(const std::string& logdir, SummaryWriterOptions options)
    : logdir_(logdir), options_(std::move(options)) {
  DS_CHECK(!logdir_.empty(), ValueError, "SummaryWriter: logdir is empty");
  writer_ = std::make_unique<EventFileWriter>(logdir_, options_.filename_suffix,
                                              options_.flush_secs, options_.max_queue);
  if (options_.purge_step) {
    writer_->add(proto::session_start_event(proto::now(), *options_.purge_step));
    writer_->flush();
  }
}

SummaryWriter::~SummaryWriter() = default;  // each EventFileWriter flushes and closes

std::string SummaryWriter::file_path() const { return writer_->path(); }

void SummaryWriter::add_scalar(const std::string& tag, double value, int64_t step,
                               std::optional<double> wall_time) {
  check_tag(tag, "add_scalar");
  writer_->add(proto::summary_event(wall(wall_time), step,
                                    proto::scalar_value(tag, static_cast<float>(value))));
}

EventFileWriter& SummaryWriter::sub_writer(const std::string& dir) {
  std::lock_guard lock(sub_writers_mu_);
  auto& w = sub_writers_[dir];
  if (!w)
    w = std::make_unique<EventFileWriter>(dir, options_.filename_suffix, options_.flush_secs,
                                          options_.max_queue);
  return *w;
}

void SummaryWriter::add_scalars(const std::string& main_tag,
                                const std::map<std::string, double>& values, int64_t step,
                                std::optional<double> wall_time) {
  check_tag(main_tag, "add_scalars");
  const double t = wall(wall_time);
  for (const auto& [key, value] : values) {
    std::string run = main_tag + "_" + key;
    std::replace(run.begin(), run.end(), '/', '_');
    const std::string dir = (std::filesystem::path(logdir_) / run).string();
    sub_writer(dir).add(
        proto::summary_event(t, step, proto::scalar_value(main_tag, static_cast<float>(value))));
  }
}

void SummaryWriter::add_histogram(const std::string& tag, const Tensor& values, int64_t step,
                                  std::optional<double> wall_time) {
  check_tag(tag, "add_histogram");
  Histogram h;
  try {
    h = Histogram::from_values(values);
  } catch (const ValueError& e) {
    throw ValueError(detail::cat("SummaryWriter::add_histogram('", tag, "'): ", e.what()));
  }
  add_histogram(tag, h, step, wall_time);
}

void SummaryWriter::add_histogram(const std::string& tag, const Histogram& histogram,
                                  int64_t step, std::optional<double> wall_time) {
  check_tag(tag, "add_histogram");
  DS_CHECK(histogram.bucket_limits.size() == histogram.bucket_counts.size() &&
               !histogram.bucket_limits.empty(),
           ValueError, "SummaryWriter::add_histogram('", tag, "'): ",
           histogram.bucket_limits.size(), " bucket limits for ", histogram.bucket_counts.size(),
           " counts; expected equally many, at least one");
  writer_->add(proto::summary_event(wall(wall_time), step, proto::histogram_value(tag, histogram)));
}

void SummaryWriter::add_text(const std::string& tag, const std::string& text, int64_t step,
                             std::optional<double> wall_time) {
  check_tag(tag, "add_text");
  writer_->add(proto::summary_event(wall(wall_time), step, proto::text_value(tag, text)));
}

void SummaryWriter::add_graph(const Graph& graph) {
  writer_->add(proto::graph_event(proto::now(), graph));
}

void SummaryWriter::flush() {
  writer_->flush();
  std::lock_guard lock(sub_writers_mu_);
  for (auto& [dir, w] : sub_writers_) w->flush();
}

void SummaryWriter::close() {
  writer_->close();
  std::lock_guard lock(sub_writers_mu_);
  for (auto& [dir, w] : sub_writers_) w->close();
}

}  // namespace ds::tensorboard
