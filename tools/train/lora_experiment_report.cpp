// The lora-experiment's outputs: the Markdown table, results.json and the PNG figures.
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/plot.h"
#include "tools/train/lora_experiment.h"

namespace lowrank::train {
namespace {

std::string fmt(double v, int prec = 4) {
  if (!std::isfinite(v)) return "n/a";
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(prec);
  os << v;
  return os.str();
}

std::vector<const AdapterRun*> runs_of(const LoraExperimentResult& r, const std::string& method) {
  std::vector<const AdapterRun*> out;
  for (const AdapterRun& a : r.runs)
    if (a.method == method) out.push_back(&a);
  return out;
}

// Mean test accuracy per rank over the seeds of one method.
std::map<int64_t, double> mean_acc(const LoraExperimentResult& r, const std::string& method) {
  std::map<int64_t, std::pair<double, int>> acc;
  for (const AdapterRun* a : runs_of(r, method)) {
    acc[a->rank].first += a->test_acc;
    acc[a->rank].second += 1;
  }
  std::map<int64_t, double> out;
  for (auto& [k, v] : acc) out[k] = v.first / v.second;
  return out;
}

}  // namespace

std::string lora_experiment_table(const LoraExperimentOptions& o, const LoraExperimentResult& r) {
  std::ostringstream md;
  md << "# LoRA as compression: Fashion-MNIST MLP, layer `" << o.layer << "` (" << r.layer_in << " -> " << r.layer_out
     << ")\n\n";
  md << "- base model test accuracy: **" << fmt(r.base_acc) << "** (loss " << fmt(r.base_loss) << ")\n";
  md << "- kernel scaled by " << o.base_scale << ", frozen, no adapter: **" << fmt(r.scaled_acc) << "** (loss "
     << fmt(r.scaled_loss) << ")\n";
  md << "- adapters: " << o.epochs << " epoch(s), Adam lr " << o.lr << ", batch " << o.batch << ", init " << o.init
     << ", alpha " << (o.alpha > 0 ? fmt(o.alpha, 1) : std::string("= r")) << "; `lora` keeps base_scale "
     << o.base_scale << ", `compress` moves it " << o.compress_schedule << " from 1 to 0 over "
     << fmt(100 * o.compress_fraction, 0) << "% of the steps, `svd` replaces W by its rank-r truncation\n";
  md << "- rel. err = ‖ΔW − (1 − base_scale)·W‖_F / ‖(1 − base_scale)·W‖_F with ΔW = scale·BA; E–Y = the least any "
        "rank-r ΔW can reach (Eckart–Young); φ_k = φ between the top-r right singular vectors of ΔW and of W\n\n";
  md << "| method | rank | seed | test acc | Δ acc vs base | params | compression | rel. err | E–Y bound | φ_r "
        "(right) | amplification |\n";
  md << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const AdapterRun& a : r.runs) {
    const bool has_report = a.method != "svd";
    md << "| " << a.method << " | " << a.rank << " | "
       << (a.method == "svd" ? std::string("–") : std::to_string(a.seed)) << " | " << fmt(a.test_acc) << " | "
       << (a.test_acc >= r.base_acc ? "+" : "") << fmt(a.test_acc - r.base_acc) << " | " << a.params << " | "
       << fmt(a.compression_ratio, 2) << "x | " << (has_report ? fmt(a.report.relative_error) : "–") << " | "
       << (has_report ? fmt(a.report.eckart_young_error) : "–") << " | "
       << (has_report && !a.report.phi_right.empty() ? fmt(a.report.phi_right.back()) : "–") << " | "
       << (has_report ? fmt(a.report.amplification, 2) : "–") << " |\n";
  }
  md << "\nMean test accuracy per rank:\n\n| rank |";
  const auto lora = mean_acc(r, "lora"), comp = mean_acc(r, "compress"), svd = mean_acc(r, "svd");
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
  row("lora", lora);
  row("compress", comp);
  row("svd", svd);
  if (!r.phi_ranks.values.empty())
    md << "\nSubspace similarity of A's right singular vectors: φ(A_r=" << r.grid_rank_small
       << ", A_r=" << r.grid_rank_large << ", 1, 1) = " << fmt(r.phi_ranks.at(1, 1)) << ", mean over the grid " <<
        [&] {
          double s = 0;
          for (double v : r.phi_ranks.values) s += v;
          return fmt(s / static_cast<double>(r.phi_ranks.values.size()));
        }()
       << "\n";
  md << "\nTotal time " << fmt(r.seconds, 1) << " s.\n";
  return md.str();
}

