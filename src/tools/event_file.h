// One TensorBoard event file and the background thread that writes it. Callers
// hand over encoded Events; the thread frames and writes them every flush_secs
// or once max_queue are pending, so logging never waits on the disk.
#pragma once

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ds::tensorboard {

class EventFileWriter {
 public:
  // Creates `dir` and events.out.tfevents.<time>.<host>.<pid>.<n><suffix> in it,
  // and writes the file_version event at once (so TensorBoard finds the run).
  EventFileWriter(const std::string& dir, const std::string& suffix, double flush_secs,
                  int max_queue);
  ~EventFileWriter();  // close(); errors are reported on stderr
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  void add(std::string event);  // an encoded Event
  void flush();                 // writes everything added so far; throws IOError
  void close();
  const std::string& path() const { return path_; }

 private:
  void run();
  void write_pending();  // takes what is pending and writes it (holds file_mu_)
  void rethrow_error_locked() const;

  std::string path_;
  double flush_secs_;
  size_t max_queue_;

  std::mutex file_mu_;  // serializes writers of file_ (the thread, flush, close)
  std::FILE* file_ = nullptr;

  std::mutex mu_;  // guards the fields below
  std::condition_variable wake_;
  std::vector<std::string> pending_;
  std::string error_;  // a write error from the thread, reported to the next caller
  bool closing_ = false;
  bool closed_ = false;
  std::thread thread_;
};

}  // namespace ds::tensorboard
