// A confusion-matrix figure (PNG through PLplot's cairo driver): rows are the true classes, columns
// the predicted ones, each row normalised to sum 1, class names on both axes, the share in every cell.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lowrank::analysis {

struct ConfusionOptions {
  std::string title;
  int width = 900, height = 820;  // pixels
};

// counts: K x K, row-major, counts[true · K + predicted] >= 0; classes: K names. A row without
// samples is drawn empty and labelled "(none)". Written atomically; serialised with plot.h's figures.
void plot_confusion(const std::string& path, const std::vector<int64_t>& counts,
                    const std::vector<std::string>& classes, const ConfusionOptions& opts = {});

}  // namespace lowrank::analysis