std::string lora_experiment_json(const LoraExperimentOptions& o, const LoraExperimentResult& r) {
  nlohmann::json j;
  j["options"] = {{"data", o.data_dir},
                  {"out", o.out_dir},
                  {"base", o.base},
                  {"base_epochs", o.base_epochs},
                  {"base_seed", o.base_seed},
                  {"layer", o.layer},
                  {"ranks", o.ranks},
                  {"seeds", o.seeds},
                  {"epochs", o.epochs},
                  {"base_scale", o.base_scale},
                  {"alpha", o.alpha},
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
  j["layer"] = {{"path", o.layer}, {"in", r.layer_in}, {"out", r.layer_out}};
  j["base_acc"] = r.base_acc, j["base_loss"] = r.base_loss;
  j["scaled_acc"] = r.scaled_acc, j["scaled_loss"] = r.scaled_loss;
  nlohmann::json runs = nlohmann::json::array();
  for (const AdapterRun& a : r.runs) {
    nlohmann::json x = {{"method", a.method},       {"rank", a.rank},
                        {"seed", a.seed},           {"test_acc", a.test_acc},
                        {"test_loss", a.test_loss}, {"train_loss", a.train_loss},
                        {"params", a.params},       {"compression_ratio", a.compression_ratio},
                        {"seconds", a.seconds}};
    if (a.method != "svd") {
      x["adapter_dir"] = a.adapter_dir;
      x["report"] = a.report;
    }
    runs.push_back(x);
  }
  j["runs"] = runs;
  j["phi_ranks"] = {{"rank_small", r.grid_rank_small}, {"rank_large", r.grid_rank_large}, {"grid", r.phi_ranks}};
  if (!r.phi_seeds.values.empty()) j["phi_seeds"] = {{"rank", r.grid_rank_large}, {"grid", r.phi_seeds}};
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
  auto heat = [&](const std::string& file, const analysis::SimilarityGrid& g, const std::string& title,
                  const std::string& ylab, const std::string& xlab) {
    if (g.values.empty()) return;
    analysis::HeatmapOptions h;
    h.title = title, h.y_label = ylab, h.x_label = xlab, h.colorbar_label = "phi", h.vmin = 0, h.vmax = 1;
    std::string p = (out / file).string();
    analysis::plot_heatmap(p, g.values, g.rows, g.cols, h);
    paths.push_back(p);
  };
  const std::string rs = std::to_string(r.grid_rank_small), rl = std::to_string(r.grid_rank_large);
  heat("phi_ranks.png", r.phi_ranks, "phi(A r=" + rs + ", A r=" + rl + ", i, j)", "i (r=" + rs + ")",
       "j (r=" + rl + ")");
  if (o.seeds.size() >= 2)
    heat("phi_seeds.png", r.phi_seeds,
         "phi(A r=" + rl + " seed " + std::to_string(o.seeds[0]) + ", seed " + std::to_string(o.seeds[1]) + ", i, j)",
         "i (seed " + std::to_string(o.seeds[0]) + ")", "j (seed " + std::to_string(o.seeds[1]) + ")");

  // ΔW vs W: φ between the top-k right singular vectors of ΔW and W, one line per rank (first seed).
  std::vector<analysis::Series> phi_lines;
  for (const AdapterRun* a : [&] {
         std::vector<const AdapterRun*> v;
         for (const AdapterRun& x : r.runs)
           if (x.method == "lora" && x.seed == o.seeds.front()) v.push_back(&x);
         return v;
       }()) {
    analysis::Series s;
    s.label = "r=" + std::to_string(a->rank);
    for (size_t k = 0; k < a->report.phi_right.size(); ++k) {
      s.x.push_back(static_cast<double>(k + 1));
      s.y.push_back(a->report.phi_right[k]);
    }
    if (!s.x.empty()) phi_lines.push_back(s);
  }
  if (!phi_lines.empty()) {
    std::string p = (out / "delta_vs_w_phi.png").string();
    analysis::plot_lines(p, phi_lines,
                         {.title = "phi(top-k right sing. vectors of dW = sBA, of W), base_scale " +
                                   std::to_string(o.base_scale).substr(0, 4),
                          .x_label = "k",
                          .y_label = "phi"});
    paths.push_back(p);
  }
  // Relative error of ΔW against (1 - base_scale)·W, with the Eckart–Young floor.
  analysis::Series err_lora{"lora (mean over seeds)", {}, {}}, err_comp{"compress", {}, {}},
      ey{"Eckart-Young bound", {}, {}};
  std::map<int64_t, std::pair<double, int>> acc_err;
  for (const AdapterRun& a : r.runs) {
    if (a.method == "lora") {
      acc_err[a.rank].first += a.report.relative_error;
      acc_err[a.rank].second += 1;
    } else if (a.method == "compress") {
      err_comp.x.push_back(static_cast<double>(a.rank));
      err_comp.y.push_back(a.report.relative_error);
    }
  }
  for (auto& [k, v] : acc_err) {
    err_lora.x.push_back(static_cast<double>(k));
    err_lora.y.push_back(v.first / v.second);
    for (const AdapterRun& a : r.runs)
      if (a.method == "lora" && a.rank == k) {
        ey.x.push_back(static_cast<double>(k));
        ey.y.push_back(a.report.eckart_young_error);
        break;
      }
  }
  std::vector<analysis::Series> err_lines;
  for (auto* s : {&err_lora, &err_comp, &ey})
    if (!s->x.empty() && std::all_of(s->y.begin(), s->y.end(), [](double v) { return std::isfinite(v); }))
      err_lines.push_back(*s);
  if (!err_lines.empty()) {
    std::string p = (out / "delta_vs_w_error.png").string();
    analysis::plot_lines(p, err_lines,
                         {.title = "relative error of dW = sBA against (1 - base_scale) W",
                          .x_label = "rank r",
                          .y_label = "relative Frobenius error",
                          .markers = true});
    paths.push_back(p);
  }
  // Accuracy vs rank for the three methods, with the base and scaled-without-adapter levels.
  std::vector<analysis::Series> acc_lines;
  const std::pair<const char*, const char*> methods[] = {{"lora", "LoRA on scaled W (mean over seeds)"},
                                                         {"compress", "compression (base_scale -> 0)"},
                                                         {"svd", "truncated SVD"}};
  for (auto [m, label] : methods) {
    analysis::Series s{label, {}, {}};
    for (auto [k, v] : mean_acc(r, m)) s.x.push_back(static_cast<double>(k)), s.y.push_back(v);
    if (!s.x.empty()) acc_lines.push_back(s);
  }
  const double lo = static_cast<double>(*std::min_element(o.ranks.begin(), o.ranks.end()));
  const double hi = static_cast<double>(*std::max_element(o.ranks.begin(), o.ranks.end()));
  acc_lines.push_back({"base model", {lo, hi}, {r.base_acc, r.base_acc}});
  acc_lines.push_back({"scaled, no adapter", {lo, hi}, {r.scaled_acc, r.scaled_acc}});
  std::string p = (out / "accuracy_vs_rank.png").string();
  analysis::plot_lines(
      p, acc_lines,
      {.title = "test accuracy vs rank", .x_label = "rank r", .y_label = "test accuracy", .markers = true});
  paths.push_back(p);
  return paths;
}

}  // namespace lowrank::train
