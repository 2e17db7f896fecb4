// GPT-2 runs on the trainer: the set-up every gpt2 subcommand shares (tokenizer, model and data
// loading with one-line errors), and `lowrank gpt2 train` as a function with every flag, so that
// benchmarks, tests and the next GPT-2 loops (LoRA, classification) can call it or build on it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/gpt2/model.h"
#include "models/gpt2/text_data.h"
#include "models/gpt2/tokenizer.h"
#include "tools/train/trainer.h"

namespace lowrank::train {

// ---- set-up shared by the gpt2 subcommands (`command` names the subcommand in messages: "gpt2 eval")

// The tokenizer in `dir` (empty: Tokenizer::default_dir()); a missing folder or file is one line
// that says where the files come from.
models::gpt2::Tokenizer load_gpt2_tokenizer(const std::string& dir, const std::string& command);
// The data pipeline's view of a tokenizer, fingerprinted by the vocabulary files in `dir`.
models::gpt2::TextEncoder gpt2_text_encoder(const models::gpt2::Tokenizer& tok, const std::string& dir);
// Ours or Hugging Face's, a folder or a .safetensors file (models::gpt2::load_any), with an error
// that names the path when there is nothing there.
std::unique_ptr<models::gpt2::Gpt2> load_gpt2_model(const std::string& path, const std::string& command);
// Checks that the tokenizer's ids fit the model's vocabulary.
void check_vocab_fits(const models::gpt2::Gpt2& model, const models::gpt2::Tokenizer& tok, const std::string& command);
// Mean loss per target token of `model` (put in eval mode for the pass) over `batches`; NaN for none.
double gpt2_mean_loss(models::gpt2::Gpt2& model, const std::vector<models::gpt2::Batch>& batches, Device device);

// ---- `lowrank gpt2 train`

inline constexpr const char* kGpt2DefaultOut = "runs/gpt2";
// The presets `gpt2 train` offers: those with GPT-2's vocabulary (the tokenizer's).
inline constexpr const char* kGpt2TrainPresets[] = {"small", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"};

struct Gpt2TrainOptions {
  std::vector<std::string> data;  // files or folders; empty: the fortunes folder
  std::string preset = "small";   // one of kGpt2TrainPresets, unless config or init is given
  std::string config;             // a config.json (ours or Hugging Face's)
  std::string init;               // start from these weights (ours or HF; folder or file)
  std::string resume;             // continue a run: its folder, one of its checkpoints, or a file in either
  std::string out;                // empty: the folder --resume continues, else kGpt2DefaultOut
  bool overwrite = false;         // replace a run already in out
  std::string cache_dir;          // token cache folder (empty: the run folder)
  std::string vocab;              // tokenizer folder (empty: Tokenizer::default_dir())
  int64_t steps = 300;            // total optimizer steps (a resumed run counts the ones done)
  double max_time = 0;            // > 0: the run returns within this many seconds of started_at (Trainer's max_time)
  double started_at = NAN;        // the now_seconds() max_time counts from (NaN: when run_gpt2_train is called)
  int64_t stop_at = 0;            // stop (with a checkpoint) on reaching this step; the schedule still spans `steps`
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

struct Gpt2TrainPoint {
  int64_t step = 0;
  double loss = 0;  // train: mean over the interval; val: mean over the validation windows
  double lr = 0, tokens_per_s = 0, seconds = 0;
  int64_t tokens = 0;
};

// A point as its metrics.jsonl record (`val`: a validation record), and a record back into the train
// or validation history; `command` names the subcommand in the error for a record of neither kind.
nlohmann::json gpt2_point_json(const Gpt2TrainPoint& p, bool val);
void add_gpt2_point(const nlohmann::json& j, std::vector<Gpt2TrainPoint>& train, std::vector<Gpt2TrainPoint>& val,
                    const std::string& command);

// ---- the run set-up gpt2 train and gpt2 lora share (their options structs name these flags alike)

// The training flags as config.json records them.
template <class Options>
nlohmann::json gpt2_training_json(const Options& o, int64_t seq_len, int64_t warmup) {
  return {{"steps", o.steps},
          {"max_time", o.max_time},
          {"stop_at", o.stop_at},
          {"batch", o.batch},
          {"seq_len", seq_len},
          {"lr", o.lr},
          {"min_lr", o.min_lr},
          {"warmup", warmup},
          {"weight_decay", o.weight_decay},
          {"beta1", o.beta1},
          {"beta2", o.beta2},
          {"grad_clip", o.grad_clip},
          {"val_fraction", o.val_fraction},
          {"val_every", o.val_every},
          {"val_batches", o.val_batches},
          {"checkpoint_every", o.checkpoint_every},
          {"log_every", o.log_every},
          {"seed", o.seed},
          {"device", o.device},
          {"threads", o.threads}};
}

// The trainer's options for a gpt2 run: validation at the start and every val_every steps; max_time
// counts from `started_at` (the moment the command began: loading counts).
template <class Options>
TrainerOptions gpt2_trainer_options(const std::string& command, const Options& o, bool leader, double started_at) {
  return {.command = command,
          .total_steps = o.steps,
          .stop_at = o.stop_at,
          .max_time = o.max_time,
          .started_at = started_at,
          .log_every = std::max<int64_t>(o.log_every, 1),
          .eval_every = o.val_every,
          .eval_at_start = true,
          .checkpoint_every = o.checkpoint_every,
          .grad_clip = o.grad_clip,
          .progress = o.progress,
          .leader = leader};
}

// The token data of a run's text files (split, cached in cache_dir, encoded with `threads`; 0: all
// cores). Under mpirun the leader encodes the text and writes the cache while the other ranks wait,
// then they read it.
models::gpt2::TokenData load_gpt2_run_data(const models::gpt2::Tokenizer& tok, const std::string& vocab_dir,
                                           const std::vector<std::string>& files, double val_fraction,
                                           const std::string& cache_dir, int threads);

// (mpirun) Rank k's own random stream for dropout masks, derived from the state rank 0 holds (the one
// checkpoints keep; rank 0's stream is left as it is).
void use_rank_stream(nn::Generator& g, int rank);

// The trainer's log and progress-line hooks of a gpt2 run: each interval's point goes into `train`
// and, with `log`, a line to stderr.
void set_gpt2_log_hooks(Trainer& trainer, std::vector<Gpt2TrainPoint>& train, int64_t steps, int64_t tokens_per_step,
                        bool log);

struct Gpt2TrainResult {
  std::vector<Gpt2TrainPoint> train, val;  // the whole history, including before a resume
  int64_t start_step = 0, final_step = 0;
  bool stopped_early = false;    // by --max-time or --stop-at
  double seconds = 0;            // this run's training time (validation and checkpoints included)
  double train_seconds = 0;      // this run's time in training steps alone
  double allreduce_seconds = 0;  // (mpirun) of which in the gradient all-reduce
  int64_t run_tokens = 0;        // tokens trained on in this run
  int64_t train_tokens = 0, val_tokens = 0, documents = 0;
  bool data_from_cache = false;
  double data_seconds = 0;
  std::string data_cache, model_dir, metrics_path, config_path, optimizer_path, checkpoint_dir, loss_curve_path;
  int64_t parameters = 0;
  std::shared_ptr<models::gpt2::Gpt2> model;
};

Gpt2TrainResult run_gpt2_train(const Gpt2TrainOptions& options);

}  // namespace lowrank::train
