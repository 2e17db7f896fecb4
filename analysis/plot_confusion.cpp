// The confusion-matrix figure, drawn on a detail::Figure (plot_figure.h) under the lock every
// PLplot figure of the program takes.
#include "analysis/plot_confusion.h"

#include <plplot.h>

#include <algorithm>
#include <cstdio>
#include <mutex>

#include "analysis/plot_figure.h"
#include "core/error.h"

namespace lowrank::analysis {
namespace {

constexpr PLINT kWhite = 0, kBlack = 1;
// cmap1 from white to matplotlib's "Blues" dark end: zero cells stay white, so the diagonal reads at once.
constexpr int kPoints = 3;
constexpr PLFLT kPos[kPoints] = {0.0, 0.5, 1.0};
constexpr PLFLT kR[kPoints] = {1.0, 0.42, 0.03}, kG[kPoints] = {1.0, 0.68, 0.19}, kB[kPoints] = {1.0, 0.84, 0.42};

void set_colours() {
  plscmap0n(3);
  plscol0(kWhite, 255, 255, 255);
  plscol0(kBlack, 0, 0, 0);
  plscol0(2, 225, 225, 225);
  plscmap1n(256);
  plscmap1l(1, kPoints, kPos, kR, kG, kB, nullptr);
}

}  // namespace

void plot_confusion(const std::string& path, const std::vector<int64_t>& counts,
                    const std::vector<std::string>& classes, const ConfusionOptions& opts) {
  const size_t K = classes.size();
  LR_CHECK(K >= 1 && counts.size() == K * K, "plot_confusion: {} counts for {} classes ({})", counts.size(), K, path);
  std::vector<double> share(K * K, 0.0);
  std::vector<int64_t> row_total(K, 0);
  for (size_t i = 0; i < K; ++i) {
    for (size_t j = 0; j < K; ++j) {
      LR_CHECK(counts[i * K + j] >= 0, "plot_confusion: negative count at ({}, {}) ({})", i, j, path);
      row_total[i] += counts[i * K + j];
    }
    for (size_t j = 0; j < K; ++j)
      if (row_total[i] > 0)
        share[i * K + j] = static_cast<double>(counts[i * K + j]) / static_cast<double>(row_total[i]);
  }
  // plimagefr treats its nx x ny entries as cell corners, colouring each cell by its lower-left
  // one: one extra row and column give exactly one cell per value. Row i (true class i) is drawn
  // at y = i with the first class at the top.
  const size_t nx = K + 1, ny = K + 1;
  std::vector<std::vector<PLFLT>> data(nx, std::vector<PLFLT>(ny, 0.0));
  std::vector<const PLFLT*> columns(nx);
  for (size_t j = 0; j < nx; ++j) {
    for (size_t i = 0; i + 1 < ny && j + 1 < nx; ++i) data[j][i] = share[i * K + j];
    columns[j] = data[j].data();
  }
  const double n = static_cast<double>(K);

  std::lock_guard<std::mutex> lock(detail::plplot_mutex());
  detail::Figure fig("plot_confusion", path, opts.width, opts.height, set_colours);
  // Margins that fit the class names written across the axes and the axis titles beyond them
  // (fixed margins cut the titles off the page once the names are long).
  const double name_scale = std::clamp(9.0 / n, 0.5, 1.0), title_scale = 1.1;
  size_t longest = 1;
  for (const std::string& c : classes) longest = std::max(longest, c.size());
  PLFLT default_mm = 0, name_mm = 0, title_mm = 0;
  plschr(0.0, name_scale);
  plgchr(&default_mm, &name_mm);
  plschr(0.0, title_scale);
  plgchr(&default_mm, &title_mm);
  // A sans character is about 0.75 of its height wide; the names start 0.7 heights off the frame.
  const double names_mm = (0.7 + 0.75 * static_cast<double>(longest)) * name_mm;
  const double title_disp = names_mm / title_mm + 1.6;  // in title character heights
  PLFLT page_x0 = 0, page_x1 = 0, page_y0 = 0, page_y1 = 0;
  plgspa(&page_x0, &page_x1, &page_y0, &page_y1);
  const double margin_mm = (title_disp + 0.6) * title_mm;
  const double left = std::clamp(margin_mm / (page_x1 - page_x0) + 0.02, 0.12, 0.45);
  const double bottom = std::clamp(margin_mm / (page_y1 - page_y0) + 0.02, 0.12, 0.45);
  plschr(0.0, 1.0);
  plvpor(left, 0.86, bottom, 0.90);
  plwind(-0.5, n - 0.5, n - 0.5, -0.5);
  plimagefr(columns.data(), static_cast<PLINT>(nx), static_cast<PLINT>(ny), -0.5, n - 0.5, -0.5, n - 0.5, 0.0, 1.0, 0.0,
            1.0, nullptr, nullptr);
  plcol0(kBlack);
  plwidth(1.0);
  plbox("bc", 0, 0, "bc", 0, 0);
  // The share in every cell, white on dark cells; class names along both axes.
  const double cell_chars = std::clamp(8.0 / n, 0.45, 1.0);
  for (size_t i = 0; i < K; ++i) {
    for (size_t j = 0; j < K; ++j) {
      char text[16];
      if (row_total[i] == 0)
        std::snprintf(text, sizeof text, "%s", j == i ? "(none)" : "");
      else
        std::snprintf(text, sizeof text, "%.2f", share[i * K + j]);
      plschr(0.0, cell_chars);
      plcol0(share[i * K + j] > 0.55 ? kWhite : kBlack);
      plptex(static_cast<double>(j), static_cast<double>(i) + 0.1, 1.0, 0.0, 0.5, text);
    }
  }
  plcol0(kBlack);
  plschr(0.0, name_scale);
  for (size_t k = 0; k < K; ++k) {
    const double pos = (static_cast<double>(k) + 0.5) / n;
    plmtex("bv", 0.7, pos, 1.0, classes[k].c_str());
    plmtex("lv", 0.7, 1.0 - pos, 1.0, classes[k].c_str());
  }
  plschr(0.0, title_scale);
  plmtex("b", title_disp, 0.5, 0.5, "predicted class");
  plmtex("l", title_disp, 0.5, 0.5, "true class");
  plmtex("t", 2.0, 0.5, 0.5, opts.title.c_str());

  const char* label = "share of the true class's documents";
  PLINT label_opts[1] = {PL_COLORBAR_LABEL_RIGHT};
  const char* axis_opts[1] = {"bcmstv"};
  PLFLT ticks[1] = {0.0};
  PLINT sub_ticks[1] = {0};
  PLINT n_values[1] = {2};
  PLFLT range[2] = {0.0, 1.0};
  const PLFLT* range_ptr[1] = {range};
  PLFLT bar_w = 0, bar_h = 0;
  plschr(0.0, 0.9);
  plcolorbar(&bar_w, &bar_h, PL_COLORBAR_IMAGE, PL_POSITION_RIGHT | PL_POSITION_OUTSIDE, 0.02, 0.0, 0.04, 1.0, kWhite,
             kBlack, 1, 0.0, 1.0, kBlack, 0.0, 1, label_opts, &label, 1, axis_opts, ticks, sub_ticks, n_values,
             range_ptr);
  fig.finish();
}

}  // namespace lowrank::analysis
