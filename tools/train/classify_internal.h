// What classify.cpp (the runs) and classify_report.cpp (table, JSON, figure) share; not a public API.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "models/gpt2/label_data.h"
#include "tools/train/classify.h"

namespace lowrank::train {

inline constexpr const char* kClassifyCmd = "gpt2 classify";

// A split as token ids (cut to --max-len) and labels, in the data's order.
struct Encoded {
  std::vector<std::vector<int64_t>> ids;
  std::vector<int64_t> labels;
};

struct Context {
  const ClassifyOptions& o;
  models::gpt2::LabelData data;
  Device device;
  std::string model_path;
  Encoded train, val, test;
  int64_t pad_id = 0, vocab_size = 0;
};

// Accuracy, per-class accuracy and confusion counts of `predicted` against `labels` (K classes).
SplitScores score_split(const std::vector<int64_t>& predicted, const std::vector<int64_t>& labels, int64_t K);

// The row-normalised confusion matrix of `scores` as a PNG, class names on both axes.
void write_confusion_figure(const std::string& path, const std::string& mode, const std::vector<std::string>& classes,
                            const SplitScores& scores);

}  // namespace lowrank::train
