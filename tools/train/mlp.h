// The Fashion-MNIST MLP run of `lowrank train-mlp` as a function (lora-experiment trains its base
// model with it), and the classifier step that every classifier loop on a DataLoader shares.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/io/dataloader.h"
#include "models/mlp.h"
#include "nn/module.h"
#include "tools/train/data_parallel.h"
#include "tools/train/trainer.h"

namespace lowrank::train {

// One classifier step's forward: the loader's next batch (the next epoch's first at the end of
// one), sparse cross-entropy of the model's logits, weighted by the batch's size, with the
// batch's correct predictions in sums["correct"]. Batches are (inputs, labels). With `dp` active
// (mpirun), the loader's batch is the global one and this rank runs its rows.
StepOutput classifier_step(nn::Module& model, io::DataLoader& loader, const DataParallel* dp = nullptr);

inline constexpr const char* kMlpDefaultOut = "runs/mlp";

// Every flag of `lowrank train-mlp`.
struct MlpTrainOptions {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t epochs = 10;  // total, counting epochs done before a --resume
  int64_t batch = 32;
  double lr = 1e-3;
  uint64_t seed = 0;
  std::string device = "cpu";
  std::string out_dir;     // empty: the folder --resume continues, else kMlpDefaultOut
  std::string resume;      // a run folder, one of its checkpoints, or a file in either; empty: start fresh
  bool overwrite = false;  // replace a run already in out_dir
  int threads = 1;         // 0: one per core (the command line's default, tools/cli/flags.h)
  bool json = false;
  int64_t train_limit = 0;    // use the first N training samples (0: all)
  int64_t test_limit = 0;     // use the first N test samples (0: all)
  bool progress = true;       // draw the progress line when stderr is a terminal
  bool log = true;            // one line per epoch on stderr
  bool data_parallel = true;  // under mpirun: share each batch over the ranks (false: every rank trains alike)
};

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_acc = 0, test_loss = 0, test_acc = 0, seconds = 0;
};

struct MlpTrainResult {
  std::vector<EpochMetrics> history;  // every epoch so far, including those before a resume
  std::shared_ptr<models::Mlp> model;
  int64_t start_epoch = 0;       // epochs already done when this run began
  double seconds = 0;            // wall time of this run's epochs
  double allreduce_seconds = 0;  // (mpirun) of which in the gradient all-reduce
  std::string out_dir, model_path, optimizer_path, metrics_path, config_path, checkpoint_dir;
  std::string loss_curve_path, accuracy_curve_path;  // PNGs: train and test per epoch
};

// The whole run: loads Fashion-MNIST, builds (or resumes) the MLP and Adam (Keras' eps 1e-7),
// trains, evaluates on the test split after each epoch and checkpoints (checkpoint-<step>, with
// model.safetensors and optimizer.safetensors linked into the run folder), writes metrics.jsonl,
// config.json, training_loss.png and training_accuracy.png. A NaN or infinite loss or weight
// throws lowrank::Error after leaving the last good checkpoint in place.
MlpTrainResult run_train_mlp(const MlpTrainOptions& options);

// Raises glibc's mmap and trim thresholds (process-wide, idempotent) so that freed tensors are
// reused from the heap rather than unmapped and faulted in again. glibc's dynamic threshold
// already does this after the first large free: on the MLP epoch (bench/mlp_bench) the measured
// difference was within noise (0.73 vs 0.74 s CPU), so train-mlp does not call it.
void keep_freed_memory_for_reuse();

// The JSON record of one epoch, as written to metrics.jsonl (doubles with 17 significant digits).
nlohmann::json epoch_metrics_json(const EpochMetrics& m);

}  // namespace lowrank::train
