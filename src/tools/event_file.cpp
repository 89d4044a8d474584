#include "tools/event_file.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "ds/error.h"
#include "tools/tensorboard_proto.h"
#include "tools/tfrecord.h"

namespace ds::tensorboard {

namespace {

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

std::string event_file_name(const std::string& suffix) {
  // <n> tells apart the files of one process created in the same second. Readers load a
  // run's files in name order, so <n> is zero-padded: file 10 must sort after file 9
  // (a resumed writer's events come after the crashed one's).
  static std::atomic<int> counter{0};
  char stamp[16], n[16];
  std::snprintf(stamp, sizeof(stamp), "%010lld", static_cast<long long>(std::time(nullptr)));
  std::snprintf(n, sizeof(n), "%06d", counter++);
  return detail::cat("events.out.tfevents.", stamp, ".", hostname(), ".", ::getpid(), ".", n,
                     suffix);
}

}  // namespace

EventFileWriter::EventFileWriter(const std::string& dir, const std::string& suffix,
                                 double flush_secs, int max_queue)
    : flush_secs_(flush_secs), max_queue_(static_cast<size_t>(std::max(max_queue, 1))) {
  DS_CHECK(flush_secs > 0, ValueError, "SummaryWriter: flush_secs must be > 0, got ", flush_secs);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  DS_CHECK(!ec, IOError, "SummaryWriter: cannot create the log directory '", dir,
           "': ", ec.message());
  path_ = (std::filesystem::path(dir) / event_file_name(suffix)).string();
  file_ = std::fopen(path_.c_str(), "wb");
  DS_CHECK(file_ != nullptr, IOError, "SummaryWriter: cannot create '", path_,
           "': ", std::strerror(errno));
  const std::string first = tools::frame_record(proto::file_version_event(proto::now()));
  if (std::fwrite(first.data(), 1, first.size(), file_) != first.size() ||
      std::fflush(file_) != 0) {
    const std::string why = std::strerror(errno);
    std::fclose(file_);
    throw IOError(detail::cat("SummaryWriter: writing '", path_, "' failed: ", why));
  }
  thread_ = std::thread([this] { run(); });
}

EventFileWriter::~EventFileWriter() {
  try {
    close();
  } catch (const std::exception& e) {
    std::cerr << "ds::tensorboard: " << e.what() << "\n";
  }
}

void EventFileWriter::add(std::string event) {
  std::lock_guard lock(mu_);
  DS_CHECK(!closing_, ValueError, "SummaryWriter: '", path_, "' is closed");
  rethrow_error_locked();
  pending_.push_back(std::move(event));
  if (pending_.size() >= max_queue_) wake_.notify_one();
}

void EventFileWriter::rethrow_error_locked() const {
  if (!error_.empty()) throw IOError(error_);
}

void EventFileWriter::write_pending() {
  std::lock_guard file_lock(file_mu_);
  std::vector<std::string> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(pending_);
  }
  if (!file_) return;
  bool ok = true;
  for (const std::string& event : batch) {
    const std::string record = tools::frame_record(event);
    ok = ok && std::fwrite(record.data(), 1, record.size(), file_) == record.size();
  }
  ok = ok && std::fflush(file_) == 0;
  if (!ok) {
    const std::string why = std::strerror(errno);
    std::lock_guard lock(mu_);
    error_ = detail::cat("SummaryWriter: writing '", path_, "' failed: ", why);
  }
}

void EventFileWriter::run() {
  const auto period = std::chrono::duration<double>(flush_secs_);
  std::unique_lock lock(mu_);
  while (!closing_) {
    wake_.wait_for(lock, period, [&] { return closing_ || pending_.size() >= max_queue_; });
    lock.unlock();
    write_pending();
    lock.lock();
  }
}

void EventFileWriter::flush() {
  write_pending();
  std::lock_guard lock(mu_);
  rethrow_error_locked();
}

void EventFileWriter::close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closing_ = true;
    closed_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  write_pending();
  {
    std::lock_guard file_lock(file_mu_);
    if (std::fclose(file_) != 0) {
      std::lock_guard lock(mu_);
      if (error_.empty())
        error_ = detail::cat("SummaryWriter: closing '", path_, "' failed: ", std::strerror(errno));
    }
    file_ = nullptr;
  }
  std::lock_guard lock(mu_);
  rethrow_error_locked();
}

}  // namespace ds::tensorboard
