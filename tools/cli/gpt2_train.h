// `lowrank gpt2 train` as a function: every flag, the run (data, model, AdamW with warmup + cosine,
// validation, checkpoints, resume) and what it returns, so benchmarks and tests can call it too.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/gpt2/model.h"

namespace lowrank::cli::gpt2 {

struct TrainOptions {
  std::vector<std::string> data;  // files or folders; empty: the fortunes folder
  std::string preset = "small";   // Config::preset name, unless config or init is given
  std::string config;             // a config.json (ours or Hugging Face's)
  std::string init;               // start from these weights (ours or HF; folder or file)
  std::string resume;             // continue a run folder: weights, optimizer, step
  std::string out = "runs/gpt2";
  std::string cache_dir;  // token cache folder (empty: --out)
  std::string vocab;      // tokenizer folder (empty: Tokenizer::default_dir())
  int64_t steps = 300;    // total optimizer steps (a resumed run counts the ones done)
  double max_time = 0;    // stop this run before another step would pass this many seconds (0: no limit)
  int64_t stop_at = 0;    // stop (with a checkpoint) on reaching this step; the schedule still spans `steps`
  int64_t batch = 8;
  int64_t seq_len = 0;  // 0: the model's n_ctx
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup = -1;        // -1: min(100, steps / 10)
  double weight_decay = 0.1;  // AdamW, on matrices and embeddings only (not biases, LayerNorm)
  double beta1 = 0.9, beta2 = 0.95;
  double grad_clip = 1.0;  // global norm (0: off)
  double val_fraction = 0.05;
  int64_t val_every = 50;   // steps between validation passes (0: only at start and end)
  int64_t val_batches = 4;  // batches of consecutive windows from the validation split
  int64_t checkpoint_every = 100;
  int64_t log_every = 10;
  uint64_t seed = 0;
  std::string device = "cpu";
  int threads = 0;
  bool json = false;
  bool progress = true;
  bool log = true;  // a line per log interval and validation on stderr
};

struct TrainPoint {
  int64_t step = 0;
  double loss = 0;  // train: mean over the interval; val: mean over the validation windows
  double lr = 0, tokens_per_s = 0, seconds = 0;
  int64_t tokens = 0;
};

struct TrainResult {
  std::vector<TrainPoint> train, val;  // the whole history, including before a resume
  int64_t start_step = 0, final_step = 0;
  bool stopped_early = false;  // by --max-time or --stop-at
  double seconds = 0;          // this run's training time (validation and checkpoints included)
  double train_seconds = 0;    // this run's time in training steps alone
  int64_t run_tokens = 0;      // tokens trained on in this run
  int64_t train_tokens = 0, val_tokens = 0, documents = 0;
  bool data_from_cache = false;
  double data_seconds = 0;
  std::string data_cache, model_dir, metrics_path, config_path, optimizer_path;
  int64_t parameters = 0;
  std::shared_ptr<models::gpt2::Gpt2> model;
};

TrainResult run_gpt2_train(const TrainOptions& options);

}  // namespace lowrank::cli::gpt2
