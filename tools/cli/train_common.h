// Training helpers shared by the training subcommands: a terminal progress bar, one epoch of
// classifier training, and the whole `train-mlp` run as a function, so that other subcommands
// (lora-experiment) can train the base MLP without going through the command line.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/io/dataloader.h"
#include "models/mlp.h"
#include "nn/module.h"
#include "optim/optimizer.h"

namespace lowrank::cli {

// A one-line progress bar redrawn in place on stderr when stderr is a terminal (epoch, step,
// loss, accuracy, samples/s, ETA); silent otherwise, so logs stay one line per epoch.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total_steps, bool enabled);
  ~ProgressBar();
  void update(int64_t step, int64_t samples, double loss, double acc);
  void finish();  // clears the line
  static bool stderr_is_terminal();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, drawn_ = false;
  double start_, last_draw_ = -1.0;
};

struct EpochStats {
  double loss = 0.0;      // mean training loss per sample over the epoch (Keras' running figure)
  double accuracy = 0.0;  // training accuracy over the epoch
  int64_t samples = 0;
  int64_t steps = 0;
  bool finite = true;  // false: a loss was NaN or infinite and the epoch stopped at that step
  int64_t bad_step = -1;
};

// Runs the rest of the loader's current epoch: forward, sparse cross-entropy, backward, one
// optimizer step per batch. Batches are (inputs, labels). Stops at the first non-finite loss
// without stepping on it. `before_step(global_step)` (optional) runs before each forward.
EpochStats train_classifier_epoch(nn::Module& model, optim::Optimizer& optimizer, io::DataLoader& loader,
                                  ProgressBar* progress = nullptr,
                                  const std::function<void(int64_t)>& before_step = {});

// Every flag of `lowrank train-mlp`.
struct MlpTrainOptions {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t epochs = 10;  // total, counting epochs done before a --resume
  int64_t batch = 32;
  double lr = 1e-3;
  uint64_t seed = 0;
  std::string device = "cpu";
  std::string out_dir = "runs/mlp";
  std::string resume;  // a run folder or its model.safetensors; empty: start fresh
  // The MLP's batch-32 steps are too small to split across threads: a second thread only adds
  // synchronisation, which costs a lot when the cores are shared (bench/mlp_bench). 0: one per core.
  int threads = 1;
  bool json = false;
  int64_t train_limit = 0;  // use the first N training samples (0: all)
  int64_t test_limit = 0;   // use the first N test samples (0: all)
  bool progress = true;     // draw the bar when stderr is a terminal
  bool log = true;          // one line per epoch on stderr
};

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_acc = 0, test_loss = 0, test_acc = 0, seconds = 0;
};

struct MlpTrainResult {
  std::vector<EpochMetrics> history;  // every epoch so far, including those before a resume
  std::shared_ptr<models::Mlp> model;
  int64_t start_epoch = 0;  // epochs already done when this run began
  double seconds = 0;       // wall time of this run's epochs
  std::string model_path, optimizer_path, metrics_path, config_path;
  std::string loss_curve_path, accuracy_curve_path;  // PNGs: train and test per epoch
};

// The whole run: loads Fashion-MNIST, builds (or resumes) the MLP and Adam (Keras' eps 1e-7),
// trains, evaluates on the test split after each epoch and writes model.safetensors,
// optimizer.safetensors (with the loader state and epoch), metrics.jsonl, config.json,
// training_loss.png and training_accuracy.png into out_dir, checkpoints atomically after every epoch. A non-finite loss
// throws lowrank::Error after leaving the last good checkpoint in place.
MlpTrainResult run_train_mlp(const MlpTrainOptions& options);

// Raises glibc's mmap and trim thresholds (process-wide, idempotent) so that freed tensors are
// reused from the heap rather than unmapped and faulted in again. glibc's dynamic threshold
// already does this after the first large free: on the MLP epoch (bench/mlp_bench) the measured
// difference was within noise (0.73 vs 0.74 s CPU), so train-mlp does not call it.
void keep_freed_memory_for_reuse();

// The JSON line of one epoch, as written to metrics.jsonl (doubles with 17 significant digits).
std::string epoch_metrics_json(const EpochMetrics& m);

}  // namespace lowrank::cli
