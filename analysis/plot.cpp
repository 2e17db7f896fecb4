// PLplot wrappers. PLplot keeps global state, so every figure takes one mutex and draws on a
// fresh stream into a temporary file that is renamed into place once PLplot has closed it
// (detail::Figure, plot_figure.h).
#include "analysis/plot.h"

#include <plplot.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "analysis/plot_figure.h"
#include "core/ops.h"

#if defined(__SANITIZE_ADDRESS__)
// fontconfig, reached through PLplot's cairo/pango driver, keeps its caches until the process
// ends; LeakSanitizer reports them as leaks of every program that draws a figure. They are not
// ours, so sanitizer builds suppress exactly that library (LeakSanitizer calls this hook).
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libfontconfig.so\n";
}
// Tools print one error line on stderr; keep the list of used suppressions out of it.
extern "C" const char* __lsan_default_options() {
  return "print_suppressions=0";
}
#endif

namespace lowrank::analysis {
namespace {

using detail::Figure;

// cmap0 slots: background, ink, grid, then the series colours (matplotlib's tab10 cycle), then
// the grey of reference series.
constexpr PLINT kWhite = 0, kBlack = 1, kGrid = 2, kFirstSeries = 3;
constexpr int kSeriesColours = 10;
constexpr PLINT kReferenceGrey = kFirstSeries + kSeriesColours;
constexpr PLINT kTab10[kSeriesColours][3] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                                             {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                                             {188, 189, 34},  {23, 190, 207}};
// Viridis control points for cmap1: perceptually uniform and readable in grey.
constexpr int kViridisPoints = 5;
constexpr PLFLT kViridisPos[kViridisPoints] = {0.0, 0.25, 0.5, 0.75, 1.0};
constexpr PLFLT kViridisRgb[kViridisPoints][3] = {
    {0.267, 0.005, 0.329}, {0.231, 0.322, 0.545}, {0.129, 0.569, 0.549}, {0.369, 0.788, 0.384}, {0.993, 0.906, 0.144}};

void set_colours() {
  plscmap0n(kReferenceGrey + 1);
  plscol0(kWhite, 255, 255, 255);
  plscol0(kBlack, 0, 0, 0);
  plscol0(kGrid, 225, 225, 225);
  for (int k = 0; k < kSeriesColours; ++k) plscol0(kFirstSeries + k, kTab10[k][0], kTab10[k][1], kTab10[k][2]);
  plscol0(kReferenceGrey, 110, 110, 110);
  PLFLT r[kViridisPoints], g[kViridisPoints], b[kViridisPoints];
  for (int k = 0; k < kViridisPoints; ++k) r[k] = kViridisRgb[k][0], g[k] = kViridisRgb[k][1], b[k] = kViridisRgb[k][2];
  plscmap1n(256);
  plscmap1l(1, kViridisPoints, kViridisPos, r, g, b, nullptr);
}

// A tick spacing that gives at most about eight labelled ticks on n integer positions.
double integer_tick_step(int64_t n) {
  const double raw = static_cast<double>(n) / 8.0;
  if (raw <= 1.0) return 1.0;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / p;
  return (m <= 1.0 ? 1.0 : m <= 2.0 ? 2.0 : m <= 5.0 ? 5.0 : 10.0) * p;
}

// [lo, hi] of `v` padded by `frac` of the span (or by ±0.5 when all values are equal).
void padded_range(const std::vector<double>& v, double frac, double& lo, double& hi) {
  lo = *std::min_element(v.begin(), v.end());
  hi = *std::max_element(v.begin(), v.end());
  if (hi - lo <= 1e-12 * std::max(1.0, std::abs(hi))) {
    lo -= 0.5, hi += 0.5;
    return;
  }
  const double pad = (hi - lo) * frac;
  lo -= pad, hi += pad;
}

// The inside corner (a PL_POSITION_* mask) where a legend of `entries` lines covers the fewest
// points of the drawn curves, sampled along every segment; ties prefer top right.
PLINT quietest_corner(const std::vector<std::vector<PLFLT>>& xs, const std::vector<std::vector<PLFLT>>& ys, double xmin,
                      double xmax, double ymin, double ymax, size_t entries) {
  const double w = 0.35, h = std::min(0.9, 0.06 + 0.07 * static_cast<double>(entries));
  const PLINT corners[4] = {PL_POSITION_RIGHT | PL_POSITION_TOP, PL_POSITION_LEFT | PL_POSITION_TOP,
                            PL_POSITION_RIGHT | PL_POSITION_BOTTOM, PL_POSITION_LEFT | PL_POSITION_BOTTOM};
  int hits[4] = {0, 0, 0, 0};
  auto count = [&](double u, double v) {
    const bool right = u >= 1 - w, left = u <= w, top = v >= 1 - h, bottom = v <= h;
    hits[0] += right && top, hits[1] += left && top, hits[2] += right && bottom, hits[3] += left && bottom;
  };
  constexpr int kSamples = 8;
  for (size_t k = 0; k < xs.size(); ++k)
    for (size_t p = 0; p < xs[k].size(); ++p) {
      const double u = (xs[k][p] - xmin) / (xmax - xmin), v = (ys[k][p] - ymin) / (ymax - ymin);
      count(u, v);
      if (p + 1 == xs[k].size()) break;
      const double u2 = (xs[k][p + 1] - xmin) / (xmax - xmin), v2 = (ys[k][p + 1] - ymin) / (ymax - ymin);
      for (int t = 1; t < kSamples; ++t) count(u + (u2 - u) * t / kSamples, v + (v2 - v) * t / kSamples);
    }
  return corners[std::min_element(hits, hits + 4) - hits];
}

// PLplot line style of a stroke: 1 is continuous, 3 long dashes, 2 short ones.
PLINT line_style(Stroke s) {
  return s == Stroke::Solid ? 1 : s == Stroke::Dashed ? 3 : 2;
}

// The contour of values − reference = 0 through the cell centres (it needs two of them each way),
// dashed white, over a heatmap drawn with one cell per value centred on x_first.., y_first...
void draw_reference_contour(const std::vector<double>& values, const std::vector<double>& reference, int64_t rows,
                            int64_t cols, int64_t x_first, int64_t y_first) {
  plcol0(kWhite);
  plwidth(2.5);
  pllsty(line_style(Stroke::Dashed));
  if (rows < 2 || cols < 2) {  // one row or column: a short line across the grid at each crossing
    const double x0 = static_cast<double>(x_first), y0 = static_cast<double>(y_first);
    for (double at : reference_crossings(values, reference)) {
      if (rows == 1)
        pljoin(x0 + at, y0 - 0.5, x0 + at, y0 + 0.5);
      else
        pljoin(x0 - 0.5, y0 + at, x0 + 0.5, y0 + at);
    }
    pllsty(1);
    return;
  }
  std::vector<std::vector<PLFLT>> diff(static_cast<size_t>(cols), std::vector<PLFLT>(static_cast<size_t>(rows)));
  std::vector<PLFLT*> diff_cols(static_cast<size_t>(cols));
  std::vector<PLFLT> xg(static_cast<size_t>(cols)), yg(static_cast<size_t>(rows));
  for (size_t j = 0; j < static_cast<size_t>(cols); ++j) {
    xg[j] = static_cast<double>(x_first) + static_cast<double>(j);
    for (size_t i = 0; i < static_cast<size_t>(rows); ++i) {
      const size_t at = i * static_cast<size_t>(cols) + j;
      diff[j][i] = values[at] - reference[at];
    }
    diff_cols[j] = diff[j].data();
  }
  for (size_t i = 0; i < static_cast<size_t>(rows); ++i) yg[i] = static_cast<double>(y_first) + static_cast<double>(i);
  PLcGrid grid{xg.data(), yg.data(), nullptr, static_cast<PLINT>(cols), static_cast<PLINT>(rows), 0};
  PLFLT level[1] = {0.0};
  plcont(diff_cols.data(), static_cast<PLINT>(cols), static_cast<PLINT>(rows), 1, static_cast<PLINT>(cols), 1,
         static_cast<PLINT>(rows), level, 1, pltr1, &grid);
  pllsty(1);
}

// Axis labels as plain decimals: PLplot otherwise switches to a shared "(x10^n)" factor once a
// label needs more than a few digits (accuracies 0.8700..0.8710), and clips that factor.
void plain_axis_labels() {
  plsxax(8, 0);
  plsyax(8, 0);
}

// Caption lines under the x label; `first` is the offset in character heights below the frame.
void draw_notes(const std::vector<std::string>& notes, double first) {
  plcol0(kBlack);
  plschr(0.0, 0.85);
  for (size_t k = 0; k < notes.size(); ++k)
    plmtex("b", first + 1.5 * static_cast<double>(k), 0.0, 0.0, notes[k].c_str());
  plschr(0.0, 1.1);
}

// The share of the page's height the caption lines need.
double notes_height(size_t n) {
  return n == 0 ? 0.0 : 0.03 + 0.035 * static_cast<double>(n);
}

// Offset of the first caption line, in (caption-sized) character heights below the frame: under
// the tick labels and the x label.
constexpr double kNotesOffset = 5.6;

}  // namespace

std::vector<double> reference_crossings(const std::vector<double>& values, const std::vector<double>& reference) {
  LR_CHECK(values.size() == reference.size(), "reference_crossings: {} values against {} reference cells",
           values.size(), reference.size());
  std::vector<double> at;
  for (size_t k = 0; k + 1 < values.size(); ++k) {
    const double d0 = values[k] - reference[k], d1 = values[k + 1] - reference[k + 1];
    if ((d0 > 0) != (d1 > 0)) at.push_back(static_cast<double>(k) + d0 / (d0 - d1));
  }
  return at;
}

ReferenceSide reference_side(const std::vector<double>& values, const std::vector<double>& reference) {
  LR_CHECK(values.size() == reference.size(), "reference_side: {} values against {} reference cells", values.size(),
           reference.size());
  size_t above = 0;
  for (size_t k = 0; k < values.size(); ++k) above += values[k] > reference[k];
  if (above == values.size()) return ReferenceSide::Above;
  return above == 0 ? ReferenceSide::AtOrBelow : ReferenceSide::Crosses;
}

void plot_heatmap(const std::string& path, const std::vector<double>& values, int64_t rows, int64_t cols,
                  const HeatmapOptions& opts) {
  LR_CHECK(rows >= 1 && cols >= 1 && static_cast<int64_t>(values.size()) == rows * cols,
           "plot_heatmap: {} values do not fill a {} x {} grid ({})", values.size(), rows, cols, path);
  for (double v : values)
    LR_CHECK(std::isfinite(v), "plot_heatmap: the {} x {} grid holds NaN or Inf ({})", rows, cols, path);
  double lo = std::isnan(opts.vmin) ? *std::min_element(values.begin(), values.end()) : opts.vmin;
  double hi = std::isnan(opts.vmax) ? *std::max_element(values.begin(), values.end()) : opts.vmax;
  LR_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "plot_heatmap: colour range [{}, {}] is empty ({})", lo,
           hi, path);
  LR_CHECK(opts.reference.empty() || opts.reference.size() == values.size(),
           "plot_heatmap: {} reference values for a {} x {} grid ({})", opts.reference.size(), rows, cols, path);
  if (lo == hi) lo -= 0.5, hi += 0.5;

