// PNG figures through PLplot's cairo driver: heatmaps of a matrix (the LoRA paper's Figure 3 φ
// grids), grids of such heatmaps (one panel per layer × target), and line plots of labelled
// series (training curves, accuracy vs rank). Files are written atomically; calls are serialised
// internally and may come from any thread.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lowrank::analysis {

struct HeatmapOptions {
  std::string title;
  std::string x_label = "j";  // columns
  std::string y_label = "i";  // rows
  std::string colorbar_label;
  // Colour range; NaN means the data's own minimum / maximum. φ grids use 0 and 1.
  double vmin = std::numeric_limits<double>::quiet_NaN();
  double vmax = std::numeric_limits<double>::quiet_NaN();
  // Index shown for the first column / row (the paper counts i and j from 1).
  int64_t x_first = 1, y_first = 1;
  bool origin_top = true;         // first row at the top, as a matrix is printed
  int width = 800, height = 700;  // pixels
  // A level to compare every cell with (rows x cols, row-major, like the values; empty: none): a
  // dashed white contour is drawn where the values cross it (for φ grids: chance, max(i, j)/n).
  std::vector<double> reference = {};
  std::vector<std::string> notes = {};  // caption lines under the figure (what it shows, what the contour is)
};

// Which side of a reference grid values lie on, for a caption: above it in every cell, above it in
// none, or some of each (then the dashed contour has a line to draw). Same-length vectors.
enum class ReferenceSide { Above, AtOrBelow, Crosses };
ReferenceSide reference_side(const std::vector<double>& values, const std::vector<double>& reference);

// Where values - reference changes side (above / at or below) along a one-row or one-column grid,
// as positions in cells from the first cell's centre, linearly interpolated between two centres:
// the dashed contour of such a grid is a short line across it at each (a contour through cell
// centres needs two of them each way). Same-length vectors.
std::vector<double> reference_crossings(const std::vector<double>& values, const std::vector<double>& reference);

// values: rows x cols, row-major (row i is drawn at height i); all finite.
void plot_heatmap(const std::string& path, const std::vector<double>& values, int64_t rows, int64_t cols,
                  const HeatmapOptions& opts = {});
// A 2-D tensor of any float dtype, device and layout.
void plot_heatmap(const std::string& path, const Tensor& matrix, const HeatmapOptions& opts = {});

// One panel of a heatmap grid: values rows x cols, row-major, all finite.
struct HeatmapPanel {
  std::string title;  // above the panel, e.g. "h.3 value"
  std::vector<double> values;
  int64_t rows = 0, cols = 0;
  std::vector<double> reference = {};  // as HeatmapOptions::reference: a dashed white contour (empty: none)
};

struct HeatmapPanelsOptions {
  std::string title;  // over the whole figure
  std::string x_label = "j", y_label = "i";
  std::string colorbar_label;
  double vmin = 0.0, vmax = 1.0;  // one colour scale shared by every panel (φ: 0..1); values are clamped to it
  int64_t x_first = 1, y_first = 1;
  // Panels per row; 0 picks about sqrt(1.5·n), rounded up to a multiple of `group` (pass the
  // number of targets so a row never splits one layer's panels). Panels fill rows in order.
  int64_t columns = 0, group = 1;
  int panel_width = 300, panel_height = 260;  // pixels per panel; the figure adds its margins
  std::vector<std::string> notes = {};        // caption lines under the figure
};

// One PNG with a grid of heatmaps sharing one colour scale and colour bar, laid out as the LoRA
// paper's Figures 3 and 4 (one panel per layer × target). 1..200 panels; the figure is at most
// 10000 pixels each way.
void plot_heatmap_panels(const std::string& path, const std::vector<HeatmapPanel>& panels,
                         const HeatmapPanelsOptions& opts = {});

enum class Stroke { Solid, Dashed, Dotted };

struct Series {
  std::string label;  // shown in the legend; an empty label keeps the series out of it
  std::vector<double> x, y;
  Stroke stroke = Stroke::Solid;
  bool grey = false;  // a reference (chance level, a bound) in grey, outside the colour cycle
};

// A horizontal line across the whole plot (a reference level such as a baseline's accuracy).
struct HLine {
  std::string label;  // in the legend
  double y = 0;
  Stroke stroke = Stroke::Dashed;
};

struct LineOptions {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;  // base-10 axes; the values on them must be positive
  bool markers = false;               // a dot at every point (always on for one-point series)
  int width = 900, height = 600;      // pixels
  std::vector<HLine> hlines = {};     // in their own colours after the series'
  // A fixed y range (NaN: the data's, padded); what falls outside is clipped at the frame.
  double y_min = std::numeric_limits<double>::quiet_NaN();
  double y_max = std::numeric_limits<double>::quiet_NaN();
  bool legend_outside = false;          // legend right of the frame (never over a point)
  std::vector<std::string> notes = {};  // caption lines under the figure
};

// Each series: x.size() == y.size() >= 1, all finite. Colours follow the series order.
void plot_lines(const std::string& path, const std::vector<Series>& series, const LineOptions& opts = {});

}  // namespace lowrank::analysis
