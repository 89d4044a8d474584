#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <utility>

#include "ds/data.h"

namespace ds::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [0, n) by rejection: std::uniform_int_distribution differs between
// standard libraries, and the order must be the same everywhere.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % n;
  uint64_t r;
  do r = rng();
  while (r >= limit);
  return r % n;
}

// Prefetching is auxiliary work: let the training threads win when cores are busy.
void lower_this_thread_priority() {
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  const int nice_now = ::getpriority(PRIO_PROCESS, tid);
  if (errno == 0) (void)::setpriority(PRIO_PROCESS, tid, std::min(nice_now + 5, 19));
}

}  // namespace

struct DataLoader::Epoch::State {
  std::shared_ptr<const Dataset> dataset;
  std::vector<int64_t> order;
  int64_t batch_size = 1;
  int64_t num_batches = 0;
  int64_t epoch = 0;
  size_t prefetch = 0;
  int64_t consumed = 0;

  std::mutex mu;
  std::condition_variable space;  // the worker waits for room in `ready`
  std::condition_variable filled;  // the consumer waits for a batch
  std::deque<Example> ready;
  std::exception_ptr error;
  bool stop = false;
  bool worker_done = false;
  std::thread worker;

  Example load(int64_t b) const {
    const int64_t begin = b * batch_size;
    const int64_t end = std::min(begin + batch_size, static_cast<int64_t>(order.size()));
    return dataset->get_batch(
        std::span<const int64_t>(order.data() + begin, static_cast<size_t>(end - begin)));
  }

  void produce() {
    lower_this_thread_priority();
    for (int64_t b = 0; b < num_batches; ++b) {
      {
        std::unique_lock lock(mu);
        space.wait(lock, [&] { return stop || ready.size() < prefetch; });
        if (stop) break;
      }
      try {
        Example batch = load(b);
        std::lock_guard lock(mu);
        ready.push_back(std::move(batch));
      } catch (...) {
        std::lock_guard lock(mu);
        error = std::current_exception();
        break;
      }
      filled.notify_one();
    }
    {
      std::lock_guard lock(mu);
      worker_done = true;
    }
    filled.notify_one();
  }

  std::optional<Example> next() {
    if (prefetch == 0) {
      if (consumed == num_batches) return std::nullopt;
      return load(consumed++);
    }
    std::unique_lock lock(mu);
    filled.wait(lock, [&] { return !ready.empty() || worker_done; });
    if (ready.empty()) {
      if (error) std::rethrow_exception(std::exchange(error, nullptr));
      return std::nullopt;
    }
    Example batch = std::move(ready.front());
    ready.pop_front();
    ++consumed;
    lock.unlock();
    space.notify_one();
    return batch;
  }

  ~State() {
    {
      std::lock_guard lock(mu);
      stop = true;
    }
    space.notify_all();
    if (worker.joinable()) worker.join();
  }
};

DataLoader::Epoch::Epoch(std::unique_ptr<State> state) : state_(std::move(state)) {}
DataLoader::Epoch::~Epoch() = default;
DataLoader::Epoch::Epoch(Epoch&&) noexcept = default;
DataLoader::Epoch& DataLoader::Epoch::operator=(Epoch&&) noexcept = default;
std::optional<Example> DataLoader::Epoch::next() { return state_->next(); }
int64_t DataLoader::Epoch::index() const { return state_->epoch; }

DataLoader::Iterator::Iterator(std::shared_ptr<Epoch> epoch)
    : epoch_(std::move(epoch)), batch_(epoch_->next()) {}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  batch_ = epoch_->next();
  return *this;
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  DS_CHECK(dataset_ != nullptr, ValueError, "DataLoader: the dataset is null");
  DS_CHECK(options_.batch_size >= 1, ValueError, "DataLoader: batch_size must be >= 1, got ",
           options_.batch_size);
  DS_CHECK(options_.prefetch >= 0, ValueError, "DataLoader: prefetch must be >= 0, got ",
           options_.prefetch);
}

int64_t DataLoader::num_batches() const {
  const int64_t n = dataset_->size(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> DataLoader::order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(dataset_->size()));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (options_.shuffle) {
    std::mt19937_64 rng(splitmix64(options_.seed ^ splitmix64(static_cast<uint64_t>(epoch))));
    for (size_t i = order.size(); i > 1; --i)
      std::swap(order[i - 1], order[uniform_below(rng, i)]);
  }
  return order;
}

DataLoader::Epoch DataLoader::epoch() {
  auto state = std::make_unique<Epoch::State>();
  state->dataset = dataset_;
  state->epoch = next_epoch_++;
  state->order = order(state->epoch);
  state->batch_size = options_.batch_size;
  state->num_batches = num_batches();
  state->prefetch = static_cast<size_t>(options_.prefetch);
  if (state->prefetch > 0) state->worker = std::thread([s = state.get()] { s->produce(); });
  return Epoch(std::move(state));
}

DataLoader::Iterator DataLoader::begin() { return Iterator(std::make_shared<Epoch>(epoch())); }

}  // namespace ds::data
