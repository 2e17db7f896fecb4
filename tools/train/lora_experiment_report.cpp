// The lora-experiment's outputs: results.md (one table per base scale, every term defined),
// results.json and the PNG figures, each φ read against its chance level and captioned with the
// runs it shows.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/plot.h"
#include "tools/train/clock.h"
#include "tools/train/lora_experiment.h"

namespace lowrank::train {
namespace {

std::string fmt(double v, int prec = 4) {
  return fixed_or_na(v, prec);
}

// The runs of one method; for lora, those at `base_scale` only.
std::vector<const AdapterRun*> runs_of(const LoraExperimentResult& r, const std::string& method,
                                       double base_scale = 0) {
  std::vector<const AdapterRun*> out;
  for (const AdapterRun& a : r.runs)
    if (a.method == method && (method != "lora" || a.base_scale == base_scale)) out.push_back(&a);
  return out;
}

// Mean test accuracy per rank over the seeds of one method (lora: at `base_scale`).
std::map<int64_t, double> mean_acc(const LoraExperimentResult& r, const std::string& method, double base_scale = 0) {
  std::map<int64_t, std::pair<double, int>> acc;
  for (const AdapterRun* a : runs_of(r, method, base_scale)) {
    acc[a->rank].first += a->test_acc;
    acc[a->rank].second += 1;
  }
  std::map<int64_t, double> out;
  for (auto& [k, v] : acc) out[k] = v.first / v.second;
  return out;
}

// φ_r of a run's layer k: φ between the top-r right singular vectors of ΔW and of W (NaN when not
// reported).
double phi_r(const AdapterRun& a, size_t k = 0) {
  return k < a.reports.size() && !a.reports[k].phi_right.empty() ? a.reports[k].phi_right.back() : std::nan("");
}

// The report the figures read: the first layer's.
const analysis::DeltaReport& first_report(const AdapterRun& a) {
  return a.reports.front();
}

// The chance level of every cell of a φ grid whose vectors live in R^n.
std::vector<double> chance_grid(const analysis::SimilarityGrid& g, int64_t n) {
  std::vector<double> c(g.values.size());
  for (int64_t i = 1; i <= g.rows; ++i)
    for (int64_t j = 1; j <= g.cols; ++j) c[static_cast<size_t>((i - 1) * g.cols + (j - 1))] = phi_chance(i, j, n);
  return c;
}

// Share of a grid's cells where φ is above its chance level.
double share_above_chance(const analysis::SimilarityGrid& g, int64_t n) {
  const std::vector<double> c = chance_grid(g, n);
  size_t above = 0;
  for (size_t k = 0; k < c.size(); ++k) above += g.values[k] > c[k];
  return c.empty() ? 0 : static_cast<double>(above) / static_cast<double>(c.size());
}

double grid_mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? std::nan("") : s / static_cast<double>(v.size());
}

std::string seeds_text(const LoraExperimentOptions& o) {
  return o.seeds.size() == 1 ? "seed " + std::to_string(o.seeds[0])
                             : "mean over " + std::to_string(o.seeds.size()) + " seeds";
}

// With several --layer's every run has one row per layer (the accuracy and size are the run's).
void table_header(std::ostringstream& md, bool layer_column) {
  md << "| method | rank | seed |" << (layer_column ? " layer |" : "")
     << " test acc | Δ acc vs base | params | compression | rel. err | E–Y bound | φ_r | chance | φ/chance | "
        "amplification |\n";
  md << "|---|---:|---:|" << (layer_column ? "---|" : "") << "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
}

void table_rows(std::ostringstream& md, const LoraExperimentOptions& o, const LoraExperimentResult& r,
                const AdapterRun& a) {
  const bool layer_column = o.layers.size() > 1;
  for (size_t k = 0; k < std::max<size_t>(1, a.reports.size()); ++k) {
    const analysis::DeltaReport* rep = k < a.reports.size() ? &a.reports[k] : nullptr;
    const double phi = phi_r(a, k), chance = rep ? phi_chance(a.rank, a.rank, rep->in) : std::nan("");
    md << "| " << a.method << " | " << a.rank << " | " << (rep ? std::to_string(a.seed) : std::string("–")) << " | ";
    if (layer_column) md << (rep ? o.layers[k] : std::string("all")) << " | ";
    md << fmt(a.test_acc) << " | " << (a.test_acc >= r.base_acc ? "+" : "") << fmt(a.test_acc - r.base_acc) << " | "
       << a.params << " | " << (a.method == "lora" ? std::string() : fmt(a.compression_ratio, 2) + "x") << " | "
       << (rep ? fmt(rep->relative_error) : "–") << " | " << (rep ? fmt(rep->eckart_young_error) : "–") << " | "
       << (rep ? fmt(phi) : "–") << " | " << (rep ? fmt(chance) : "–") << " | " << (rep ? fmt(phi / chance, 2) : "–")
       << " | " << (rep ? fmt(rep->amplification, 2) : "–") << " |\n";
  }
}

// What each figure of one base scale shows (the same lines caption the figures).
struct FigureNotes {
  std::string phi_ranks, phi_seeds, delta_phi, delta_error, accuracy;
};

// Where a φ grid's chance contour is: white dashes where φ crosses chance; a grid wholly above (or
// at or below) chance has no contour, and the caption says so instead of promising a line.
std::string chance_contour_note(const analysis::SimilarityGrid& g, int64_t n) {
  const std::string chance = "chance max(i, j)/" + std::to_string(n);
  switch (analysis::reference_side(g.values, chance_grid(g, n))) {
    case analysis::ReferenceSide::Above:
      return "phi above " + chance + " in every cell (no contour to draw)";
    case analysis::ReferenceSide::AtOrBelow:
      return "phi at or below " + chance + " in every cell (no contour to draw)";
    case analysis::ReferenceSide::Crosses:
      break;
  }
  return "white dashes: phi = " + chance;
}

FigureNotes figure_notes(const LoraExperimentOptions& o, const LoraExperimentResult& r, const ScaleResult& sr) {
  const std::string s0 = std::to_string(o.seeds.front()), bs = scale_text(sr.base_scale);
  const std::string n = std::to_string(r.layer_in);
  FigureNotes f;
  f.phi_ranks = "lora runs at base_scale " + bs + ", seed " + s0 + ": A of rank " + std::to_string(r.grid_rank_small) +
                " vs rank " + std::to_string(r.grid_rank_large) + "; " + chance_contour_note(sr.phi_ranks, r.layer_in);
  if (o.seeds.size() >= 2)
    f.phi_seeds = "lora runs at base_scale " + bs + ", rank " + std::to_string(r.grid_rank_large) + ": seed " + s0 +
                  " vs seed " + std::to_string(o.seeds[1]) + "; " + chance_contour_note(sr.phi_seeds, r.layer_in);
  f.delta_phi = "lora runs at base_scale " + bs + ", seed " + s0 + " only, one line per rank; grey: chance k/" + n;
  f.delta_error = "lora at base_scale " + bs + " (" + seeds_text(o) + ")" +
                  (o.compression ? ", compress (seed " + s0 + ", against W)" : "") + ", Eckart-Young bound";
  f.accuracy = "lora at base_scale " + bs + " (" + seeds_text(o) + ")" +
               (o.compression ? ", compress (seed " + s0 + ")" : "") + (o.svd_baseline ? ", truncated SVD" : "");
  if (o.layers.size() > 1) {
    const std::string on = "layer " + o.layers.front() + ": ";
    for (std::string* note : {&f.phi_ranks, &f.phi_seeds, &f.delta_phi, &f.delta_error})
      if (!note->empty()) *note = on + *note;
    f.accuracy += " (all of " + layers_text(o) + " adapted)";
  }
  return f;
}

// One file name per figure and base scale: phi_ranks.png, or phi_ranks_bs0.5.png in a sweep.
std::string figure_file(const LoraExperimentOptions& o, const std::string& stem, double scale) {
  return stem + scale_suffix(o, scale) + ".png";
}

}  // namespace

