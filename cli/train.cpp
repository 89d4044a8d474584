// `ds train`: trains the Fashion-MNIST CNN with one compiled training step
// (forward, backward and Adam update in one executable), shows a progress bar,
// evaluates on the test set each epoch and writes a safetensors checkpoint.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "cli/train_tools.h"
#include "ds/data.h"
#include "ds/ds.h"
#include "ds/nn.h"
#include "ds/optim.h"
#include "ds/safetensors.h"

namespace ds::cli {
namespace {

struct TrainArgs {
  int64_t epochs = 10;
  int64_t batch_size = 128;
  double lr = 1e-3;
  std::string precision = "fp32";
  int threads = 0;  // 0: the runtime default
  std::string data_dir = data::kFashionMnistDir;
  uint64_t seed = 0;
  std::string out = "fashion_mnist_cnn.safetensors";
  int64_t max_steps = 0;  // > 0: stop after this many steps (benchmarks)
  bool eval = true;
  TrainToolsOptions tools;  // --tensorboard, --debug-every, --profile
};

const char* kUsage =
    "usage: ds train [options]\n"
    "Trains Conv(1->32,3,pad 1)-ReLU-MaxPool2 -> Conv(32->64,3,pad 1)-ReLU-MaxPool2 -> Flatten\n"
    "-> Linear(3136->128)-ReLU -> Linear(128->10) on Fashion-MNIST with Adam.\n\n"
    "  --epochs N        epochs (default 10)\n"
    "  --batch-size N    batch size (default 128)\n"
    "  --lr X            Adam learning rate (default 1e-3)\n"
    "  --precision P     fp32, bf16 or fp16 (matmul/conv in low precision; fp16 loss scaling)\n"
    "  --threads N       CPU threads (default: DS_NUM_THREADS, else all cores)\n"
    "  --data-dir DIR    Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)\n"
    "  --seed N          weight-init and shuffling seed (default 0)\n"
    "  --out FILE        safetensors checkpoint written at the end\n"
    "                    (default fashion_mnist_cnn.safetensors; '' to skip)\n"
    "  --max-steps N     stop after N training steps (for benchmarks)\n"
    "  --no-eval         skip the per-epoch test-set evaluation\n";

TrainArgs parse(int argc, char** argv) {
  TrainArgs a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage << kTrainToolsUsage;
      std::exit(0);
    }
    if (flag == "--no-eval") {
      a.eval = false;
      continue;
    }
    if (parse_train_tools_flag(a.tools, argc, argv, i)) continue;
    DS_CHECK(i + 1 < argc, ValueError, "option ", flag, " needs a value\n", kUsage);
    const std::string v = argv[++i];
    auto integer = [&](int64_t min) {
      size_t used = 0;
      int64_t n = 0;
      try {
        n = std::stoll(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      DS_CHECK(used == v.size() && n >= min, ValueError, "option ", flag,
               " expects an integer >= ", min, ", got '", v, "'");
      return n;
    };
    if (flag == "--epochs") a.epochs = integer(1);
    else if (flag == "--batch-size") a.batch_size = integer(1);
    else if (flag == "--threads") a.threads = static_cast<int>(integer(1));
    else if (flag == "--seed") a.seed = static_cast<uint64_t>(integer(0));
    else if (flag == "--max-steps") a.max_steps = integer(1);
    else if (flag == "--data-dir") a.data_dir = v;
    else if (flag == "--out") a.out = v;
    else if (flag == "--precision") a.precision = v;
    else if (flag == "--lr") {
      size_t used = 0;
      try {
        a.lr = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      DS_CHECK(used == v.size() && a.lr > 0, ValueError, "option --lr expects a number > 0, got '",
               v, "'");
    } else {
      throw ValueError("unknown option '" + flag + "'\n" + kUsage);
    }
  }
  DS_CHECK(a.precision == "fp32" || a.precision == "bf16" || a.precision == "fp16", ValueError,
           "--precision must be fp32, bf16 or fp16, got '", a.precision, "'");
  return a;
}

std::shared_ptr<nn::Sequential> fashion_cnn() {
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(1, 32, Pair{3}, Pair{1}, Pair{1}), nn::ReLU(),
      nn::MaxPool2d({2}),
      std::make_shared<nn::Conv2d>(32, 64, Pair{3}, Pair{1}, Pair{1}), nn::ReLU(),
      nn::MaxPool2d({2}), nn::Flatten(),
      std::make_shared<nn::Linear>(3136, 128), nn::ReLU(),
      std::make_shared<nn::Linear>(128, 10)});
}

std::shared_ptr<data::TensorDataset> load_split(const std::string& dir, bool train) {
  try {
    return data::fashion_mnist(dir, train);
  } catch (const NotFoundError& e) {
    throw NotFoundError(std::string(e.what()) +
                        "\nFashion-MNIST is not installed there. On Debian/Ubuntu install it with:"
                        "  apt-get install dataset-fashion-mnist  (or pass --data-dir DIR)");
  }
}

// Correct predictions of logits [B, C] against int64 labels [B].
int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const Tensor l = logits.contiguous();
  const int64_t b = l.shape()[0], c = l.shape()[1];
  const float* p = l.data<float>();
  const int64_t* y = labels.contiguous().data<int64_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < b; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < c; ++j)
      if (p[i * c + j] > p[i * c + best]) best = j;
    correct += best == y[i];
  }
  return correct;
}

