// ds::data — datasets, the IDX (MNIST / Fashion-MNIST) reader and a DataLoader
// that shuffles (seeded), batches and prefetches on a background thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ds/tensor.h"

namespace ds::data {

// One example, or one batch: a tensor per field (e.g. {image, label}).
using Example = std::vector<Tensor>;

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;
  // The examples at `indices` stacked field by field along a new leading axis.
  // The default stacks get(i); datasets held in memory override it with a gather.
  virtual Example get_batch(std::span<const int64_t> indices) const;
};

// Examples are rows (index along axis 0) of equally long tensors.
class TensorDataset : public Dataset {
 public:
  explicit TensorDataset(std::vector<Tensor> tensors);
  int64_t size() const override { return size_; }
  Example get(int64_t index) const override;  // views of the rows
  Example get_batch(std::span<const int64_t> indices) const override;
  const std::vector<Tensor>& tensors() const { return tensors_; }

 private:
  std::vector<Tensor> tensors_;  // contiguous
  int64_t size_ = 0;
};

// Reads an IDX file (gzip-compressed or plain, told apart by content). Element
// types map to ds dtypes: ubyte→uint8, byte→int8, short→int32, int→int32,
// float→float32, double→float64. A truncated or malformed file throws IOError
// naming the file and what is wrong (magic, dimensions, sizes).
Tensor read_idx(const std::string& path);

// Where the Debian package dataset-fashion-mnist installs the files.
inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// Fashion-MNIST (or MNIST: same files) from `dir`, `{train,t10k}-{images-idx3,
// labels-idx1}-ubyte[.gz]`: images float32 [N, 1, 28, 28] scaled to [0, 1] (as
// torchvision's ToTensor) and labels int64 [N]. NotFoundError if files are missing.
std::shared_ptr<TensorDataset> fashion_mnist(const std::string& dir = kFashionMnistDir,
                                             bool train = true);

struct DataLoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;
  uint64_t seed = 0;       // shuffling order of epoch e depends only on (seed, e)
  bool drop_last = false;  // drop a last batch smaller than batch_size
  // Batches prepared ahead on a background thread (a bounded queue); 0 loads each
  // batch on the caller's thread. The order never depends on it.
  int prefetch = 2;
};

class DataLoader {
 public:
  // One pass over the data. Destroying it early stops its worker thread.
  class Epoch {
   public:
    ~Epoch();
    Epoch(Epoch&&) noexcept;
    Epoch& operator=(Epoch&&) noexcept;
    // The next batch, or nullopt at the end. Rethrows an error of the dataset.
    std::optional<Example> next();
    int64_t index() const;  // which epoch this is

   private:
    friend class DataLoader;
    struct State;
    explicit Epoch(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
  };

  class Iterator {
   public:
    using value_type = Example;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    const Example& operator*() const { return *batch_; }
    const Example* operator->() const { return &*batch_; }
    Iterator& operator++();
    bool operator==(std::default_sentinel_t) const { return !batch_.has_value(); }

   private:
    friend class DataLoader;
    explicit Iterator(std::shared_ptr<Epoch> epoch);
    std::shared_ptr<Epoch> epoch_;
    std::optional<Example> batch_;
  };

  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});

  int64_t num_batches() const;  // per epoch
  const DataLoaderOptions& options() const { return options_; }
  const std::shared_ptr<const Dataset>& dataset() const { return dataset_; }
  // The example order of epoch `epoch`: a seeded permutation, or 0..n-1.
  std::vector<int64_t> order(int64_t epoch) const;
  // Starts the next epoch (0, 1, 2, ...; set_epoch moves the counter, e.g. on resume).
  Epoch epoch();
  void set_epoch(int64_t epoch) { next_epoch_ = epoch; }
  // `for (const Example& batch : loader)` runs one epoch.
  Iterator begin();
  std::default_sentinel_t end() const { return {}; }

 private:
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  int64_t next_epoch_ = 0;
};

}  // namespace ds::data