std::string lora_experiment_table(const LoraExperimentOptions& o, const LoraExperimentResult& r) {
  std::ostringstream md;
  const std::string n = std::to_string(r.layer_in);
  md << "# LoRA as compression: Fashion-MNIST MLP, layer" << (o.layers.size() > 1 ? "s `" : " `") << layers_text(o)
     << "` (" << r.layer_in << " -> " << r.layer_out << (o.layers.size() > 1 ? " for the first" : "") << ")\n\n";
  if (o.layers.size() > 1)
    md << "- every layer listed is scaled and adapted; the φ grids and figures analyse the first, `" << o.layers.front()
       << "`\n";
  md << "- base model test accuracy: **" << fmt(r.base_acc) << "** (loss " << fmt(r.base_loss) << "; "
     << (r.base_trained_here ? "trained here" : "loaded from " + o.base) << ", "
     << (r.base_epochs >= 0 ? std::to_string(r.base_epochs) + " epochs" : std::string("epochs unknown")) << ")\n";
  md << "- adapters: " << o.epochs << " epoch(s), Adam lr " << o.lr << ", batch " << o.batch << ", init " << o.init
     << ", alpha " << (o.alpha > 0 ? fmt(o.alpha, 1) : std::string("= r")) << (o.rslora ? " (rsLoRA: alpha/√r)" : "")
     << (o.dropout > 0 ? ", dropout " + fmt(o.dropout, 2) : "") << "; `lora` keeps W scaled by base_scale, "
     << "`compress` moves base_scale " << o.compress_schedule << " from 1 to 0 over "
     << fmt(100 * o.compress_fraction, 0) << "% of the steps, `svd` replaces W by its rank-r truncation\n";
  md << "- rel. err = ‖ΔW − (1 − base_scale)·W‖_F / ‖(1 − base_scale)·W‖_F with ΔW = scale·BA (compress: against W); "
        "E–Y bound = the least rel. err any rank-r ΔW can reach (Eckart–Young)\n";
  md << "- φ_r = φ between the top-r right singular vectors of ΔW and of W (subspaces of R^" << n << "); chance = r/"
     << n
     << ", what two random r-dimensional subspaces give (E‖U_iᵀU_j‖²_F = i·j/n, normalised by min(i, j): "
        "max(i, j)/n); φ/chance near 1 is no alignment beyond chance\n";
  md << "- amplification = ‖ΔW‖_F / ‖UᵀWV‖_F, U and V the top-r singular vectors of ΔW (the LoRA paper, section "
        "7.3): how much ΔW amplifies the directions it spans over what W already has there; large values mean ΔW "
        "boosts directions W hardly uses\n";
  md << "- compression = the kernels' elements / the rank-r factors' parameters, for `compress` and `svd`, which "
        "replace W; blank on `lora` rows, "
        "which keep W and add the adapter\n";

  const auto comp = mean_acc(r, "compress"), svd = mean_acc(r, "svd");
  for (const ScaleResult& sr : r.scales) {
    const double bs = sr.base_scale;
    md << "\n## base_scale " << scale_text(bs) << "\n\n";
    md << "- kernel scaled by " << scale_text(bs) << ", frozen, no adapter: **" << fmt(sr.scaled_acc) << "** (loss "
       << fmt(sr.scaled_loss) << ")\n";
    if (sr.scaled_acc >= r.base_acc)
      md << "- scaling by " << scale_text(bs) << " costs nothing here (" << fmt(sr.scaled_acc) << " ≥ base "
         << fmt(r.base_acc)
         << "), so the adapters have nothing to recover: read the `compress` and `svd` rows, or a smaller "
            "--base-scales\n";
    md << "\n";
    table_header(md, o.layers.size() > 1);
    for (const AdapterRun* a : runs_of(r, "lora", bs)) table_rows(md, o, r, *a);
    md << "\nMean test accuracy per rank:\n\n| rank |";
    for (int64_t k : o.ranks) md << " " << k << " |";
    md << "\n|---|";
    for (size_t i = 0; i < o.ranks.size(); ++i) md << "---:|";
    md << "\n";
    auto row = [&](const std::string& name, const std::map<int64_t, double>& m) {
      if (m.empty()) return;
      md << "| " << name << " |";
      for (int64_t k : o.ranks) md << " " << (m.count(k) ? fmt(m.at(k)) : "–") << " |";
      md << "\n";
    };
    row("lora (" + seeds_text(o) + ")", mean_acc(r, "lora", bs));
    row("compress", comp);
    row("svd", svd);
    if (!sr.phi_ranks.values.empty()) {
      const double mean = grid_mean(sr.phi_ranks.values), chance = grid_mean(chance_grid(sr.phi_ranks, r.layer_in));
      md << "\nφ(A_r=" << r.grid_rank_small << ", A_r=" << r.grid_rank_large << ", i, j) of the right singular vectors"
         << " (seed " << o.seeds.front() << "): φ(1, 1) = " << fmt(sr.phi_ranks.at(1, 1)) << " (chance "
         << fmt(phi_chance(1, 1, r.layer_in)) << "), mean over the grid " << fmt(mean) << " (chance " << fmt(chance)
         << "), above chance in " << fmt(100 * share_above_chance(sr.phi_ranks, r.layer_in), 0) << "% of the cells\n";
    }
    if (!sr.phi_seeds.values.empty())
      md << "\nφ(seed " << o.seeds[0] << ", seed " << o.seeds[1] << ") at r = " << r.grid_rank_large
         << ": mean over the grid " << fmt(grid_mean(sr.phi_seeds.values)) << " (chance "
         << fmt(grid_mean(chance_grid(sr.phi_seeds, r.layer_in))) << "), above chance in "
         << fmt(100 * share_above_chance(sr.phi_seeds, r.layer_in), 0) << "% of the cells\n";
    const FigureNotes f = figure_notes(o, r, sr);
    md << "\nFigures:\n\n";
    if (!sr.phi_ranks.values.empty()) md << "- `" << figure_file(o, "phi_ranks", bs) << "`: " << f.phi_ranks << "\n";
    if (!sr.phi_seeds.values.empty()) md << "- `" << figure_file(o, "phi_seeds", bs) << "`: " << f.phi_seeds << "\n";
    md << "- `" << figure_file(o, "delta_vs_w_phi", bs) << "`: " << f.delta_phi << "\n";
    md << "- `" << figure_file(o, "delta_vs_w_error", bs) << "`: " << f.delta_error << "\n";
    md << "- `" << figure_file(o, "accuracy_vs_rank", bs) << "`: " << f.accuracy << "\n";
  }
  if (o.compression || o.svd_baseline) {
    md << "\n## compress and svd (they do not depend on base_scale)\n\n";
    table_header(md, o.layers.size() > 1);
    for (const char* m : {"compress", "svd"})
      for (const AdapterRun* a : runs_of(r, m)) table_rows(md, o, r, *a);
  }
  md << "\nTotal time " << fmt(r.seconds, 1) << " s.\n";
  return md.str();
}