double test_accuracy(nn::Module& model, const data::TensorDataset& test) {
  optim::EvalStep eval(model);
  data::DataLoader loader(std::make_shared<data::TensorDataset>(test.tensors()),
                          {.batch_size = 1000, .prefetch = 1});
  int64_t correct = 0, seen = 0;
  for (const auto& batch : loader) {
    correct += count_correct(eval.run(batch[0]), batch[1]);
    seen += batch[1].shape()[0];
  }
  return seen ? 100.0 * double(correct) / double(seen) : 0.0;
}

class Progress {
 public:
  Progress(int64_t epoch, int64_t epochs, int64_t batches)
      : epoch_(epoch), epochs_(epochs), batches_(batches), tty_(isatty(STDOUT_FILENO)) {}

  void update(int64_t batch, double loss, double acc, double img_per_s, bool last) {
    const auto now = std::chrono::steady_clock::now();
    // A terminal gets a redrawn bar (at most 10 per second); a log gets a line every 100 steps.
    if (tty_ && !last && now - drawn_ < std::chrono::milliseconds(100)) return;
    if (!tty_ && !last && batch % 100 != 0) return;
    drawn_ = now;
    const int width = 24;
    const int filled = static_cast<int>(width * batch / std::max<int64_t>(batches_, 1));
    std::printf("%sepoch %lld/%lld [%s%s] %lld/%lld loss %.4f acc %.2f%% %.0f img/s%s",
                tty_ ? "\r" : "", (long long)epoch_, (long long)epochs_,
                std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                (long long)batch, (long long)batches_, loss, acc, img_per_s,
                tty_ && !last ? "" : "\n");
    std::fflush(stdout);
  }

 private:
  int64_t epoch_, epochs_, batches_;
  bool tty_;
  std::chrono::steady_clock::time_point drawn_{};
};