  // plimagefr wants idata[x][y] and, without a transform, treats its nx x ny entries as the
  // corners of (nx − 1) x (ny − 1) cells spread over the given range, each cell coloured by its
  // lower-left corner. So one column and one row of padding give exactly one cell per value.
  // Values are clamped to the colour range, because PLplot leaves cells outside it blank.
  const size_t nx = static_cast<size_t>(cols) + 1, ny = static_cast<size_t>(rows) + 1;
  std::vector<std::vector<PLFLT>> data(nx, std::vector<PLFLT>(ny, lo));
  std::vector<const PLFLT*> columns(nx);
  for (size_t j = 0; j < nx; ++j) {
    for (size_t i = 0; i + 1 < ny && j + 1 < nx; ++i)
      data[j][i] = std::clamp(values[i * static_cast<size_t>(cols) + j], lo, hi);
    columns[j] = data[j].data();
  }
  const double x0 = static_cast<double>(opts.x_first) - 0.5, x1 = x0 + static_cast<double>(cols);
  const double y0 = static_cast<double>(opts.y_first) - 0.5, y1 = y0 + static_cast<double>(rows);

  std::lock_guard<std::mutex> lock(detail::plplot_mutex());
  Figure fig("plot_heatmap", path, opts.width, opts.height, set_colours);
  plschr(0.0, 1.1);
  plain_axis_labels();
  plvpor(0.14, 0.80, 0.11 + notes_height(opts.notes.size()), 0.90);
  plwind(x0, x1, opts.origin_top ? y1 : y0, opts.origin_top ? y0 : y1);
  plimagefr(columns.data(), static_cast<PLINT>(nx), static_cast<PLINT>(ny), x0, x1, y0, y1, lo, hi, lo, hi, nullptr,
            nullptr);
  if (!opts.reference.empty()) draw_reference_contour(values, opts.reference, rows, cols, opts.x_first, opts.y_first);
  plcol0(kBlack);
  plwidth(1.0);
  // Minor ticks only between labels that are more than one index apart.
  const double xstep = integer_tick_step(cols), ystep = integer_tick_step(rows);
  plbox("bcnst", xstep, xstep > 1 ? 0 : 1, "bcnstv", ystep, ystep > 1 ? 0 : 1);
  pllab(opts.x_label.c_str(), opts.y_label.c_str(), opts.title.c_str());

