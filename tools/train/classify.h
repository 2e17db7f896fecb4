// `lowrank gpt2 classify` as a function: GPT-2 sequence classification (models/gpt2/classifier.h)
// on labelled text, trained on the trainer in three modes — LoRA with the head trainable (PEFT's
// modules_to_save), full fine-tuning, a linear probe on frozen features — beside a bag-of-words
// logistic regression, the majority class and chance, so every accuracy has floors to read it by.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lowrank::train {

inline constexpr const char* kClassifyDefaultOut = "runs/gpt2-classify";
inline constexpr const char* kClassifyModes[] = {"lora", "full", "probe"};
struct ClassifyOptions {
  std::string model;                 // base GPT-2: our run folder/file or an HF folder; empty: runs/gpt2
  std::string data;                  // a folder (each file a class) or a label<TAB>text file; empty: fortunes
  std::vector<std::string> classes;  // empty: the data's default (label_data.h)
  int64_t max_len = 128;             // tokens per document (longer ones are cut)
  std::vector<std::string> modes = {"lora"};
  std::vector<std::string> targets = {"query", "value"};
  int64_t rank = 8;
  double alpha = 16;
  // Training epochs of lora and full (probe and the baseline: probe_epochs). 1 (not 2): the default
  // run then finishes in under 10 minutes on two busy cores (2 epochs: 598 steps at 11.7 documents/s, ~14 min).
  int64_t epochs = 1;
  int64_t steps = 0;  // > 0: this many steps instead of epochs
  int64_t batch = 16;
  double lr = 0;  // 0: the mode's default (lora 1e-3, full 1e-4, probe 1e-2)
  double weight_decay = 0.01;
  double grad_clip = 1.0;
  int64_t probe_epochs = 30;  // the probe and the baseline train on cached features: cheap epochs
  double baseline_lr = 0.05;
  int64_t eval_batch = 64;
  uint64_t seed = 0;
  std::string out;     // empty: kClassifyDefaultOut (or the --resume folder)
  std::string resume;  // a stopped run's output folder: each mode goes on from its newest checkpoint
  bool overwrite = false;
  int64_t stop_at = 0;           // > 0: a mode stops (with a checkpoint) on reaching this step; later modes wait
  double max_time = 0;           // > 0: stop (with a checkpoint) before another step would pass this many seconds
  int64_t checkpoint_every = 0;  // steps between checkpoints of each mode (0: at its end only)
  std::string vocab;
  std::string device = "cpu";
  int threads = 0;
  bool progress = true;
  bool log = true;
};

// Accuracy of one classifier on one split: overall, per class, and the confusion counts
// (confusion[true · K + predicted]).
struct SplitScores {
  double accuracy = 0;
  int64_t count = 0;
  std::vector<double> per_class;  // NaN for a class absent from the split
  std::vector<int64_t> confusion;
};

struct ClassifyModeResult {
  std::string mode;
  int64_t trainable_parameters = 0, total_parameters = 0, steps = 0;
  double lr = 0, seconds = 0, train_loss = 0, tokens_per_s = 0;
  SplitScores val, test;
  int64_t resumed_from_step = 0;  // the step this run went on from (--resume), 0 when fresh
  int64_t final_step = 0;         // steps done (= steps unless stopped early)
  bool stopped_early = false;     // by --stop-at or --max-time: not scored, later modes not run
  std::string dir, confusion_png, metrics_path;
  std::vector<std::string> files;  // what the run saved (adapter, head, model)
};

struct ClassifyResult {
  std::vector<std::string> classes;
  std::string data_source, model_path;
  int64_t train_docs = 0, val_docs = 0, test_docs = 0, truncated_docs = 0;
  double mean_tokens = 0;
  double chance = 0;                           // 1 / K
  double majority_val = 0, majority_test = 0;  // always predicting the most frequent training class
  std::string majority_class;
  SplitScores baseline_val, baseline_test;  // bag-of-words logistic regression
  int64_t baseline_parameters = 0;
  double baseline_seconds = 0;
  std::vector<ClassifyModeResult> modes;
  std::string out_dir, results_path;
  double seconds = 0;
  bool stopped_early = false;  // the last mode in `modes` stopped; go on with --resume out_dir
};

ClassifyResult run_classify(const ClassifyOptions& options);

// The summary table (Markdown) the tool prints and writes to results.md.
std::string classify_table(const ClassifyResult& r);
// results.json and the tool's --json object.
std::string classify_json(const ClassifyOptions& options, const ClassifyResult& r);

}  // namespace lowrank::train
