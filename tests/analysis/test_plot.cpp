// Plot wrappers: PNG files of the requested size appear atomically (no temporaries left behind),
// from several threads at once, and bad input is refused before anything is written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "analysis/plot.h"
#include "analysis/plot_confusion.h"
#include "core/ops.h"
#include "support/errors.h"

using namespace lowrank;
using namespace lowrank::analysis;
namespace fs = std::filesystem;

namespace {

class Plot : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lowrank_plot_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Everything in the folder: only finished figures may be there.
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

// Width and height from the PNG signature and IHDR chunk.
std::pair<uint32_t, uint32_t> png_size(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  unsigned char h[24] = {};
  in.read(reinterpret_cast<char*>(h), sizeof h);
  EXPECT_EQ(in.gcount(), 24);
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  EXPECT_TRUE(std::equal(sig, sig + 8, h)) << file << " is not a PNG";
  auto be32 = [&](int o) {
    return uint32_t(h[o]) << 24 | uint32_t(h[o + 1]) << 16 | uint32_t(h[o + 2]) << 8 | h[o + 3];
  };
  return {be32(16), be32(20)};
}

std::vector<Series> curves() {
  std::vector<Series> s(2);
  s[0].label = "train";
  s[1].label = "test";
  for (int i = 1; i <= 20; ++i) {
    s[0].x.push_back(i), s[0].y.push_back(2.0 * std::exp(-0.2 * i) + 0.05);
    s[1].x.push_back(i), s[1].y.push_back(2.0 * std::exp(-0.15 * i) + 0.1);
  }
  return s;
}

// The side of a reference the captions report: strictly above counts as above, equal does not.
TEST(ReferenceSide, AboveAtOrBelowOrCrossing) {
  EXPECT_EQ(reference_side({0.5, 0.9}, {0.25, 0.5}), ReferenceSide::Above);
  EXPECT_EQ(reference_side({0.25, 0.1}, {0.25, 0.5}), ReferenceSide::AtOrBelow);
  EXPECT_EQ(reference_side({0.5, 0.1}, {0.25, 0.5}), ReferenceSide::Crosses);
  EXPECT_THROW(reference_side({0.5}, {0.25, 0.5}), Error);
}

// A one-row (or one-column) grid's contour: where values - reference changes side between two cell
// centres, interpolated linearly; a cell exactly at the reference counts as "at or below".
TEST(ReferenceCrossings, InterpolatedBetweenCellCentres) {
  const std::vector<double> chance(4, 0.2);
  const std::vector<double> at = reference_crossings({0.1, 0.5, 0.6, 0.2}, chance);
  ASSERT_EQ(at.size(), 2u);
  EXPECT_DOUBLE_EQ(at[0], 0.25);  // -0.1 -> +0.3
  EXPECT_DOUBLE_EQ(at[1], 3.0);   // +0.4 -> 0 (at the reference: at or below)
  EXPECT_TRUE(reference_crossings({0.3, 0.4, 0.5, 0.6}, chance).empty());
  EXPECT_TRUE(reference_crossings({0.2, 0.2, 0.1, 0.0}, chance).empty());
  EXPECT_TRUE(reference_crossings({0.7}, {0.2}).empty());
  EXPECT_THROW(reference_crossings({0.5}, chance), Error);
}

TEST_F(Plot, HeatmapWritesPngOfRequestedSize) {
  std::vector<double> v(8 * 12);
  for (size_t k = 0; k < v.size(); ++k) v[k] = static_cast<double>(k) / static_cast<double>(v.size());
  HeatmapOptions o;
  o.title = "φ(A_r=8, A_r=12, i, j)";
  o.colorbar_label = "φ";
  o.vmin = 0, o.vmax = 1;
  o.width = 640, o.height = 480;
  plot_heatmap(path("grid.png"), v, 8, 12, o);
  EXPECT_GT(fs::file_size(path("grid.png")), 1000u);
  EXPECT_EQ(png_size(path("grid.png")), (std::pair<uint32_t, uint32_t>{640, 480}));
  EXPECT_EQ(listing(), std::vector<std::string>{"grid.png"});
}

TEST_F(Plot, HeatmapFromTensorAndConstantData) {
  plot_heatmap(path("t.png"), randn({5, 3}, 1).mT(), {});          // non-contiguous f32 view
  plot_heatmap(path("c.png"), std::vector<double>(4, 0.7), 2, 2);  // constant: widened colour range
  plot_heatmap(path("one.png"), std::vector<double>{0.3}, 1, 1);
  EXPECT_EQ(listing(), (std::vector<std::string>{"c.png", "one.png", "t.png"}));
  for (auto n : listing()) EXPECT_GT(fs::file_size(path(n)), 1000u) << n;
}

TEST_F(Plot, LinesLinearAndLogAxes) {
  LineOptions o;
  o.title = "loss";
  o.x_label = "epoch";
  o.y_label = "cross-entropy";
  plot_lines(path("lin.png"), curves(), o);
  o.log_y = true;
  o.markers = true;
  plot_lines(path("log.png"), curves(), o);
  o.log_x = true;
  o.width = 500, o.height = 400;
  auto s = curves();
  s.push_back(Series{"", {3.0}, {0.5}});  // unlabelled single point
  plot_lines(path("loglog.png"), s, o);
  EXPECT_EQ(listing(), (std::vector<std::string>{"lin.png", "log.png", "loglog.png"}));
  EXPECT_EQ(png_size(path("loglog.png")), (std::pair<uint32_t, uint32_t>{500, 400}));
  EXPECT_EQ(png_size(path("lin.png")), (std::pair<uint32_t, uint32_t>{900, 600}));
}

// Reference levels: a contour on a heatmap (φ against chance), labelled horizontal lines, a fixed
// y range that clips, an outside legend and caption lines. Set LOWRANK_KEEP_PLOTS=DIR to look at them.
TEST_F(Plot, ReferenceLevelsCaptionsAndFixedRange) {
  const int64_t rows = 8, cols = 16, n = 32;
  std::vector<double> v, chance;
  for (int64_t i = 1; i <= rows; ++i)
    for (int64_t j = 1; j <= cols; ++j) {
      v.push_back(0.9 * std::exp(-0.15 * static_cast<double>(i + j)) + 0.1);
      chance.push_back(static_cast<double>(std::max(i, j)) / static_cast<double>(n));
    }
  HeatmapOptions h;
  h.title = "phi with its chance level", h.vmin = 0, h.vmax = 1, h.colorbar_label = "phi";
  h.reference = chance;
  h.notes = {"white dashes: phi = chance max(i, j)/32", "a second caption line"};
  plot_heatmap(path("contour.png"), v, rows, cols, h);
  // One row: the contour is a short line across the row where phi crosses chance (here between the
  // first two cells, the only one below chance at the edge).
  HeatmapOptions one = h;
  one.reference = {0.5, 0.5, 0.5, 0.5};
  one.notes = {"white dashes: phi = chance, between the first two cells"};
  plot_heatmap(path("contour_row.png"), {0.3, 0.8, 0.9, 0.7}, 1, 4, one);
  h.reference.pop_back();
  EXPECT_TRUE(test::throws_with([&] { plot_heatmap(path("bad.png"), v, rows, cols, h); }, {"reference values"}));

  LineOptions o;
  o.title = "accuracy", o.markers = true, o.legend_outside = true, o.width = 1250;
  o.hlines = {{"base: 0.8809", 0.8809, Stroke::Dashed}, {"scaled: 0.8810", 0.8810, Stroke::Dotted}};
  o.y_min = 0.86, o.y_max = 0.90;  // the first point of each series falls below
  o.notes = {"y zoomed: 2 points below the frame"};
  std::vector<Series> s = {{"lora", {8, 32, 64}, {0.70, 0.875, 0.884}},
                           {"chance", {8, 32, 64}, {0.65, 0.87, 0.88}, Stroke::Dashed, true}};
  plot_lines(path("refs.png"), s, o);
  EXPECT_EQ(png_size(path("refs.png")), (std::pair<uint32_t, uint32_t>{1250, 600}));
  o.y_min = 0.9;
  EXPECT_TRUE(test::throws_with([&] { plot_lines(path("bad.png"), s, o); }, {"y range"}));
  EXPECT_EQ(listing(), (std::vector<std::string>{"contour.png", "contour_row.png", "refs.png"}));
  if (const char* keep = std::getenv("LOWRANK_KEEP_PLOTS"))
    for (const char* f : {"contour.png", "contour_row.png", "refs.png"})
      fs::copy_file(path(f), fs::path(keep) / f, fs::copy_options::overwrite_existing);
}

TEST_F(Plot, OverwritesAnExistingFigure) {
  { std::ofstream(path("f.png")) << "old"; }
  plot_lines(path("f.png"), curves());
  EXPECT_GT(fs::file_size(path("f.png")), 1000u);
  png_size(path("f.png"));
  EXPECT_EQ(listing(), std::vector<std::string>{"f.png"});
}

TEST_F(Plot, ConcurrentCallsAreSerialised) {
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([this, t] {
      if (t % 2)
        plot_lines(path("l" + std::to_string(t) + ".png"), curves());
      else
        plot_heatmap(path("h" + std::to_string(t) + ".png"), std::vector<double>{0, 1, 2, 3}, 2, 2);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(listing(), (std::vector<std::string>{"h0.png", "h2.png", "l1.png", "l3.png"}));
  for (auto n : listing()) png_size(path(n));
}

TEST_F(Plot, BadInputWritesNothing) {
  EXPECT_TRUE(test::throws_with([&] { plot_heatmap(path("a.png"), std::vector<double>(5), 2, 3); }, {"do not fill"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        plot_heatmap(path("a.png"), std::vector<double>{0, NAN}, 1, 2);
      },
      {"NaN or Inf"}));
  HeatmapOptions bad_range;
  bad_range.vmin = 1, bad_range.vmax = 0;
  EXPECT_TRUE(test::throws_with(
      [&] {
        plot_heatmap(path("a.png"), std::vector<double>{0, 1}, 1, 2, bad_range);
      },
      {"colour range"}));
  EXPECT_TRUE(test::throws_with([&] { plot_heatmap(path("a.png"), Tensor::zeros({3})); }, {"2-D"}));
  EXPECT_TRUE(test::throws_with([&] { plot_lines(path("a.png"), {}); }, {"no series"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        plot_lines(path("a.png"), {Series{"s", {1, 2}, {1}}});
      },
      {"'s' has 2 x and 1 y"}));
  EXPECT_TRUE(test::throws_with([&] { plot_lines(path("a.png"), {Series{"s", {}, {}}}); }, {"has 0 x"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        plot_lines(path("a.png"), {Series{"s", {1, 2}, {1, INFINITY}}});
      },
      {"NaN or Inf"}));
  LineOptions log;
  log.log_y = true;
  EXPECT_TRUE(test::throws_with([&] { plot_lines(path("a.png"), {Series{"s", {1, 2}, {1, 0}}}, log); }, {"log axis"}));
  LineOptions tiny;
  tiny.width = 10;
  EXPECT_TRUE(test::throws_with([&] { plot_lines(path("a.png"), curves(), tiny); }, {"figure size"}));
  EXPECT_TRUE(test::throws_with([&] { plot_lines(path("no/such/folder/a.png"), curves()); }, {"does not exist"}));
  EXPECT_TRUE(listing().empty());
}

// A φ-like grid with structure (high in the top-left corner, falling with i and j), different per
// panel, and its chance level max(i, j)/n.
HeatmapPanel phi_panel(const std::string& title, int64_t rows, int64_t cols, int64_t n, double strength) {
  HeatmapPanel p{title, {}, rows, cols, {}};
  for (int64_t i = 1; i <= rows; ++i)
    for (int64_t j = 1; j <= cols; ++j) {
      p.values.push_back(strength * std::exp(-0.25 * static_cast<double>(i - 1) - 0.03 * static_cast<double>(j - 1)) +
                         0.05);
      p.reference.push_back(static_cast<double>(std::max(i, j)) / static_cast<double>(n));
    }
  return p;
}

std::vector<HeatmapPanel> layer_panels(int64_t layers, int64_t rows, int64_t cols) {
  std::vector<HeatmapPanel> out;
  for (int64_t l = 0; l < layers; ++l)
    for (const char* t : {"query", "value"})
      out.push_back(
          phi_panel("h." + std::to_string(l) + " " + t, rows, cols, 768, 0.5 + 0.4 * static_cast<double>(l % 3) / 2.0));
  return out;
}

// The LoRA paper's Figures 3 and 4 as grids: one panel per layer × target, one colour bar, captions.
// The size is the sum of the panels and margins, so it grows with the grid. LOWRANK_KEEP_PLOTS=DIR keeps them.
TEST_F(Plot, HeatmapPanelsLayOutLayersAndTargets) {
  HeatmapPanelsOptions o;
  o.title = "φ(A_r=8, A_r=64, i, j), GPT-2 small";
  o.colorbar_label = "φ";
  o.group = 2;
  o.notes = {"rows i: top-i right singular vectors of A (r = 8); columns j: of A (r = 64)",
             "white dashes: chance level max(i, j)/768"};
  plot_heatmap_panels(path("fig3.png"), layer_panels(1, 8, 64), o);  // one layer: q and v side by side
  const auto [w1, h1] = png_size(path("fig3.png"));
  o.title = "φ(A_seed1, A_seed2, i, j) at r = 64, i, j ≤ 8";
  o.notes = {"rows i: top-i right singular vectors of A (seed 1); columns j: of A (seed 2)",
             "white dashes: chance level max(i, j)/768"};
  plot_heatmap_panels(path("p12.png"), layer_panels(6, 8, 8), o);
  const auto [w12, h12] = png_size(path("p12.png"));
  plot_heatmap_panels(path("p24.png"), layer_panels(12, 8, 8), o);
  const auto [w24, h24] = png_size(path("p24.png"));
  // Rows of whole layers: 2 panels -> 1 row of 2; 12 -> 6 columns x 2 rows; 24 -> 6 x 4.
  EXPECT_LT(w1, w12);
  EXPECT_LT(h1, h12);
  EXPECT_EQ(w12, w24);
  EXPECT_LT(h12, h24);
  o.columns = 2;
  plot_heatmap_panels(path("tall.png"), layer_panels(6, 8, 8), o);
  const auto [wt, ht] = png_size(path("tall.png"));
  EXPECT_LT(wt, w12);
  EXPECT_GT(ht, h12);
  // One panel under a long caption: the figure widens to the caption instead of cutting it off.
  o.columns = 0;
  o.notes = {std::string(150, 'x')};
  plot_heatmap_panels(path("one.png"), {phi_panel("h.0 query", 8, 8, 768, 0.9)}, o);
  EXPECT_GT(png_size(path("one.png")).first, 150u * 7u);
  EXPECT_EQ(listing(), (std::vector<std::string>{"fig3.png", "one.png", "p12.png", "p24.png", "tall.png"}));
  for (auto n : listing()) EXPECT_GT(fs::file_size(path(n)), 10000u) << n;
  if (const char* keep = std::getenv("LOWRANK_KEEP_PLOTS"))
    for (auto n : listing()) fs::copy_file(path(n), fs::path(keep) / n, fs::copy_options::overwrite_existing);
}

TEST_F(Plot, HeatmapPanelsBadInputWritesNothing) {
  HeatmapPanelsOptions o;
  EXPECT_TRUE(test::throws_with([&] { plot_heatmap_panels(path("a.png"), {}, o); }, {"0 panels"}));
  auto bad = layer_panels(1, 2, 3);
  bad[1].values.pop_back();
  EXPECT_TRUE(test::throws_with([&] { plot_heatmap_panels(path("a.png"), bad, o); }, {"'h.0 value'", "5 values"}));
  bad = layer_panels(1, 2, 3);
  bad[0].values[2] = NAN;
  EXPECT_TRUE(test::throws_with([&] { plot_heatmap_panels(path("a.png"), bad, o); }, {"NaN or Inf"}));
  bad = layer_panels(1, 2, 3);
  bad[0].reference.pop_back();
  EXPECT_TRUE(test::throws_with([&] { plot_heatmap_panels(path("a.png"), bad, o); }, {"reference values"}));
  o.vmin = 1, o.vmax = 1;
  EXPECT_TRUE(
      test::throws_with([&] { plot_heatmap_panels(path("a.png"), layer_panels(1, 2, 3), o); }, {"colour range"}));
  o = {};
  o.columns = 1, o.panel_height = 3000;
  EXPECT_TRUE(
      test::throws_with([&] { plot_heatmap_panels(path("a.png"), layer_panels(2, 2, 3), o); }, {"over 10000 pixels"}));
  EXPECT_TRUE(test::throws_with([&] { plot_heatmap_panels(path("no/such/a.png"), layer_panels(1, 2, 3)); },
                                {"does not exist"}));
  EXPECT_TRUE(listing().empty());
}

// plot_confusion draws on the same figure helper: a PNG of the requested size, or nothing.
TEST_F(Plot, ConfusionMatrixFigure) {
  ConfusionOptions o;
  o.title = "test set";
  plot_confusion(path("cm.png"), {5, 1, 0, 2, 7, 1, 0, 0, 0}, {"world", "sports", "business"}, o);
  EXPECT_EQ(png_size(path("cm.png")), (std::pair<uint32_t, uint32_t>{900, 820}));
  EXPECT_TRUE(test::throws_with([&] { plot_confusion(path("x.png"), {1, 2, 3}, {"a", "b"}); }, {"3 counts"}));
  EXPECT_TRUE(test::throws_with([&] { plot_confusion(path("no/x.png"), {1}, {"a"}); }, {"does not exist"}));
  o.width = 50;
  EXPECT_TRUE(test::throws_with([&] { plot_confusion(path("x.png"), {1}, {"a"}, o); }, {"figure size"}));
  EXPECT_EQ(listing(), std::vector<std::string>{"cm.png"});
}

}  // namespace