// OpenMP (used inside oneDNN and OpenBLAS) spins idle workers by default; on a
// machine with few cores they steal the cores our own thread pool needs between
// library calls (measured here: 5x slower training). libgomp reads the policy
// once at load, so set it and re-execute when the user has not chosen one.
void prefer_passive_openmp(int argc, char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  std::vector<char*> args = {const_cast<char*>("ds")};
  for (int i = 0; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv("/proc/self/exe", args.data());  // returns only on failure: then run as we are
}

int run_train(int argc, char** argv) {
  const TrainArgs a = parse(argc, argv);
  prefer_passive_openmp(argc, argv);
  if (a.threads > 0) set_num_threads(a.threads);
  auto train_set = load_split(a.data_dir, true);
  auto test_set = a.eval ? load_split(a.data_dir, false) : nullptr;

  nn::manual_seed(a.seed);
  auto model = fashion_cnn();
  optim::Adam adam({.lr = a.lr});
  const optim::LossFn loss = [](const Tensor& logits, const Tensor& labels) {
    return nn::cross_entropy(logits, labels);
  };
  optim::TrainStep step(*model, adam, loss, {.precision = a.precision});
  TrainTools tools(a.tools, *model, step, loss, {dyn, 1, 28, 28});
  data::DataLoader loader(train_set, {.batch_size = a.batch_size, .shuffle = true, .seed = a.seed});
  std::printf("ds train: Fashion-MNIST CNN, %lld train images, batch %lld, Adam lr %g, %d threads, "
              "seed %llu\n",
              (long long)train_set->size(), (long long)a.batch_size, a.lr, num_threads(),
              (unsigned long long)a.seed);

  using Clock = std::chrono::steady_clock;
  int64_t steps = 0, images_total = 0;
  double train_seconds = 0, last_test = -1;
  // Steady-state rate: from the end of the first step, which traces and compiles.
  Clock::time_point steady_start;
  int64_t steady_images = 0;
  double steady_seconds = 0;
  bool stop = false;
  for (int64_t e = 0; e < a.epochs && !stop; ++e) {
    Progress bar(e + 1, a.epochs, loader.num_batches());
    auto epoch = loader.epoch();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, batch_idx = 0;
    const auto t0 = Clock::now();
    if (steps >= 1) steady_start = t0;
    while (auto batch = epoch.next()) {
      const optim::StepResult r = tools.step((*batch)[0], (*batch)[1]);
      const int64_t b = (*batch)[1].shape()[0];
      const int64_t batch_correct = count_correct(r.output, (*batch)[1]);
      loss_sum += r.loss.item<double>() * double(b);
      correct += batch_correct;
      seen += b;
      ++steps;
      tools.log(steps, r.loss.item<double>(), 100.0 * double(batch_correct) / double(b), adam.lr(), b);
      ++batch_idx;
      if (steps == 1)
        steady_start = Clock::now();
      else
        steady_images += b;
      stop = a.max_steps > 0 && steps >= a.max_steps;
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      bar.update(batch_idx, loss_sum / double(seen), 100.0 * double(correct) / double(seen),
                 double(seen) / secs, stop || batch_idx == loader.num_batches());
      if (stop) break;
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    train_seconds += secs;
    if (steps > 1) steady_seconds += std::chrono::duration<double>(Clock::now() - steady_start).count();
    images_total += seen;
    if (a.eval) {
      last_test = test_accuracy(*model, *test_set);
      tools.log_test_accuracy(steps, last_test);
      std::printf("epoch %lld: train loss %.4f, train acc %.2f%%, test acc %.2f%%, %.1f s\n",
                  (long long)e + 1, loss_sum / double(seen), 100.0 * double(correct) / double(seen),
                  last_test, secs);
    }
  }
  tools.finish();
  std::printf("trained %lld steps, %lld images in %.1f s: %.1f images/s\n", (long long)steps,
              (long long)images_total, train_seconds, double(images_total) / train_seconds);
  if (steady_images > 0)
    std::printf("steady throughput (after the first, compiling step): %.1f images/s\n",
                double(steady_images) / steady_seconds);
  if (!a.out.empty()) {
    SafetensorsMetadata meta = {{"model", "fashion_mnist_cnn"},
                                {"steps", std::to_string(steps)},
                                {"seed", std::to_string(a.seed)}};
    if (last_test >= 0) meta["test_accuracy"] = std::to_string(last_test);
    save_safetensors(a.out, model->state_dict(), meta);
    std::printf("checkpoint: %s\n", a.out.c_str());
  }
  return 0;
}

const CommandRegistrar train{{"train", "train the Fashion-MNIST CNN (see ds train --help)",
                              run_train}};

}  // namespace
}  // namespace ds::cli