  const char* label = opts.colorbar_label.c_str();
  PLINT label_opts[1] = {PL_COLORBAR_LABEL_RIGHT};
  const char* axis_opts[1] = {"bcmstv"};
  PLFLT ticks[1] = {0.0};
  PLINT sub_ticks[1] = {0};
  PLINT n_values[1] = {2};
  PLFLT range[2] = {lo, hi};
  const PLFLT* range_ptr[1] = {range};
  PLFLT bar_w = 0, bar_h = 0;
  plcolorbar(&bar_w, &bar_h, PL_COLORBAR_IMAGE, PL_POSITION_RIGHT | PL_POSITION_OUTSIDE, 0.03, 0.0, 0.05, 1.0, kWhite,
             kBlack, 1, 0.0, 1.0, kBlack, 0.0, opts.colorbar_label.empty() ? 0 : 1, label_opts, &label, 1, axis_opts,
             ticks, sub_ticks, n_values, range_ptr);
  draw_notes(opts.notes, kNotesOffset);
  fig.finish();
}

void plot_heatmap(const std::string& path, const Tensor& matrix, const HeatmapOptions& opts) {
  LR_CHECK(matrix.defined() && matrix.dim() == 2, "plot_heatmap: needs a 2-D matrix, got {} ({})",
           matrix.defined() ? matrix.shape() : Shape{}, path);
  LR_CHECK(is_floating(matrix.dtype()), "plot_heatmap: needs a float matrix, got {} ({})", dtype_name(matrix.dtype()),
           path);
  plot_heatmap(path, matrix.to_vector<double>(), matrix.size(0), matrix.size(1), opts);
}