std::string lora_experiment_json(const LoraExperimentOptions& o, const LoraExperimentResult& r) {
  nlohmann::json j;
  const nlohmann::json base_epochs = r.base_epochs >= 0 ? nlohmann::json(r.base_epochs) : nlohmann::json(nullptr);
  j["options"] = {{"data", o.data_dir},
                  {"out", o.out_dir},
                  {"base", o.base},
                  {"base_epochs", base_epochs},
                  {"base_seed", r.base_trained_here ? nlohmann::json(o.base_seed) : nlohmann::json(nullptr)},
                  {"layers", o.layers},
                  {"ranks", o.ranks},
                  {"seeds", o.seeds},
                  {"epochs", o.epochs},
                  {"base_scales", o.base_scales},
                  {"alpha", o.alpha},
                  {"rslora", o.rslora},
                  {"dropout", o.dropout},
                  {"lr", o.lr},
                  {"batch", o.batch},
                  {"init", o.init},
                  {"compression", o.compression},
                  {"compress_schedule", o.compress_schedule},
                  {"compress_fraction", o.compress_fraction},
                  {"svd_baseline", o.svd_baseline},
                  {"device", o.device},
                  {"threads", o.threads},
                  {"train_limit", o.train_limit},
                  {"test_limit", o.test_limit}};
  // The first layer: the one the φ grids and figures analyse.
  j["layer"] = {{"path", o.layers.front()}, {"in", r.layer_in}, {"out", r.layer_out}};
  j["base"] = {{"trained_here", r.base_trained_here}, {"epochs", base_epochs}};
  j["base_acc"] = r.base_acc, j["base_loss"] = r.base_loss;
  // The first base scale's numbers at the top level, as before the sweep; all of them in "scales".
  j["scaled_acc"] = r.scales.front().scaled_acc, j["scaled_loss"] = r.scales.front().scaled_loss;
  nlohmann::json runs = nlohmann::json::array();
  for (const AdapterRun& a : r.runs) {
    nlohmann::json x = {{"method", a.method},     {"rank", a.rank},           {"seed", a.seed},
                        {"test_acc", a.test_acc}, {"test_loss", a.test_loss}, {"train_loss", a.train_loss},
                        {"params", a.params},     {"seconds", a.seconds}};
    if (a.method != "lora") x["compression_ratio"] = a.compression_ratio;
    if (a.method != "svd") {
      const double phi = phi_r(a), chance = phi_chance(a.rank, a.rank, r.layer_in);
      x["base_scale"] = a.base_scale;
      x["adapter_dir"] = a.adapter_dir;
      x["phi_r"] = std::isfinite(phi) ? nlohmann::json(phi) : nlohmann::json(nullptr);
      x["phi_r_chance"] = chance;
      x["phi_r_over_chance"] = std::isfinite(phi) ? nlohmann::json(phi / chance) : nlohmann::json(nullptr);
      x["report"] = first_report(a);
      if (a.reports.size() > 1) {
        nlohmann::json all = nlohmann::json::array();
        for (size_t k = 0; k < a.reports.size(); ++k) {
          nlohmann::json one = a.reports[k];
          one["layer"] = o.layers[k];
          all.push_back(one);
        }
        x["reports"] = all;
      }
    }
    runs.push_back(x);
  }
  j["runs"] = runs;
  auto grids = [&](const ScaleResult& s, nlohmann::json& into) {
    if (!s.phi_ranks.values.empty())
      into["phi_ranks"] = {{"rank_small", r.grid_rank_small},
                           {"rank_large", r.grid_rank_large},
                           {"seed", o.seeds.front()},
                           {"grid", s.phi_ranks},
                           {"mean", grid_mean(s.phi_ranks.values)},
                           {"mean_chance", grid_mean(chance_grid(s.phi_ranks, r.layer_in))},
                           {"share_above_chance", share_above_chance(s.phi_ranks, r.layer_in)}};
    if (!s.phi_seeds.values.empty())
      into["phi_seeds"] = {{"rank", r.grid_rank_large},
                           {"seeds", {o.seeds[0], o.seeds[1]}},
                           {"grid", s.phi_seeds},
                           {"mean", grid_mean(s.phi_seeds.values)},
                           {"mean_chance", grid_mean(chance_grid(s.phi_seeds, r.layer_in))},
                           {"share_above_chance", share_above_chance(s.phi_seeds, r.layer_in)}};
  };
  nlohmann::json scales = nlohmann::json::array();
  for (const ScaleResult& s : r.scales) {
    nlohmann::json x = {{"base_scale", s.base_scale},
                        {"scaled_acc", s.scaled_acc},
                        {"scaled_loss", s.scaled_loss},
                        {"scaling_costs_nothing", s.scaled_acc >= r.base_acc}};
    grids(s, x);
    scales.push_back(x);
  }
  j["scales"] = scales;
  grids(r.scales.front(), j);
  j["phi_chance"] = "max(i, j) / n, n = " + std::to_string(r.layer_in) + " (the adapters' input size)";
  j["table"] = r.table_md_path;
  j["results"] = r.results_json_path;
  j["figures"] = r.figures;
  j["seconds"] = r.seconds;
  return j.dump(2) + "\n";
}

