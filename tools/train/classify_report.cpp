// `gpt2 classify` results: the Markdown table, results.json (also the --json summary) and the
// confusion-matrix figures.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "analysis/plot_confusion.h"
#include "tools/train/classify.h"
#include "tools/train/classify_internal.h"

namespace lowrank::train {
using nlohmann::json;

namespace {

std::string acc(double a) {
  if (std::isnan(a)) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", a);
  return buf;
}

std::string thousands(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f s", s);
  return buf;
}

// One Markdown table row.
std::string row(const std::vector<std::string>& cells) {
  std::string s = "|";
  for (const std::string& c : cells) {
    s += ' ';
    s += c;
    s += " |";
  }
  s += '\n';
  return s;
}

json nan_null(double v) {
  return std::isnan(v) ? json(nullptr) : json(v);
}

json scores_json(const SplitScores& s) {
  json per = json::array();
  for (double v : s.per_class) per.push_back(nan_null(v));
  return {{"accuracy", nan_null(s.accuracy)}, {"count", s.count}, {"per_class", per}, {"confusion", s.confusion}};
}

}  // namespace

std::string classify_table(const ClassifyResult& r) {
  std::string t = "| model | trainable params | steps | val acc | test acc | time |\n|---|---:|---:|---:|---:|---:|\n";
  for (const ClassifyModeResult& m : r.modes)
    t += row({"GPT-2 " + m.mode, thousands(m.trainable_parameters), std::to_string(m.steps), acc(m.val.accuracy),
              acc(m.test.accuracy), seconds_text(m.seconds)});
  t += row({"bag-of-words logistic regression", thousands(r.baseline_parameters), "", acc(r.baseline_val.accuracy),
            acc(r.baseline_test.accuracy), seconds_text(r.baseline_seconds)});
  t += row({"majority class (" + r.majority_class + ")", "0", "", acc(r.majority_val), acc(r.majority_test), ""});
  t += row({"chance (1/" + std::to_string(r.classes.size()) + ")", "", "", acc(r.chance), acc(r.chance), ""});
  t += "\nTest accuracy per class (" + std::to_string(r.test_docs) + " test documents):\n\n";
  std::vector<std::string> head = {"class", "bag-of-words"}, rule = {"---", "---:"};
  for (const ClassifyModeResult& m : r.modes) head.push_back(m.mode), rule.push_back("---:");
  t += row(head);
  t += row(rule);
  for (size_t k = 0; k < r.classes.size(); ++k) {
    std::vector<std::string> cells = {r.classes[k], acc(r.baseline_test.per_class[k])};
    for (const ClassifyModeResult& m : r.modes) cells.push_back(acc(m.test.per_class[k]));
    t += row(cells);
  }
  return t;
}

std::string classify_json(const ClassifyOptions& o, const ClassifyResult& r) {
  json modes = json::array();
  for (const ClassifyModeResult& m : r.modes)
    modes.push_back(
        {{"mode", m.mode},
         {"trainable_parameters", m.trainable_parameters},
         {"total_parameters", m.total_parameters},
         {"steps", m.steps},
         {"final_step", m.final_step},
         {"resumed_from_step", m.resumed_from_step},
         {"stopped_early", m.stopped_early},
         {"lr", m.lr},
         {"seconds", m.seconds},
         {"tokens_per_s", m.tokens_per_s},
         {"train_loss", nan_null(m.train_loss)},
         {"val", scores_json(m.val)},
         {"test", scores_json(m.test)},
         {"outputs",
          {{"dir", m.dir}, {"metrics", m.metrics_path}, {"confusion", m.confusion_png}, {"files", m.files}}}});
  json j{
      {"command", kClassifyCmd},
      {"classes", r.classes},
      {"data", r.data_source},
      {"model", r.model_path},
      {"documents", {{"train", r.train_docs}, {"val", r.val_docs}, {"test", r.test_docs}}},
      {"truncated_documents", r.truncated_docs},
      {"mean_tokens", r.mean_tokens},
      {"max_len", o.max_len},
      {"chance", r.chance},
      {"majority", {{"class", r.majority_class}, {"val_accuracy", r.majority_val}, {"test_accuracy", r.majority_test}}},
      {"baseline",
       {{"kind", "bag-of-words logistic regression (term frequencies, Adam)"},
        {"val", scores_json(r.baseline_val)},
        {"test", scores_json(r.baseline_test)},
        {"parameters", r.baseline_parameters},
        {"seconds", r.baseline_seconds}}},
      {"modes", modes},
      {"lora", {{"r", o.rank}, {"lora_alpha", o.alpha}, {"targets", o.targets}}},
      {"seed", o.seed},
      {"seconds", r.seconds},
      {"stopped_early", r.stopped_early},
      {"outputs", {{"dir", r.out_dir}, {"results", r.results_path}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void write_confusion_figure(const std::string& path, const std::string& mode, const std::vector<std::string>& classes,
                            const SplitScores& s) {
  analysis::ConfusionOptions opts;
  opts.title = "GPT-2 " + mode + ": test confusion (row-normalised), accuracy " + acc(s.accuracy);
  analysis::plot_confusion(path, s.confusion, classes, opts);
}

}  // namespace lowrank::train
