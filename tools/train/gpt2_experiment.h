// The LoRA-as-compression experiment on GPT-2 (`lowrank gpt2 lora-experiment`): on a trained base,
// the targeted kernels scaled by 0.9 (scaled), LoRA on the frozen scaled base (lora), the base
// scale moved to 0 so the adapter carries the layer alone (compress), the rank-r truncated SVD
// (svd) and PiSSA adapters moved to 0 the same way (pissa), with the LoRA paper's subspace
// analyses (§7) of the adapters. The runs are independent jobs (method × rank × seed), spread over
// the ranks of an mpirun by tools/train/sweep.h, as lora-experiment's are.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "analysis/delta_report.h"
#include "analysis/similarity.h"
#include "core/tensor.h"
#include "models/gpt2/adapter.h"
#include "models/gpt2/model.h"
#include "models/gpt2/text_data.h"
#include "nn/lora.h"

namespace lowrank::train {

inline constexpr const char* kGpt2ExperimentDefaultOut = "runs/gpt2-lora-experiment";
inline constexpr const char* kGpt2ExperimentDefaultBase = "runs/gpt2";
// The variants, in the order the jobs and tables list them.
inline constexpr const char* kGpt2ExperimentMethods[] = {"lora", "compress", "pissa", "svd"};

struct Gpt2ExperimentOptions {
  std::string base = kGpt2ExperimentDefaultBase;  // ours (a gpt2 train run) or a Hugging Face folder
  std::vector<std::string> data;                  // empty: the text the base was trained on (its config.json)
  std::string out = kGpt2ExperimentDefaultOut;
  bool overwrite = false;
  std::string vocab;  // empty: the base's (its config.json), else Tokenizer::default_dir()
  std::string targets = "query,value";
  std::string layers;  // blocks; empty: all
  std::vector<int64_t> ranks = {1, 2, 4, 8, 64};
  std::vector<uint64_t> seeds = {0, 1};
  double base_scale = 0.9;  // scaled and lora
  bool quick = false;       // ranks 1,8, one seed, kQuickSteps steps (unless given)
  // Adapter training (every trained variant alike).
  int64_t steps = 40;
  int64_t batch = 4;
  int64_t seq_len = 64;
  double lr = 3e-3, min_lr = 3e-4;
  int64_t warmup = 4;
  double alpha = 0;  // 0: alpha = r (scale 1, as lora-experiment), so ranks compare at one scale
  double grad_clip = 1.0;
  std::string compress_schedule = "cosine";  // compress and pissa: base_scale 1 -> 0 ...
  double compress_fraction = 0.75;           // ... over this share of the steps
  double val_fraction = -1;                  // -1: the base's (so the validation split is the base's)
  int64_t val_windows = 16;                  // validation windows of seq_len + 1 tokens (0: all)
  std::string device = "cpu";
  int threads = 0;
  bool json = false;
  bool log = true;
  std::string command_line;  // the exact command, written into results.json
};
inline constexpr int64_t kQuickSteps = 15;

// One job: a variant at one rank and seed (svd: no seed, no training).
struct Gpt2ExperimentJob {
  std::string method;
  int64_t rank = 0;
  uint64_t seed = 0;
  std::string name() const;  // "lora_r8_s0", "svd_r8"
};
// The jobs `options` asks for (after --quick): lora at every rank × seed; compress and pissa at
// every rank, first seed; svd at every rank.
std::vector<Gpt2ExperimentJob> gpt2_experiment_jobs(const Gpt2ExperimentOptions& options);

// One targeted layer of one job: the ΔW-vs-W report against the base's W, the LoRA paper's Table 7
// (‖ΔW‖_F / ‖Uᵀ W V‖_F along ΔW's own, W's top-r and random directions), and its A [r, in].
struct Gpt2LayerReport {
  std::string path;  // "h.0.attn.query"
  analysis::DeltaReport delta;
  analysis::AmplificationReport amplification;
  Tensor a;  // lora runs only (the φ grids): A, CPU f32
};

struct Gpt2ExperimentRun {
  Gpt2ExperimentJob job;
  double val_loss = 0, perplexity = 0;
  int64_t trainable = 0;  // adapter parameters (svd: of the factors)
  double ratio = 0;       // elements of the matrices replaced / trainable
  double seconds = 0;
  std::vector<double> train_losses;  // one per step
  std::string adapter_dir;           // relative to the output folder
  std::vector<Gpt2LayerReport> layers;
};

// φ grids of one layer × target (i, j ≤ 8): ranks (small vs large rank, first seed) and seeds
// (first two seeds at the large rank; empty with one seed).
struct Gpt2PhiPanel {
  std::string path;
  analysis::SimilarityGrid ranks, seeds;
};

struct Gpt2ExperimentResult {
  Gpt2ExperimentOptions options;  // as run: --quick applied, the base's split and vocabulary filled in
  double base_loss = 0, scaled_loss = 0;
  int64_t n_embd = 0, replaced_elements = 0;  // elements of the targeted matrices
  std::vector<std::string> paths;             // the targeted layers
  std::vector<Gpt2ExperimentRun> runs;        // in job order
  int64_t grid_rank_small = 0, grid_rank_large = 0;
  std::vector<Gpt2PhiPanel> panels;
  int64_t train_tokens = 0, val_tokens = 0, val_tokens_used = 0;
  std::vector<std::string> data_files, figures;
  std::string out_dir, results_md, results_json;
  double seconds = 0;
};

Gpt2ExperimentResult run_gpt2_experiment(const Gpt2ExperimentOptions& options);

// ---- the pieces, exposed for tests

// The text the experiment trains and validates on, tokenized: by default the base's own text, split
// and vocabulary (its config.json), else options.data; fills options.val_fraction and options.vocab
// with what it used. Under mpirun rank 0 encodes (and caches) first. One line when the text gives
// fewer than --seq-len + 1 training or validation tokens.
struct Gpt2ExperimentData {
  models::gpt2::TokenData tokens;
  std::vector<std::string> files;  // the text files read
};
Gpt2ExperimentData load_gpt2_experiment_data(Gpt2ExperimentOptions& options, const models::gpt2::Gpt2& base);

// The batch a trained job trains on at `step`: options.batch windows of options.seq_len + 1 tokens
// drawn from the training tokens with the job's seed (models::gpt2::random_batch), so the jobs of
// one seed see the same batches whatever rank runs them.
models::gpt2::Batch gpt2_experiment_batch(const std::vector<uint16_t>& train_tokens,
                                          const Gpt2ExperimentOptions& options, const Gpt2ExperimentJob& job,
                                          int64_t step);

// What one adapter training uses (the experiment fills it from the options).
struct Gpt2AdapterTraining {
  int64_t steps = 40;
  double lr = 3e-3, min_lr = 3e-4;
  int64_t warmup = 4;
  double grad_clip = 1.0;
  bool progress = false;
  std::string name;  // for the trainer's messages
};
// Trains the adapters `layers` (injected into `model`, whose other weights are frozen) with AdamW
// (no weight decay, PyTorch's eps), linear warmup then cosine to min_lr, global gradient clipping;
// each step's batch is batch_for(step), the adapters' base-scale schedules are set to the step
// before it. Returns the loss of every step.
std::vector<double> train_gpt2_adapters(models::gpt2::Gpt2& model,
                                        const std::vector<models::gpt2::Gpt2LoraLayer>& layers,
                                        const Gpt2AdapterTraining& t, Device device,
                                        const std::function<models::gpt2::Batch(int64_t step)>& batch_for);

// The adapter config of a job (rank, alpha, init, seed and base-scale schedule: lora constant
// base_scale; compress kaiming and pissa PiSSA with base_scale 1 -> 0; svd PiSSA at base_scale 0,
// so the layer is W's rank-r truncation) and the training every trained job uses.
nn::LoraConfig gpt2_experiment_lora(const Gpt2ExperimentOptions& options, const Gpt2ExperimentJob& job);
Gpt2AdapterTraining gpt2_experiment_training(const Gpt2ExperimentOptions& options, const Gpt2ExperimentJob& job);

// The results table as Markdown (written to results.md and printed), and results.json.
std::string gpt2_experiment_table(const Gpt2ExperimentOptions& options, const Gpt2ExperimentResult& r);
std::string gpt2_experiment_json(const Gpt2ExperimentOptions& options, const Gpt2ExperimentResult& r);
// The φ heatmaps and the validation-loss-vs-rank figures, into `dir`; returns the file names.
std::vector<std::string> write_gpt2_experiment_figures(const std::string& dir, const Gpt2ExperimentOptions& options,
                                                       const Gpt2ExperimentResult& r);

}  // namespace lowrank::train