std::vector<std::string> write_lora_experiment_figures(const LoraExperimentOptions& o, const LoraExperimentResult& r) {
  namespace fs = std::filesystem;
  const fs::path out(o.out_dir);
  std::vector<std::string> paths;
  const int64_t n = r.layer_in;
  for (const ScaleResult& sr : r.scales) {
    const double bs = sr.base_scale;
    const std::string bst = scale_text(bs);
    const FigureNotes notes = figure_notes(o, r, sr);
    auto heat = [&](const std::string& stem, const analysis::SimilarityGrid& g, const std::string& title,
                    const std::string& ylab, const std::string& xlab, const std::string& note) {
      if (g.values.empty()) return;  // nothing to compare (one rank, one seed)
      analysis::HeatmapOptions h;
      h.title = title, h.y_label = ylab, h.x_label = xlab, h.colorbar_label = "phi", h.vmin = 0, h.vmax = 1;
      h.reference = chance_grid(g, n);
      h.width = 950, h.height = 760;
      const size_t cut = note.find("; ");
      // The line above already says when phi is on one side of chance in every cell.
      const std::string means =
          "mean phi " + fmt(grid_mean(g.values), 3) + ", mean chance " + fmt(grid_mean(h.reference), 3);
      h.notes = {
          note.substr(0, cut), cut == std::string::npos ? "" : note.substr(cut + 2),
          analysis::reference_side(g.values, h.reference) == analysis::ReferenceSide::Crosses
              ? "phi above chance in " + fmt(100 * share_above_chance(g, n), 0) + "% of the cells (" + means + ")"
              : means};
      std::string p = (out / figure_file(o, stem, bs)).string();
      analysis::plot_heatmap(p, g.values, g.rows, g.cols, h);
      paths.push_back(p);
    };
    const std::string rs = std::to_string(r.grid_rank_small), rl = std::to_string(r.grid_rank_large);
    heat("phi_ranks", sr.phi_ranks, "phi(A r=" + rs + ", A r=" + rl + ", i, j), base_scale " + bst, "i (r=" + rs + ")",
         "j (r=" + rl + ")", notes.phi_ranks);
    if (o.seeds.size() >= 2)
      heat("phi_seeds", sr.phi_seeds,
           "phi(A r=" + rl + " seed " + std::to_string(o.seeds[0]) + ", seed " + std::to_string(o.seeds[1]) +
               ", i, j), base_scale " + bst,
           "i (seed " + std::to_string(o.seeds[0]) + ")", "j (seed " + std::to_string(o.seeds[1]) + ")",
           notes.phi_seeds);

    // ΔW vs W: φ between the top-k right singular vectors of ΔW and W, one line per rank (first
    // seed), and the chance level k/n of random k-dimensional subspaces.
    std::vector<analysis::Series> phi_lines;
    size_t longest = 0;
    for (const AdapterRun* a : runs_of(r, "lora", bs)) {
      if (a->seed != o.seeds.front()) continue;
      analysis::Series s;
      s.label = "r=" + std::to_string(a->rank);
      for (size_t k = 0; k < first_report(*a).phi_right.size(); ++k) {
        s.x.push_back(static_cast<double>(k + 1));
        s.y.push_back(first_report(*a).phi_right[k]);
      }
      longest = std::max(longest, s.x.size());
      if (!s.x.empty()) phi_lines.push_back(s);
    }
    if (!phi_lines.empty()) {
      analysis::Series chance{"chance k/" + std::to_string(n), {}, {}, analysis::Stroke::Dashed, true};
      for (size_t k = 1; k <= longest; ++k)
        chance.x.push_back(static_cast<double>(k)), chance.y.push_back(phi_chance(static_cast<int64_t>(k), 0, n));
      phi_lines.push_back(chance);
      std::string p = (out / figure_file(o, "delta_vs_w_phi", bs)).string();
      analysis::LineOptions lo{.title = "phi of the top-k right singular vectors of dW = sBA and W, base_scale " + bst,
                               .x_label = "k",
                               .y_label = "phi",
                               .markers = longest == 1};
      lo.y_min = 0, lo.y_max = 1.02, lo.legend_outside = true, lo.width = 1250, lo.notes = {notes.delta_phi};
      analysis::plot_lines(p, phi_lines, lo);
      paths.push_back(p);
    }

    // Relative error of ΔW against (1 - base_scale)·W, with the Eckart–Young floor.
    analysis::Series err_lora{"lora (" + seeds_text(o) + ")", {}, {}}, err_comp{"compress (against W)", {}, {}},
        ey{"Eckart-Young bound", {}, {}, analysis::Stroke::Dashed, true};
    std::map<int64_t, std::pair<double, int>> acc_err;
    std::map<int64_t, double> bound;
    for (const AdapterRun* a : runs_of(r, "lora", bs)) {
      acc_err[a->rank].first += first_report(*a).relative_error;
      acc_err[a->rank].second += 1;
      bound[a->rank] = first_report(*a).eckart_young_error;
    }
    for (const AdapterRun* a : runs_of(r, "compress")) {
      err_comp.x.push_back(static_cast<double>(a->rank));
      err_comp.y.push_back(first_report(*a).relative_error);
      bound[a->rank] = first_report(*a).eckart_young_error;
    }
    for (auto& [k, v] : acc_err) err_lora.x.push_back(static_cast<double>(k)), err_lora.y.push_back(v.first / v.second);
    for (auto& [k, v] : bound) ey.x.push_back(static_cast<double>(k)), ey.y.push_back(v);
    std::vector<analysis::Series> err_lines;
    for (auto* s : {&err_lora, &err_comp, &ey})
      if (!s->x.empty() && std::all_of(s->y.begin(), s->y.end(), [](double v) { return std::isfinite(v); }))
        err_lines.push_back(*s);
    if (!err_lines.empty()) {
      std::string p = (out / figure_file(o, "delta_vs_w_error", bs)).string();
      analysis::LineOptions lo{.title = "rel. error of dW = sBA vs (1 - base_scale) W, base_scale " + bst,
                               .x_label = "rank r",
                               .y_label = "relative Frobenius error",
                               .markers = true};
      lo.legend_outside = true, lo.width = 1250, lo.notes = {notes.delta_error};
      analysis::plot_lines(p, err_lines, lo);
      paths.push_back(p);
    }

    // Accuracy vs rank for the three methods, base and scaled as labelled reference lines, the y
    // range zoomed to the ranks that matter (at least a quarter of the largest) and the references.
    std::vector<analysis::Series> acc_lines;
    const std::pair<std::string, std::map<int64_t, double>> methods[] = {
        {"LoRA on W x " + bst + " (" + seeds_text(o) + ")", mean_acc(r, "lora", bs)},
        {"compression (base_scale 1 -> 0)", mean_acc(r, "compress")},
        {"truncated SVD of W", mean_acc(r, "svd")}};
    const int64_t top_rank = *std::max_element(o.ranks.begin(), o.ranks.end());
    const int64_t zoom_from = std::max<int64_t>(1, top_rank / 4);
    std::vector<double> zoom = {r.base_acc};
    size_t below = 0;
    for (const auto& [label, m] : methods) {
      analysis::Series s{label, {}, {}};
      for (auto [k, v] : m) {
        s.x.push_back(static_cast<double>(k)), s.y.push_back(v);
        if (k >= zoom_from) zoom.push_back(v);
      }
      if (!s.x.empty()) acc_lines.push_back(s);
    }
    double lo_y = *std::min_element(zoom.begin(), zoom.end()), hi_y = *std::max_element(zoom.begin(), zoom.end());
    if (sr.scaled_acc >= lo_y - 0.25 * (hi_y - lo_y))
      lo_y = std::min(lo_y, sr.scaled_acc), hi_y = std::max(hi_y, sr.scaled_acc);
    const double pad = std::max(0.15 * (hi_y - lo_y), 0.002);
    lo_y -= pad, hi_y += pad;
    for (const auto& s : acc_lines)
      below += static_cast<size_t>(std::count_if(s.y.begin(), s.y.end(), [&](double v) { return v < lo_y; }));
    analysis::LineOptions lo{.title = "test accuracy vs rank, base_scale " + bst,
                             .x_label = "rank r",
                             .y_label = "test accuracy",
                             .markers = true};
    lo.hlines = {{"base model: " + fmt(r.base_acc), r.base_acc, analysis::Stroke::Dashed},
                 {"W x " + bst + ", no adapter: " + fmt(sr.scaled_acc) + (sr.scaled_acc < lo_y ? " (below)" : ""),
                  sr.scaled_acc, analysis::Stroke::Dotted}};
    lo.y_min = lo_y, lo.y_max = hi_y, lo.legend_outside = true, lo.width = 1250;
    lo.notes = {notes.accuracy};
    if (below > 0)
      lo.notes.push_back("y zoomed to ranks >= " + std::to_string(zoom_from) + ": " + std::to_string(below) +
                         " point(s) below the frame, see results.md");
    std::string p = (out / figure_file(o, "accuracy_vs_rank", bs)).string();
    analysis::plot_lines(p, acc_lines, lo);
    paths.push_back(p);
  }
  return paths;
}

}  // namespace lowrank::train