void plot_heatmap_panels(const std::string& path, const std::vector<HeatmapPanel>& panels,
                         const HeatmapPanelsOptions& opts) {
  const int64_t n = static_cast<int64_t>(panels.size());
  LR_CHECK(n >= 1 && n <= 200, "plot_heatmap_panels: {} panels, expected 1..200 ({})", n, path);
  LR_CHECK(std::isfinite(opts.vmin) && std::isfinite(opts.vmax) && opts.vmin < opts.vmax,
           "plot_heatmap_panels: colour range [{}, {}] is empty ({})", opts.vmin, opts.vmax, path);
  LR_CHECK(opts.columns >= 0 && opts.group >= 1, "plot_heatmap_panels: columns {} and group {} ({})", opts.columns,
           opts.group, path);
  LR_CHECK(opts.panel_width >= 60 && opts.panel_height >= 60, "plot_heatmap_panels: panels of {} x {} pixels ({})",
           opts.panel_width, opts.panel_height, path);
  for (const HeatmapPanel& p : panels) {
    LR_CHECK(p.rows >= 1 && p.cols >= 1 && static_cast<int64_t>(p.values.size()) == p.rows * p.cols,
             "plot_heatmap_panels: panel '{}' has {} values for a {} x {} grid ({})", p.title, p.values.size(), p.rows,
             p.cols, path);
    for (double v : p.values)
      LR_CHECK(std::isfinite(v), "plot_heatmap_panels: panel '{}' holds NaN or Inf ({})", p.title, path);
    LR_CHECK(p.reference.empty() || p.reference.size() == p.values.size(),
             "plot_heatmap_panels: panel '{}' has {} reference values for a {} x {} grid ({})", p.title,
             p.reference.size(), p.rows, p.cols, path);
  }
  int64_t columns = opts.columns;
  if (columns == 0) {
    columns = static_cast<int64_t>(std::ceil(std::sqrt(1.5 * static_cast<double>(n))));
    columns = (columns + opts.group - 1) / opts.group * opts.group;
  }
  columns = std::min(columns, n);
  const int64_t rows = (n + columns - 1) / columns;

  // Pixel layout: every panel gets room for its title above, tick labels and axis labels left of
  // and below it; the figure adds its title on top, the colour bar on the right, captions below.
  const double pw = opts.panel_width, ph = opts.panel_height;
  const double pad_left = 62, pad_right = 18, pad_top = 32, pad_bottom = 56;
  const double head = opts.title.empty() ? 20 : 56, bar = 120, foot = 16 + 24 * static_cast<double>(opts.notes.size());
  const double cell_w = pad_left + pw + pad_right, cell_h = pad_top + ph + pad_bottom;
  // Wide enough for the title and caption lines too (a grid of one or two panels is narrow): their
  // width estimated at 0.8 of PLplot's character height (about a cap height) per code point, above a
  // sans font's average.
  double text_w = 0;
  auto code_points = [](const std::string& t) {
    return static_cast<double>(std::count_if(t.begin(), t.end(), [](char ch) { return (ch & 0xC0) != 0x80; }));
  };
  text_w = std::max(text_w, code_points(opts.title) * 0.8 * 14.0 * 1.35);
  for (const std::string& line : opts.notes) text_w = std::max(text_w, code_points(line) * 0.8 * 14.0 * 0.9);
  const double grid_w = static_cast<double>(columns) * cell_w + bar;
  const double width = std::max(10 + grid_w, text_w + 40);
  const double left = (width - grid_w) / 2;  // the grid centred under a wider caption
  const double height = head + static_cast<double>(rows) * cell_h + foot;
  LR_CHECK(width <= 10000 && height <= 10000,
           "plot_heatmap_panels: {} panels of {} x {} pixels in {} columns make a {:.0f} x {:.0f} figure, over "
           "10000 pixels ({})",
           n, opts.panel_width, opts.panel_height, columns, width, height, path);
  const double lo = opts.vmin, hi = opts.vmax;

  std::lock_guard<std::mutex> lock(detail::plplot_mutex());
  Figure fig("plot_heatmap_panels", path, static_cast<int>(width), static_cast<int>(height), set_colours);
  plain_axis_labels();
  // PLplot's default character height grows with the page; a grid of many panels needs the same
  // text as a grid of two, so fix the base height in pixels (the scales below are relative to it).
  PLFLT page_x0 = 0, page_x1 = 0, page_y0 = 0, page_y1 = 0;
  plgspa(&page_x0, &page_x1, &page_y0, &page_y1);
  const double mm_per_pixel = (page_x1 - page_x0) / width;
  const double base_mm = 14.0 * mm_per_pixel;
  auto text_size = [&](double scale) { plschr(base_mm, scale); };
  plsmaj(6.0 * mm_per_pixel, 1.0);  // tick lengths, likewise
  plsmin(3.0 * mm_per_pixel, 1.0);
  // Normalised page coordinates of a pixel box (y counted from the top).
  auto viewport = [&](double x0, double y0, double w, double h) {
    plvpor(x0 / width, (x0 + w) / width, 1.0 - (y0 + h) / height, 1.0 - y0 / height);
  };
  for (int64_t k = 0; k < n; ++k) {
    const HeatmapPanel& p = panels[static_cast<size_t>(k)];
    const double px = left + static_cast<double>(k % columns) * cell_w + pad_left;
    const double py = head + static_cast<double>(k / columns) * cell_h + pad_top;
    // One cell per value, as plot_heatmap draws it (plimagefr colours a cell by its lower-left corner).
    const size_t nx = static_cast<size_t>(p.cols) + 1, ny = static_cast<size_t>(p.rows) + 1;
    std::vector<std::vector<PLFLT>> data(nx, std::vector<PLFLT>(ny, lo));
    std::vector<const PLFLT*> cols(nx);
    for (size_t j = 0; j < nx; ++j) {
      for (size_t i = 0; i + 1 < ny && j + 1 < nx; ++i)
        data[j][i] = std::clamp(p.values[i * static_cast<size_t>(p.cols) + j], lo, hi);
      cols[j] = data[j].data();
    }
    const double x0 = static_cast<double>(opts.x_first) - 0.5, x1 = x0 + static_cast<double>(p.cols);
    const double y0 = static_cast<double>(opts.y_first) - 0.5, y1 = y0 + static_cast<double>(p.rows);
    viewport(px, py, pw, ph);
    plwind(x0, x1, y1, y0);  // first row at the top, as a matrix is printed
    plimagefr(cols.data(), static_cast<PLINT>(nx), static_cast<PLINT>(ny), x0, x1, y0, y1, lo, hi, lo, hi, nullptr,
              nullptr);
    if (!p.reference.empty()) draw_reference_contour(p.values, p.reference, p.rows, p.cols, opts.x_first, opts.y_first);
    plcol0(kBlack);
    plwidth(1.0);
    text_size(0.85);
    const double xstep = integer_tick_step(p.cols), ystep = integer_tick_step(p.rows);
    plbox("bcnst", xstep, xstep > 1 ? 0 : 1, "bcnstv", ystep, ystep > 1 ? 0 : 1);
    text_size(1.0);
    plmtex("b", 3.0, 0.5, 0.5, opts.x_label.c_str());
    plmtex("l", 3.2, 0.5, 0.5, opts.y_label.c_str());
    text_size(1.05);
    plmtex("t", 0.9, 0.5, 0.5, p.title.c_str());
  }

  // The shared colour bar: a vertical ramp from vmin to vmax beside the grid, labelled on its right.
  constexpr int kSteps = 256;
  std::vector<PLFLT> ramp(kSteps + 1);
  for (int s = 0; s <= kSteps; ++s) ramp[static_cast<size_t>(s)] = lo + (hi - lo) * s / kSteps;
  const PLFLT* ramp_cols[2] = {ramp.data(), ramp.data()};
  const double grid_h = static_cast<double>(rows) * cell_h - pad_top - pad_bottom;
  const double bar_h = std::min(grid_h, std::max(ph, 0.8 * grid_h));
  viewport(left + static_cast<double>(columns) * cell_w + 12, head + pad_top + (grid_h - bar_h) / 2, 22, bar_h);
  plwind(0.0, 1.0, lo, hi);
  plimagefr(ramp_cols, 2, kSteps + 1, 0.0, 1.0, lo, hi, lo, hi, lo, hi, nullptr, nullptr);
  plcol0(kBlack);
  text_size(0.85);
  plbox("bc", 0, 0, "bcmstv", 0, 0);
  text_size(1.0);
  if (!opts.colorbar_label.empty()) plmtex("r", 4.2, 0.5, 0.5, opts.colorbar_label.c_str());

  // Figure title and caption lines, over the whole page.
  plvpor(0.0, 1.0, 0.0, 1.0);
  plwind(0.0, width, height, 0.0);  // pixels, y down
  if (!opts.title.empty()) {
    text_size(1.35);
    plptex(width / 2, 30, 1.0, 0.0, 0.5, opts.title.c_str());
  }
  text_size(0.9);
  for (size_t k = 0; k < opts.notes.size(); ++k)
    plptex(16, height - foot + 14 + 24 * static_cast<double>(k), 1.0, 0.0, 0.0, opts.notes[k].c_str());
  fig.finish();
}

