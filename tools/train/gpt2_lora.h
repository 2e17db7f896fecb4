// GPT-2 LoRA runs on the trainer: `lowrank gpt2 lora` (fine-tune adapters on a frozen base and
// write them as PEFT does), and the adapter set-up the other gpt2 subcommands share (--adapter).
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/gpt2/adapter.h"
#include "models/gpt2/model.h"
#include "tools/train/gpt2.h"

namespace lowrank::train {

// ---- --adapter for gpt2 eval, generate and merge

// Loads the PEFT adapter folder `dir` into `model` (models::gpt2::load_peft_adapter) with errors
// that start with `command` and name the folder. Returns the adapters.
std::vector<models::gpt2::Gpt2LoraLayer> load_gpt2_adapter(models::gpt2::Gpt2& model, const std::string& dir,
                                                           const std::string& command);
// "12 adapters (h.0-11: query, value), rank 8, scale 2": one line for logs.
std::string describe_gpt2_adapters(const std::vector<models::gpt2::Gpt2LoraLayer>& layers);

// ---- `lowrank gpt2 lora`

inline constexpr const char* kGpt2LoraDefaultOut = "runs/gpt2-lora";
inline constexpr const char* kGpt2LoraDefaultData = "/usr/share/games/fortunes/startrek";

struct Gpt2LoraOptions {
  std::string model = "runs/gpt2";  // the base: ours or Hugging Face's, a folder or a .safetensors file
  std::vector<std::string> data;    // files or folders; empty: kGpt2LoraDefaultData
  std::string resume, out;          // as gpt2 train's (out empty: the folder --resume continues, else the default)
  bool overwrite = false;
  std::string cache_dir, vocab;
  // The adapters.
  std::string targets = "query,value";  // of query,key,value,out,fc,proj
  std::string layers;                   // blocks ("0,1,5", "0-3"); empty: all
  int64_t rank = 8;
  double alpha = 16;
  bool rslora = false;
  double dropout = 0.0;
  std::string init = "kaiming";                // kaiming, gaussian, pissa
  double base_scale = 1.0;                     // the factor on the frozen kernels at step 0 ...
  double base_scale_target = -1;               // ... and after base_scale_steps (-1: base_scale: constant)
  std::string base_scale_schedule = "linear";  // linear or cosine, when the target differs
  int64_t base_scale_steps = 0;                // 0: all the steps
  // Training, as gpt2 train.
  int64_t steps = 100;
  double max_time = 0;
  int64_t stop_at = 0;
  int64_t batch = 8;
  // 0: the model's n_ctx. 100 steps of 8 x 64 (not 150 of 8 x 128): the default run and its full
  // fine-tuning then finish in under 10 minutes on two busy cores (150 x 128 took 14 min at load 9,
  // 150 x 64 10.3 min at load 10).
  int64_t seq_len = 64;
  double lr = 2e-3;
  double min_lr = 2e-4;
  int64_t warmup = -1;        // -1: min(100, steps / 10)
  double weight_decay = 0.0;  // on the adapters (PEFT's Trainer default)
  double beta1 = 0.9, beta2 = 0.999;
  double grad_clip = 1.0;
  double val_fraction = 0.1;
  int64_t val_every = 50;
  int64_t val_batches = 0;  // 0: the whole validation split
  int64_t checkpoint_every = 100;
  int64_t log_every = 10;
  uint64_t seed = 0;
  // The full fine-tuning run beside it (same data, steps, batches and validation), in out/full-finetune.
  bool compare_full = true;
  double full_lr = 2e-4;
  std::string device = "cpu";
  int threads = 0;
  bool json = false;
  bool progress = true;
  bool log = true;
};

struct Gpt2LoraRunSummary {
  std::string name;       // "lora r=8 (query,value)", "full fine-tuning", "base"
  int64_t trainable = 0;  // trainable parameters
  double val_loss_before = NAN, val_loss_after = NAN;
  double seconds = 0, tokens_per_s = 0;  // training steps only
  int64_t optimizer_state_bytes = 0;
};

struct Gpt2LoraResult {
  std::vector<Gpt2TrainPoint> train, val;  // the LoRA run's history, including before a resume
  int64_t start_step = 0, final_step = 0;
  bool stopped_early = false;
  double seconds = 0, train_seconds = 0;
  double allreduce_seconds = 0;  // (mpirun) of train_seconds, in the adapters' gradient all-reduce
  int64_t run_tokens = 0, train_tokens = 0, val_tokens = 0, documents = 0;
  Gpt2LoraRunSummary lora;
  std::optional<Gpt2LoraRunSummary> full;  // when compare_full ran
  int64_t base_parameters = 0;
  std::string out_dir, adapter_dir, metrics_path, loss_curve_path, full_dir, description;
};

// The run. Bad flags (a target that matches nothing, rank 0 or above min(in, out), ...) throw
// UsageError before anything is written.
Gpt2LoraResult run_gpt2_lora(const Gpt2LoraOptions& options);

}  // namespace lowrank::train
