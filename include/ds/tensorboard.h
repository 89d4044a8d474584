// ds::tensorboard — writes TensorBoard event files natively (no TensorFlow, no
// protobuf library): scalars, histograms, text and graphs, readable by the
// `tensorboard` tool. Names and arguments follow torch.utils.tensorboard.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ds/graph.h"
#include "ds/tensor.h"

namespace ds::nn {
class Module;
}

namespace ds::tensorboard {

// A histogram in TensorBoard's form: bucket i counts values in
// [bucket_limits[i-1], bucket_limits[i]).
struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limits;
  std::vector<double> bucket_counts;

  // TensorBoard's default buckets (edges growing by 10% from 1e-12 to 1e20, both
  // signs, and 0); runs of empty buckets are merged as TensorFlow does. Throws
  // ValueError for an empty tensor or one with NaN.
  static Histogram from_values(const Tensor& values);
};

// The bucket edges TensorFlow and TensorBoard use by default.
const std::vector<double>& default_bucket_limits();

struct SummaryWriterOptions {
  double flush_secs = 120;  // the background thread writes pending events this often
  int max_queue = 10;       // ... or as soon as this many are pending
  std::string filename_suffix;
  // Resuming a run: events at steps >= purge_step from earlier runs are hidden by
  // TensorBoard (a SessionLog START is written at this step).
  std::optional<int64_t> purge_step;
};

// The graph add_graph(model, ...) writes, for inspection.
Graph module_graph(nn::Module& model, const Shape& input_shape,
                   DType input_dtype = DType::Float32);

class EventFileWriter;

class SummaryWriter {
 public:
  // Creates `logdir` if needed and a new event file in it,
  // events.out.tfevents.<unix time>.<hostname>.<pid>.<n><suffix>.
  explicit SummaryWriter(const std::string& logdir, SummaryWriterOptions options = {});
  ~SummaryWriter();  // flushes and closes
  SummaryWriter(const SummaryWriter&) = delete;
  SummaryWriter& operator=(const SummaryWriter&) = delete;

  // `wall_time` defaults to now (seconds since the Unix epoch).
  void add_scalar(const std::string& tag, double value, int64_t step,
                  std::optional<double> wall_time = std::nullopt);
  // One run per key, in sub-directories <logdir>/<main_tag>_<key> (as PyTorch),
  // so TensorBoard draws them in one chart tagged `main_tag`.
  void add_scalars(const std::string& main_tag, const std::map<std::string, double>& values,
                   int64_t step, std::optional<double> wall_time = std::nullopt);
  void add_histogram(const std::string& tag, const Tensor& values, int64_t step,
                     std::optional<double> wall_time = std::nullopt);
  void add_histogram(const std::string& tag, const Histogram& histogram, int64_t step,
                     std::optional<double> wall_time = std::nullopt);
  // Text (markdown) for the Text dashboard.
  void add_text(const std::string& tag, const std::string& text, int64_t step,
                std::optional<double> wall_time = std::nullopt);
  // The graph for the Graphs dashboard: one node per ds node with its op, inputs,
  // output shapes and dtypes and attributes. Node names with dots
  // ("encoder.fc1") become name scopes ("encoder/fc1"), which TensorBoard folds.
  void add_graph(const Graph& graph);
  // The graph of a model: forward() runs once on a symbolic input of this shape
  // (ds::dyn for the batch) with the parameters as named constants; ops reading
  // a parameter are scoped by their module ("conv1/conv2d_3").
  void add_graph(nn::Module& model, const Shape& input_shape,
                 DType input_dtype = DType::Float32);

  // Writes every pending event to the file now.
  void flush();
  // Flushes and closes this writer and its sub-run writers; later add_* throw.
  void close();

  const std::string& logdir() const { return logdir_; }
  std::string file_path() const;  // the main event file

 private:
  EventFileWriter& sub_writer(const std::string& dir);

  std::string logdir_;
  SummaryWriterOptions options_;
  std::unique_ptr<EventFileWriter> writer_;
  std::mutex sub_writers_mu_;
  std::map<std::string, std::unique_ptr<EventFileWriter>> sub_writers_;  // add_scalars runs
};

}  // namespace ds::tensorboard