void plot_lines(const std::string& path, const std::vector<Series>& series, const LineOptions& opts) {
  LR_CHECK(!series.empty(), "plot_lines: no series to draw ({})", path);
  std::vector<std::vector<PLFLT>> xs, ys;
  std::vector<double> all_x, all_y;
  for (const Series& s : series) {
    LR_CHECK(!s.x.empty() && s.x.size() == s.y.size(), "plot_lines: series '{}' has {} x and {} y values ({})", s.label,
             s.x.size(), s.y.size(), path);
    std::vector<PLFLT> x(s.x.size()), y(s.y.size());
    for (size_t k = 0; k < s.x.size(); ++k) {
      LR_CHECK(std::isfinite(s.x[k]) && std::isfinite(s.y[k]),
               "plot_lines: series '{}' holds NaN or Inf at point {} ({})", s.label, k, path);
      LR_CHECK(!opts.log_x || s.x[k] > 0, "plot_lines: series '{}' has x = {} <= 0 on a log axis ({})", s.label, s.x[k],
               path);
      LR_CHECK(!opts.log_y || s.y[k] > 0, "plot_lines: series '{}' has y = {} <= 0 on a log axis ({})", s.label, s.y[k],
               path);
      // PLplot draws log axes over log10 of the data.
      x[k] = opts.log_x ? std::log10(s.x[k]) : s.x[k];
      y[k] = opts.log_y ? std::log10(s.y[k]) : s.y[k];
    }
    all_x.insert(all_x.end(), x.begin(), x.end());
    all_y.insert(all_y.end(), y.begin(), y.end());
    xs.push_back(std::move(x));
    ys.push_back(std::move(y));
  }
  for (const HLine& h : opts.hlines) {
    LR_CHECK(std::isfinite(h.y) && (!opts.log_y || h.y > 0), "plot_lines: reference line '{}' at y = {} ({})", h.label,
             h.y, path);
    all_y.push_back(opts.log_y ? std::log10(h.y) : h.y);
  }
  double xmin, xmax, ymin, ymax;
  padded_range(all_x, 0.02, xmin, xmax);
  padded_range(all_y, 0.05, ymin, ymax);
  if (!std::isnan(opts.y_min)) ymin = opts.log_y ? std::log10(opts.y_min) : opts.y_min;
  if (!std::isnan(opts.y_max)) ymax = opts.log_y ? std::log10(opts.y_max) : opts.y_max;
  LR_CHECK(std::isfinite(ymin) && std::isfinite(ymax) && ymin < ymax, "plot_lines: y range [{}, {}] is empty ({})",
           opts.y_min, opts.y_max, path);

  std::lock_guard<std::mutex> lock(detail::plplot_mutex());
  Figure fig("plot_lines", path, opts.width, opts.height, set_colours);
  plschr(0.0, 1.1);
  plain_axis_labels();
  plvpor(0.10, opts.legend_outside ? 0.58 : 0.96, 0.11 + notes_height(opts.notes.size()), 0.91);
  plwind(xmin, xmax, ymin, ymax);
  const std::string lx = opts.log_x ? "l" : "", ly = opts.log_y ? "l" : "";
  plcol0(kGrid);
  plwidth(1.0);
  plbox(("g" + lx).c_str(), 0, 0, ("g" + ly).c_str(), 0, 0);
  plcol0(kBlack);
  plbox(("bcnst" + lx).c_str(), 0, 0, ("bcnstv" + ly).c_str(), 0, 0);
  pllab(opts.x_label.c_str(), opts.y_label.c_str(), opts.title.c_str());

  std::vector<PLINT> legend_opts, colours, styles, symbol_numbers;
  std::vector<PLFLT> widths, symbol_scales;
  std::vector<const char*> texts, symbols;
  const char* dot = "•";
  auto add_entry = [&](const std::string& label, PLINT colour, PLINT style, bool line, bool dots) {
    legend_opts.push_back((line ? PL_LEGEND_LINE : 0) | (dots ? PL_LEGEND_SYMBOL : 0));
    colours.push_back(colour);
    styles.push_back(style);
    widths.push_back(2.0);
    symbol_numbers.push_back(1);
    symbol_scales.push_back(1.0);
    symbols.push_back(dot);
    texts.push_back(label.c_str());
  };
  PLINT next_colour = 0;
  for (size_t k = 0; k < series.size(); ++k) {
    const PLINT colour = series[k].grey ? kReferenceGrey : kFirstSeries + (next_colour++ % kSeriesColours);
    const PLINT n = static_cast<PLINT>(xs[k].size());
    const bool dots = opts.markers || n == 1;
    plcol0(colour);
    plwidth(2.0);
    pllsty(line_style(series[k].stroke));
    if (n > 1) plline(n, xs[k].data(), ys[k].data());
    pllsty(1);
    if (dots) {
      // Only the points inside the frame: PLplot clips lines there, but not text glyphs.
      std::vector<PLFLT> px, py;
      for (PLINT p = 0; p < n; ++p)
        if (ys[k][p] >= ymin && ys[k][p] <= ymax) px.push_back(xs[k][p]), py.push_back(ys[k][p]);
      if (!px.empty()) plstring(static_cast<PLINT>(px.size()), px.data(), py.data(), dot);
    }
    if (!series[k].label.empty()) add_entry(series[k].label, colour, line_style(series[k].stroke), n > 1, dots);
  }
  for (const HLine& h : opts.hlines) {
    const PLINT colour = kFirstSeries + (next_colour++ % kSeriesColours);
    const PLFLT hy = opts.log_y ? std::log10(h.y) : h.y;
    PLFLT lx2[2] = {xmin, xmax}, ly2[2] = {hy, hy};
    plcol0(colour);
    plwidth(2.0);
    pllsty(line_style(h.stroke));
    plline(2, lx2, ly2);
    pllsty(1);
    add_entry(h.label, colour, line_style(h.stroke), true, false);
  }
  if (!texts.empty()) {
    PLFLT legend_w = 0, legend_h = 0;
    plwidth(1.0);
    // The reference lines count as drawn curves when choosing a corner.
    std::vector<std::vector<PLFLT>> cx = xs, cy = ys;
    for (const HLine& h : opts.hlines) {
      cx.push_back({xmin, xmax});
      cy.push_back(std::vector<PLFLT>(2, opts.log_y ? std::log10(h.y) : h.y));
    }
    const PLINT position = opts.legend_outside
                               ? PL_POSITION_RIGHT | PL_POSITION_OUTSIDE
                               : quietest_corner(cx, cy, xmin, xmax, ymin, ymax, texts.size()) | PL_POSITION_INSIDE;
    pllegend(&legend_w, &legend_h, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX, position, 0.02, 0.02, 0.08, kWhite,
             kBlack, 1, 0, 0, static_cast<PLINT>(texts.size()), legend_opts.data(), 1.0,
             opts.legend_outside ? 0.8 : 0.9, 2.0, 0.0, colours.data(), texts.data(), nullptr, nullptr, nullptr,
             nullptr, colours.data(), styles.data(), widths.data(), colours.data(), symbol_scales.data(),
             symbol_numbers.data(), symbols.data());
  }
  draw_notes(opts.notes, kNotesOffset);
  fig.finish();
}

}  // namespace lowrank::analysis
