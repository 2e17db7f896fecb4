// The gpt2 lora-experiment's outputs: results.md (the variants' table, Table 7's amplifications and
// the φ summary, every term defined), results.json (the same numbers, the exact command) and the
// PNG figures (validation loss vs rank per variant, the φ heatmaps).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/plot.h"
#include "models/gpt2/adapter.h"
#include "tools/train/clock.h"
#include "tools/train/gpt2_experiment.h"
#include "tools/train/lora_experiment.h"

namespace lowrank::train {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string fmt(double v, int prec = 4) {
  return fixed_or_na(v, prec);
}

json num(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? NAN : s / static_cast<double>(v.size());
}

std::vector<const Gpt2ExperimentRun*> runs_of(const Gpt2ExperimentResult& r, const std::string& method, int64_t rank) {
  std::vector<const Gpt2ExperimentRun*> out;
  for (const Gpt2ExperimentRun& x : r.runs)
    if (x.job.method == method && x.job.rank == rank) out.push_back(&x);
  return out;
}

// A per-layer number averaged over the layers of a run.
template <typename F>
double layer_mean(const Gpt2ExperimentRun& run, F f) {
  std::vector<double> v;
  for (const Gpt2LayerReport& l : run.layers) v.push_back(f(l));
  return mean(v);
}

// The same averaged over the seeds too.
template <typename F>
double runs_mean(const std::vector<const Gpt2ExperimentRun*>& runs, F f) {
  std::vector<double> v;
  for (const Gpt2ExperimentRun* x : runs) v.push_back(f(*x));
  return mean(v);
}

std::vector<double> chance_values(const analysis::SimilarityGrid& g, int64_t n) {
  std::vector<double> c;
  for (int64_t i = 1; i <= g.rows; ++i)
    for (int64_t j = 1; j <= g.cols; ++j) c.push_back(phi_chance(i, j, n));
  return c;
}

std::string seeds_text(const std::vector<uint64_t>& seeds) {
  std::string s;
  for (uint64_t x : seeds) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

size_t mg_targets(const std::string& csv) {
  return models::gpt2::parse_lora_targets(csv).size();
}

const char* method_text(const std::string& m) {
  if (m == "lora") return "lora: frozen base x base_scale + LoRA";
  if (m == "compress") return "compress: base_scale 1 -> 0, LoRA carries the layer";
  if (m == "pissa") return "pissa: PiSSA init on the residual, base_scale 1 -> 0";
  return "svd: W's rank-r truncated SVD, no training";
}

}  // namespace

std::string gpt2_experiment_table(const Gpt2ExperimentOptions& o, const Gpt2ExperimentResult& r) {
  std::ostringstream md;
  md << "# LoRA as compression on GPT-2\n\n";
  md << "Base `" << o.base << "`; " << r.paths.size() << " targeted matrices (" << o.targets << "; blocks "
     << (o.layers.empty() ? "all" : o.layers) << "), " << r.replaced_elements
     << " elements. Validation: " << r.val_tokens_used
     << " tokens of the base's validation split. Adapters: " << o.steps << " steps of " << o.batch << " x " << o.seq_len
     << " tokens, lr " << o.lr << ", alpha " << (o.alpha > 0 ? fmt(o.alpha, 2) : "= r") << ", seeds "
     << seeds_text(o.seeds) << ".\n\n";
  md << "| variant | rank | runs | val loss | perplexity | trainable | ratio | ΔW error | Eckart–Young |\n";
  md << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  md << "| base | - | 1 | " << fmt(r.base_loss) << " | " << fmt(std::exp(r.base_loss), 2) << " | 0 | - | - | - |\n";
  md << "| scaled (x" << fmt(o.base_scale, 2) << ") | - | 1 | " << fmt(r.scaled_loss) << " | "
     << fmt(std::exp(r.scaled_loss), 2) << " | 0 | - | - | - |\n";
  for (const char* m : kGpt2ExperimentMethods)
    for (int64_t rank : o.ranks) {
      const auto runs = runs_of(r, m, rank);
      if (runs.empty()) continue;
      const double loss = runs_mean(runs, [](const Gpt2ExperimentRun& x) { return x.val_loss; });
      const double err = runs_mean(runs, [](const Gpt2ExperimentRun& x) {
        return layer_mean(x, [](const Gpt2LayerReport& l) { return l.delta.relative_error; });
      });
      const double ey = runs_mean(runs, [](const Gpt2ExperimentRun& x) {
        return layer_mean(x, [](const Gpt2LayerReport& l) { return l.delta.eckart_young_error; });
      });
      md << "| " << m << " | " << rank << " | " << runs.size() << " | " << fmt(loss) << " | " << fmt(std::exp(loss), 2)
         << " | " << runs.front()->trainable << " | " << fmt(runs.front()->ratio, 1) << " | " << fmt(err) << " | "
         << fmt(ey) << " |\n";
    }
  md << "\nval loss: mean cross-entropy per token (nats) on the validation windows, averaged over the runs (seeds); "
        "perplexity = exp(val loss). trainable: adapter parameters, Σ r·(in + out) (svd: its factors). ratio: "
        "elements of the matrices replaced / trainable. ΔW error: ‖ΔW − (1 − b)·W‖_F / ‖(1 − b)·W‖_F with ΔW = "
        "scale·B·A and b the base scale at the end (lora: "
     << fmt(o.base_scale, 2) << ", so the target is " << fmt(1 - o.base_scale, 2)
     << "·W; compress, pissa, svd: 0, so the target is W itself), averaged over the layers; Eckart–Young: the "
        "least error any rank-r ΔW reaches, sqrt(Σ_{i>r} σ_i²)/‖W‖_F.\n\n";
  for (const char* m : kGpt2ExperimentMethods) md << "- " << method_text(m) << "\n";

  md << "\n## Amplification (the LoRA paper's Table 7)\n\n";
  md << "‖Uᵀ W V‖_F with U, V the top-r directions of ΔW itself, of W, or random, and in brackets the "
        "amplification factor ‖ΔW‖_F / ‖Uᵀ W V‖_F; means over the layers and seeds of the lora runs. ΔW amplifies "
        "directions W hardly uses when its own directions carry little of W (a factor well above W's).\n\n";
  md << "| rank | ‖ΔW‖_F | ‖W‖_F | ΔW's directions | W's top-r | random |\n|---:|---:|---:|---:|---:|---:|\n";
  for (int64_t rank : o.ranks) {
    const auto runs = runs_of(r, "lora", rank);
    if (runs.empty()) continue;
    auto m = [&](auto f) { return runs_mean(runs, [&](const Gpt2ExperimentRun& x) { return layer_mean(x, f); }); };
    auto cell = [&](auto dir) {
      return fmt(m([&](const Gpt2LayerReport& l) { return dir(l.amplification).projected_w_norm; }), 3) + " (x" +
             fmt(m([&](const Gpt2LayerReport& l) { return dir(l.amplification).amplification; }), 2) + ")";
    };
    using A = analysis::AmplificationReport;
    md << "| " << rank << " | " << fmt(m([](const Gpt2LayerReport& l) { return l.amplification.delta_norm; }), 3)
       << " | " << fmt(m([](const Gpt2LayerReport& l) { return l.amplification.w_norm; }), 3) << " | "
       << cell([](const A& x) { return x.delta; }) << " | " << cell([](const A& x) { return x.w; }) << " | "
       << cell([](const A& x) { return x.random; }) << " |\n";
  }

  md << "\n## Subspace similarity φ (Figures 3 and 4)\n\n";
  md << "Mean φ(i, j) over i, j ≤ 8 per layer; chance (random subspaces of R^" << r.n_embd << ") is max(i, j)/"
     << r.n_embd << ", mean "
     << fmt(mean(chance_values(r.panels.empty() ? analysis::SimilarityGrid{} : r.panels.front().ranks, r.n_embd)))
     << ".\n\n";
  md << "| layer | φ(A_r=" << r.grid_rank_small << ", A_r=" << r.grid_rank_large << ") | φ(A_seed" << o.seeds.front()
     << ", A_seed" << (o.seeds.size() > 1 ? std::to_string(o.seeds[1]) : std::string("-"))
     << ") at r=" << r.grid_rank_large << " |\n|---|---:|---:|\n";
  for (const Gpt2PhiPanel& p : r.panels)
    md << "| " << p.path << " | " << fmt(mean(p.ranks.values), 3) << " | " << fmt(mean(p.seeds.values), 3) << " |\n";
  md << "\nFigures: " << (r.figures.empty() ? std::string("none") : "");
  for (size_t i = 0; i < r.figures.size(); ++i) md << (i ? ", " : "") << "`" << r.figures[i] << "`";
  md << ". Adapters (PEFT files): `adapters/<variant>_r<rank>_s<seed>/`.\n";
  return md.str();
}

std::string gpt2_experiment_json(const Gpt2ExperimentOptions& o, const Gpt2ExperimentResult& r) {
  json runs = json::array();
  for (const Gpt2ExperimentRun& x : r.runs) {
    json layers = json::array();
    for (const Gpt2LayerReport& l : x.layers) {
      json d = l.delta, a = l.amplification;
      layers.push_back({{"path", l.path}, {"delta", d}, {"amplification", a}});
    }
    runs.push_back({{"name", x.job.name()},
                    {"method", x.job.method},
                    {"rank", x.job.rank},
                    {"seed", x.job.seed},
                    {"val_loss", num(x.val_loss)},
                    {"perplexity", num(x.perplexity)},
                    {"trainable_parameters", x.trainable},
                    {"compression_ratio", num(x.ratio)},
                    {"seconds", x.seconds},
                    {"train_losses", x.train_losses},
                    {"adapter_dir", x.adapter_dir},
                    {"layers", layers}});
  }
  json panels = json::array();
  for (const Gpt2PhiPanel& p : r.panels) panels.push_back({{"path", p.path}, {"ranks", p.ranks}, {"seeds", p.seeds}});
  json j{{"command", o.command_line},
         {"base", o.base},
         {"data", r.data_files},
         {"targets", o.targets},
         {"layers", o.layers.empty() ? "all" : o.layers},
         {"ranks", o.ranks},
         {"seeds", o.seeds},
         {"quick", o.quick},
         {"base_scale", o.base_scale},
         {"steps", o.steps},
         {"batch", o.batch},
         {"seq_len", o.seq_len},
         {"lr", o.lr},
         {"min_lr", o.min_lr},
         {"warmup", o.warmup},
         {"alpha", o.alpha},
         {"grad_clip", o.grad_clip},
         {"compress_schedule", o.compress_schedule},
         {"compress_fraction", o.compress_fraction},
         {"val_fraction", o.val_fraction},
         {"val_windows", o.val_windows},
         {"device", o.device},
         {"base_val_loss", num(r.base_loss)},
         {"scaled_val_loss", num(r.scaled_loss)},
         {"replaced_elements", r.replaced_elements},
         {"train_tokens", r.train_tokens},
         {"val_tokens", r.val_tokens},
         {"val_tokens_used", r.val_tokens_used},
         {"targeted_layers", r.paths},
         {"grid_rank_small", r.grid_rank_small},
         {"grid_rank_large", r.grid_rank_large},
         {"runs", runs},
         {"phi", panels},
         {"out", r.out_dir},
         {"results_md", r.results_md},
         {"results_json", r.results_json},
         {"figures", r.figures},
         {"seconds", r.seconds}};
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::vector<std::string> write_gpt2_experiment_figures(const std::string& dir, const Gpt2ExperimentOptions& o,
                                                       const Gpt2ExperimentResult& r) {
  std::vector<std::string> files;
  const fs::path fig = fs::path(dir) / "figures";
  fs::create_directories(fig);
  // Validation loss vs rank, one figure per variant, base and scaled as labelled levels.
  for (const char* m : kGpt2ExperimentMethods) {
    analysis::Series mean_s{
        std::string(m) + (o.seeds.size() > 1 && std::string(m) == "lora" ? " (mean of seeds)" : ""), {}, {}};
    for (int64_t rank : o.ranks) {
      const auto runs = runs_of(r, m, rank);
      if (runs.empty()) continue;
      mean_s.x.push_back(static_cast<double>(rank));
      mean_s.y.push_back(runs_mean(runs, [](const Gpt2ExperimentRun& x) { return x.val_loss; }));
    }
    if (mean_s.x.empty()) continue;
    analysis::LineOptions lo;
    lo.title = detail::format("GPT-2 {}: validation loss vs rank", m);
    lo.x_label = "adapter rank r";
    lo.y_label = "validation cross-entropy (nats/token)";
    lo.log_x = true;
    lo.markers = true;
    lo.legend_outside = true;
    lo.hlines = {{detail::format("base ({})", fmt(r.base_loss, 3)), r.base_loss, analysis::Stroke::Dashed},
                 {detail::format("scaled x{} ({})", fmt(o.base_scale, 2), fmt(r.scaled_loss, 3)), r.scaled_loss,
                  analysis::Stroke::Dotted}};
    lo.notes = {method_text(m), detail::format("{} targeted matrices ({}), {} steps per run", r.paths.size(), o.targets,
                                               std::string(m) == "svd" ? 0 : o.steps)};
    const std::string name = detail::format("val_loss_vs_rank_{}.png", m);
    analysis::plot_lines((fig / name).string(), {mean_s}, lo);
    files.push_back("figures/" + name);
  }
  // φ heatmaps: one figure per grid, one panel per layer × target (the paper's Figures 3 and 4).
  auto panels = [&](bool seeds, const std::string& name, const std::string& title, const std::string& x_label,
                    const std::string& y_label) {
    std::vector<analysis::HeatmapPanel> ps;
    for (const Gpt2PhiPanel& p : r.panels) {
      const analysis::SimilarityGrid& g = seeds ? p.seeds : p.ranks;
      if (g.values.empty()) continue;
      const size_t dot = p.path.find('.', 2);
      ps.push_back({p.path.substr(0, dot) + " " + p.path.substr(p.path.rfind('.') + 1), g.values, g.rows, g.cols,
                    chance_values(g, r.n_embd)});
    }
    if (ps.empty()) return;
    analysis::HeatmapPanelsOptions h;
    h.title = title;
    h.x_label = x_label, h.y_label = y_label;
    h.colorbar_label = "φ";
    h.group = static_cast<int64_t>(mg_targets(o.targets));
    std::vector<double> values, reference;  // every panel's cells: all on one side of chance, no contour
    for (const analysis::HeatmapPanel& p : ps) {
      values.insert(values.end(), p.values.begin(), p.values.end());
      reference.insert(reference.end(), p.reference.begin(), p.reference.end());
    }
    const analysis::ReferenceSide side = analysis::reference_side(values, reference);
    const std::string chance = detail::format("chance, max(i, j)/{} for random subspaces of R^{}", r.n_embd, r.n_embd);
    h.notes = {
        "normalized subspace similarity of the adapters' A (right singular vectors), one panel per block x target",
        side == analysis::ReferenceSide::Above ? "φ above " + chance + ", in every cell (no contour to draw)"
        : side == analysis::ReferenceSide::AtOrBelow
            ? "φ at or below " + chance + ", in every cell (no contour to draw)"
            : "dashed white contour: " + chance};
    analysis::plot_heatmap_panels((fig / name).string(), ps, h);
    files.push_back("figures/" + name);
  };
  panels(false, "phi_ranks.png",
         detail::format("φ(A_r={}, A_r={}, i, j), seed {}", r.grid_rank_small, r.grid_rank_large, o.seeds.front()),
         detail::format("j (r={})", r.grid_rank_large), detail::format("i (r={})", r.grid_rank_small));
  if (o.seeds.size() > 1)
    panels(true, "phi_seeds.png",
           detail::format("φ(A_seed{}, A_seed{}, i, j) at r={}", o.seeds[0], o.seeds[1], r.grid_rank_large),
           detail::format("j (seed {})", o.seeds[1]), detail::format("i (seed {})", o.seeds[0]));
  return files;
}

}  // namespace lowrank::train
