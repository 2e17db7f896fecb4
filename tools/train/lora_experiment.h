// The LoRA-as-compression experiment (the main job): scale a trained layer's kernel, freeze the
// model, train LoRA adapters of several ranks and seeds, compare with the compression variant
// and plain truncated SVD, and analyse the adapters' subspaces. Used by `lowrank lora-experiment`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/delta_report.h"
#include "analysis/similarity.h"

namespace lowrank::train {

struct LoraExperimentOptions {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string out_dir = "runs/lora-experiment";
  bool overwrite = false;    // replace an experiment (and its base run) already in out_dir
  std::string base;          // a trained model.safetensors (or its run folder); empty: train one
  int64_t base_epochs = 10;  // when training the base
  uint64_t base_seed = 0;
  // The Dense layers that are scaled and adapted (one adapter file holds them all); the first is
  // the one the φ grids and figures analyse. Default: the 128x128 hidden Dense.
  std::vector<std::string> layers = {"layers.2"};
  std::vector<int64_t> ranks = {5, 8, 32, 64, 80};
  std::vector<uint64_t> seeds = {0, 1};
  int64_t epochs = 1;  // adapter training epochs per run
  // The frozen kernel's factors: one set of LoRA runs, one table and one set of figures per value.
  std::vector<double> base_scales = {0.9};
  double alpha = 0;     // 0: alpha = r (scale 1)
  bool rslora = false;  // scale alpha / sqrt(r) instead of alpha / r (PEFT's use_rslora)
  double dropout = 0;   // on the adapter's input while training (PEFT's lora_dropout)
  double lr = 1e-3;
  int64_t batch = 32;
  std::string init = "kaiming";
  bool compression = true;  // also run base_scale 1 -> 0 (one seed per rank)
  std::string compress_schedule = "cosine";
  double compress_fraction = 0.75;  // share of the adapter's steps over which base_scale falls to 0
  bool svd_baseline = true;
  std::string device = "cpu";
  int threads = 1;                          // 0: one per core (the command line's default, tools/cli/flags.h)
  int64_t train_limit = 0, test_limit = 0;  // first N samples only (0: all)
  bool json = false;
  bool log = true;
};

struct AdapterRun {
  std::string method;     // "lora" (constant base_scale), "compress" (base_scale -> 0), "svd" (truncation)
  double base_scale = 0;  // lora: its constant base_scale; compress: the schedule's end, 0; svd: 0
  int64_t rank = 0;
  uint64_t seed = 0;
  double test_acc = 0, test_loss = 0, train_loss = 0, seconds = 0;
  int64_t params = 0;                          // trainable parameters of the adapters (svd: of the factors), all layers
  double compression_ratio = 0;                // the layers' kernel elements / params
  std::string adapter_dir;                     // empty for svd
  std::vector<analysis::DeltaReport> reports;  // one per layer, in --layer order; none for svd
};

// What one --base-scales value gives: the scaled model without adapter, and the LoRA paper's φ
// grids of its lora runs: φ(A_r=small, A_r=large) at the first seed, and between the first two
// seeds at the large rank (empty with one seed; phi_ranks empty with one rank).
struct ScaleResult {
  double base_scale = 1;
  double scaled_acc = 0, scaled_loss = 0;
  analysis::SimilarityGrid phi_ranks, phi_seeds;
};

struct LoraExperimentResult {
  double base_acc = 0, base_loss = 0;
  bool base_trained_here = true;        // false: loaded with --base
  int64_t base_epochs = -1;             // epochs the base model was trained for (-1: unknown, a bare --base file)
  int64_t layer_in = 0, layer_out = 0;  // of the first layer, the one the φ grids and figures analyse
  std::vector<ScaleResult> scales;      // in --base-scales order
  std::vector<AdapterRun> runs;
  int64_t grid_rank_small = 0, grid_rank_large = 0;  // the ranks of the φ grids
  std::string table_md_path, results_json_path;
  std::vector<std::string> figures;
  double seconds = 0;
};

LoraExperimentResult run_lora_experiment(const LoraExperimentOptions& options);

// The expected φ(i, j) of random subspaces of dimensions i and j in R^n: E‖U_iᵀU_j‖²_F = i·j/n,
// normalised by min(i, j), gives max(i, j)/n. A φ figure or column is read against this.
double phi_chance(int64_t i, int64_t j, int64_t n);
// "0.9", "0.5", "0": a base_scale as names and labels show it.
std::string scale_text(double base_scale);
// "layers.1, layers.2": the --layer list as messages and titles show it.
std::string layers_text(const LoraExperimentOptions& options);
// "" with one --base-scales value, else "_bs0.5": appended to run and figure names.
std::string scale_suffix(const LoraExperimentOptions& options, double base_scale);

// The results table as Markdown; written to results.md and printed by the tool.
std::string lora_experiment_table(const LoraExperimentOptions& options, const LoraExperimentResult& r);
// results.json, the table's and the report's numbers; also the tool's --json summary.
std::string lora_experiment_json(const LoraExperimentOptions& options, const LoraExperimentResult& r);
// The heatmaps, the ΔW-vs-W figure and accuracy vs rank; returns their paths.
std::vector<std::string> write_lora_experiment_figures(const LoraExperimentOptions& options,
                                                       const LoraExperimentResult& r);

}  // namespace lowrank::train
