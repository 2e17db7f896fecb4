// `gpt2 classify`: data, the bag-of-words baseline, and the lora / full / probe runs on the
// trainer, each scored on validation and test. The table, JSON and figure are classify_report.cpp.
#include "tools/train/classify.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/adapter.h"
#include "models/gpt2/checkpoint.h"
#include "models/gpt2/classifier.h"
#include "models/gpt2/label_data.h"
#include "nn/lora.h"
#include "nn/loss.h"
#include "optim/adam.h"
#include "tools/train/classify_internal.h"
#include "tools/train/clock.h"
#include "tools/train/gpt2.h"
#include "tools/train/setup.h"
#include "tools/train/trainer.h"

namespace lowrank::train {
namespace fs = std::filesystem;
namespace mg = models::gpt2;
using nlohmann::json;

namespace {

constexpr uint64_t kHeadSeedSalt = 0x9E3779B97F4A7C15ull;  // the head's init stream: not the batches'
constexpr uint64_t kLoraSeedSalt = 0xD1B54A32D192ED03ull;  // each adapter's own stream
// A checkpoint's LoRA adapters under our layer names (what --resume loads; the PEFT file beside
// it has the fused c_attn names).
constexpr const char* kClassifyAdapterStateFile = "adapter_state.safetensors";

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The sample order of epoch `epoch`: Fisher–Yates driven by splitmix64 keyed by (seed, epoch), the
// same on every platform and standard library (std::shuffle's is not), so a run's batches are a
// pure function of the seed and the step.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  uint64_t state = seed * 0x2545F4914F6CDD1Dull + static_cast<uint64_t>(epoch);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

// The indices of training batch `step` (0-based): epochs of ceil(n / batch) steps, the last batch
// of an epoch shorter.
std::vector<int64_t> batch_indices(int64_t n, int64_t batch, uint64_t seed, int64_t step) {
  const int64_t per_epoch = (n + batch - 1) / batch, epoch = step / per_epoch, k = step % per_epoch;
  const std::vector<int64_t> order = epoch_order(n, seed, epoch);
  const int64_t lo = k * batch, hi = std::min(n, lo + batch);
  return {order.begin() + lo, order.begin() + hi};
}

std::vector<const std::vector<int64_t>*> rows_of(const Encoded& e, const std::vector<int64_t>& idx) {
  std::vector<const std::vector<int64_t>*> rows;
  for (int64_t i : idx) rows.push_back(&e.ids[static_cast<size_t>(i)]);
  return rows;
}

Tensor labels_of(const Encoded& e, const std::vector<int64_t>& idx) {
  std::vector<int64_t> l;
  for (int64_t i : idx) l.push_back(e.labels[static_cast<size_t>(i)]);
  return Tensor::from_vector(l, {static_cast<int64_t>(l.size())});
}

// Evaluation batches in order of length, so that each pads little; the order does not matter there.
std::vector<std::vector<int64_t>> length_sorted_batches(const Encoded& e, int64_t batch) {
  std::vector<int64_t> order(e.ids.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return e.ids[static_cast<size_t>(a)].size() < e.ids[static_cast<size_t>(b)].size();
  });
  std::vector<std::vector<int64_t>> out;
  for (size_t i = 0; i < order.size(); i += static_cast<size_t>(batch))
    out.emplace_back(order.begin() + static_cast<int64_t>(i),
                     order.begin() + static_cast<int64_t>(std::min(order.size(), i + static_cast<size_t>(batch))));
  return out;
}

// Predictions (argmax) and the mean cross-entropy of `logits_of` over a split.
struct Predictions {
  std::vector<int64_t> predicted;
  double loss = NAN;
};

template <class LogitsOf>
Predictions predict(const Encoded& e, int64_t batch, LogitsOf logits_of) {
  NoGradGuard no_grad;
  Predictions p;
  p.predicted.assign(e.ids.size(), -1);
  double loss_sum = 0;
  for (const std::vector<int64_t>& idx : length_sorted_batches(e, batch)) {
    const Tensor logits = logits_of(idx);
    const Tensor labels = labels_of(e, idx).to(logits.device());
    loss_sum += cross_entropy(logits, labels).item() * static_cast<double>(idx.size());
    const std::vector<int64_t> am = argmax(logits, 1).to_vector<int64_t>();
    for (size_t k = 0; k < idx.size(); ++k) p.predicted[static_cast<size_t>(idx[k])] = am[k];
  }
  if (!e.ids.empty()) p.loss = loss_sum / static_cast<double>(e.ids.size());
  return p;
}

// ---- the bag-of-words baseline: logistic regression on term frequencies (each document's token
// counts over its length), logits = Σ_t w[id_t] / len + b, as an embedding lookup so that no
// [N, vocab] matrix is ever formed.
struct BagOfWords {
  Tensor w, b;  // [V, K], [K]
  Tensor logits(const Tensor& ids, const Tensor& weights) const {
    const int64_t B = ids.size(0), T = ids.size(1);
    return add(sum(mul(embedding(w, ids), weights.reshape({B, T, 1})), {1}), b);
  }
};

// Per-token weights 1/len for real tokens, 0 for padding.
Tensor tf_weights(const mg::PaddedBatch& p) {
  const int64_t B = p.ids.size(0), T = p.ids.size(1);
  const std::vector<int64_t> len = p.lengths.to_vector<int64_t>();
  std::vector<float> w(static_cast<size_t>(B * T), 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < len[static_cast<size_t>(b)]; ++t)
      w[static_cast<size_t>(b * T + t)] = 1.0f / static_cast<float>(len[static_cast<size_t>(b)]);
  return Tensor::from_vector(w, {B, T});
}

void train_baseline(const Context& c, ClassifyResult& r) {
  const double t0 = now_seconds();
  const int64_t K = static_cast<int64_t>(c.data.classes.size());
  BagOfWords bow{Tensor::zeros({c.vocab_size, K}).requires_grad_(), Tensor::zeros({K}).requires_grad_()};
  optim::Adam opt(optim::NamedParameters{{"bow.weight", bow.w}, {"bow.bias", bow.b}}, {.lr = c.o.baseline_lr});
  const int64_t n = static_cast<int64_t>(c.train.ids.size()), batch = c.o.eval_batch;
  const int64_t steps = c.o.probe_epochs * ((n + batch - 1) / batch);
  opt.set_schedule(optim::LrSchedule::cosine(c.o.baseline_lr, 0, steps, 0.0));
  for (int64_t step = 0; step < steps; ++step) {
    const std::vector<int64_t> idx = batch_indices(n, batch, c.o.seed, step);
    const mg::PaddedBatch p = mg::pad_right(rows_of(c.train, idx), c.pad_id);
    opt.zero_grad();
    cross_entropy(bow.logits(p.ids, tf_weights(p)), labels_of(c.train, idx)).backward();
    opt.step();
  }
  auto logits_of = [&](const Encoded& e) {
    return [&](const std::vector<int64_t>& idx) {
      const mg::PaddedBatch p = mg::pad_right(rows_of(e, idx), c.pad_id);
      return bow.logits(p.ids, tf_weights(p));
    };
  };
  r.baseline_val = score_split(predict(c.val, batch, logits_of(c.val)).predicted, c.val.labels, K);
  r.baseline_test = score_split(predict(c.test, batch, logits_of(c.test)).predicted, c.test.labels, K);
  r.baseline_parameters = bow.w.numel() + bow.b.numel();
  r.baseline_seconds = now_seconds() - t0;
}

// ---- the GPT-2 runs

double default_lr(const std::string& mode) {
  return mode == "lora" ? 1e-3 : mode == "full" ? 1e-4 : 1e-2;
}

bool known_target(const std::string& target) {
  return std::find(std::begin(mg::kLoraTargets), std::end(mg::kLoraTargets), target) != std::end(mg::kLoraTargets);
}

optim::ParamGroups param_groups(const nn::Module& m, double weight_decay) {
  optim::ParamGroup decay{"decay", {}, std::nullopt, weight_decay}, no_decay{"no_decay", {}, std::nullopt, 0.0};
  for (auto& [name, p] : m.named_parameters())
    if (p.requires_grad()) (p.dim() >= 2 ? decay : no_decay).params.emplace_back(name, p);
  optim::ParamGroups groups;
  for (auto* g : {&decay, &no_decay})
    if (!g->params.empty()) groups.push_back(*g);
  return groups;
}

// The pooled features [N, C] of every document of a split (no grad; the model in eval mode).
Tensor split_features(mg::Gpt2Classifier& clf, const Encoded& e, const Context& c) {
  NoGradGuard no_grad;
  const int64_t C = clf.transformer().config().n_embd;
  Tensor out = Tensor::zeros({static_cast<int64_t>(e.ids.size()), C}, DType::F32, c.device);
  for (const std::vector<int64_t>& idx : length_sorted_batches(e, c.o.eval_batch)) {
    const mg::PaddedBatch p = mg::pad_right(rows_of(e, idx), c.pad_id);
    const Tensor f = clf.features(p.ids.to(c.device), p.lengths);
    for (size_t k = 0; k < idx.size(); ++k)
      out.slice(0, idx[k], idx[k] + 1).copy_(f.slice(0, static_cast<int64_t>(k), static_cast<int64_t>(k) + 1));
  }
  return out;
}

// --max-time counts from `started_at`, the moment the command began (earlier modes and loading count).
ClassifyModeResult run_mode(const std::string& mode, const Context& c, const std::string& out_dir, double started_at) {
  const ClassifyOptions& o = c.o;
  ClassifyModeResult m;
  m.mode = mode;
  m.lr = o.lr > 0 ? o.lr : default_lr(mode);
  const int64_t K = static_cast<int64_t>(c.data.classes.size());

  std::shared_ptr<mg::Gpt2> base = load_gpt2_model(c.model_path, kClassifyCmd);
  base->to(c.device);
  if (mode == "lora") {
    mg::Gpt2LoraSpec spec;
    spec.targets = o.targets;
    spec.lora.r = o.rank, spec.lora.alpha = o.alpha, spec.lora.seed = o.seed ^ kLoraSeedSalt;
    mg::inject_gpt2_lora(*base, spec);  // freezes the transformer but its adapters
  } else if (mode == "probe") {
    base->freeze();
  }
  // The head comes after the injection, so it stays trainable: PEFT's modules_to_save.
  nn::Generator head_gen(o.seed ^ kHeadSeedSalt);
  auto clf = std::make_shared<mg::Gpt2Classifier>(base, K, head_gen);
  clf->to(c.device);
  const nn::ParameterCount count = clf->parameter_count();
  m.trainable_parameters = count.trainable;
  m.total_parameters = count.total;

  // The probe reads cached features: the frozen transformer runs once per document, not per step.
  Tensor train_features, val_features, test_features;
  if (mode == "probe") {
    clf->eval();
    train_features = split_features(*clf, c.train, c);
    val_features = split_features(*clf, c.val, c);
    test_features = split_features(*clf, c.test, c);
  }
  auto logits_of = [&](const Encoded& e, const Tensor& features) {
    return [&, features](const std::vector<int64_t>& idx) {
      if (features.defined())
        return clf->head(
            embedding(features, Tensor::from_vector(idx, {static_cast<int64_t>(idx.size())}).to(c.device)));
      const mg::PaddedBatch p = mg::pad_right(rows_of(e, idx), c.pad_id);
      return clf->forward(p.ids.to(c.device), p.lengths);
    };
  };

  const int64_t n = static_cast<int64_t>(c.train.ids.size());
  const int64_t per_epoch = (n + o.batch - 1) / o.batch;
  const int64_t epochs = mode == "probe" ? o.probe_epochs : o.epochs;
  m.steps = o.steps > 0 ? o.steps : epochs * per_epoch;
  const int64_t warmup = std::min<int64_t>(m.steps / 10, 100);

  // What the batches, the schedule and the weights follow from: a resume must ask for the same.
  json settings = {{"data", c.data.source},
                   {"classes", c.data.classes},
                   {"model", c.model_path},
                   {"max_len", o.max_len},
                   {"batch", o.batch},
                   {"steps", m.steps},
                   {"lr", m.lr},
                   {"weight_decay", o.weight_decay},
                   {"grad_clip", o.grad_clip},
                   {"seed", o.seed}};
  if (mode == "lora") settings.update({{"rank", o.rank}, {"alpha", o.alpha}, {"targets", o.targets}});

  m.dir = (fs::path(out_dir) / mode).string();
  std::vector<std::string> exports = {"score.safetensors"};
  if (mode == "lora") exports.insert(exports.end(), {"adapter_model.safetensors", "adapter_config.json"});
  if (mode == "full") exports.push_back("model.safetensors");
  RunFolderOptions ropt;
  ropt.command = kClassifyCmd, ropt.overwrite = o.overwrite, ropt.exports = exports;
  // --resume: a mode with a checkpoint goes on from it; one without starts afresh in its folder.
  if (!o.resume.empty() && !list_checkpoints(m.dir).empty()) ropt.resume = m.dir;
  RunFolder run(m.dir, ropt);
  m.metrics_path = run.path(kMetricsFile);
  for (const std::string& f : exports) m.files.push_back(run.path(f));

  optim::AdamW opt(param_groups(*clf, o.weight_decay), {.lr = m.lr, .eps = optim::kTorchAdamEps});
  opt.set_schedule(optim::LrSchedule::cosine(m.lr, warmup, m.steps, 0.0));
  Trainer trainer(opt,
                  {.command = kClassifyCmd + std::string(" (") + mode + ")",
                   .total_steps = m.steps,
                   .steps_per_epoch = per_epoch,
                   .total_flag = o.steps > 0 ? "--steps" : "--epochs",
                   .stop_at = o.stop_at,
                   .max_time = o.max_time,
                   .started_at = started_at,
                   .evaluations_after = 2,  // the scores below: the validation split again and the test split
                   .log_every = std::max<int64_t>(1, std::min<int64_t>(per_epoch / 4, 50)),
                   .eval_every = per_epoch,
                   .checkpoint_every = o.checkpoint_every,
                   .grad_clip = o.grad_clip,
                   .progress = o.progress},
                  &run);
  trainer.hooks.forward = [&](int64_t step) {
    const std::vector<int64_t> idx = batch_indices(n, o.batch, o.seed, step);
    StepOutput out;
    const Tensor labels = labels_of(c.train, idx).to(c.device);
    Tensor logits;
    if (mode == "probe") {
      logits = logits_of(c.train, train_features)(idx);
    } else {
      const mg::PaddedBatch p = mg::pad_right(rows_of(c.train, idx), c.pad_id);
      logits = clf->forward(p.ids.to(c.device), p.lengths);
      for (int64_t l : p.lengths.to_vector<int64_t>()) out.tokens += l;
    }
    out.loss = cross_entropy(logits, labels);
    out.weight = static_cast<double>(idx.size());
    out.samples = static_cast<int64_t>(idx.size());
    out.sums["correct"] = static_cast<double>(nn::count_correct(logits.detach(), labels));
    return out;
  };
  trainer.hooks.log = [&](const IntervalStats& s) -> std::optional<json> {
    m.train_loss = s.loss;
    const double acc = s.samples > 0 ? s.sums.at("correct") / static_cast<double>(s.samples) : NAN;
    if (o.log)
      trainer.print(detail::format("{} {}/{}  loss {}  train acc {}  lr {}  {} samples/s", mode, s.step, m.steps,
                                   fixed(s.loss, 4), fixed(acc, 3), scientific(s.lr, 2),
                                   fixed(static_cast<double>(s.samples) / std::max(s.step_seconds, 1e-9), 1)));
    return json{{"step", s.step},
                {"train_loss", s.loss},
                {"train_accuracy", acc},
                {"lr", s.lr},
                {"samples_per_s", static_cast<double>(s.samples) / std::max(s.step_seconds, 1e-9)},
                {"seconds", s.seconds}};
  };
  trainer.hooks.evaluate = [&](int64_t step) -> std::optional<json> {
    clf->eval();
    const Predictions p = predict(c.val, o.eval_batch, logits_of(c.val, val_features));
    clf->train(mode != "probe");
    const double acc = score_split(p.predicted, c.val.labels, K).accuracy;
    if (o.log)
      trainer.print(detail::format("{} {}  val loss {}  val acc {}", mode, trainer.where(step, true), fixed(p.loss, 4),
                                   fixed(acc, 4)));
    return json{{"step", step}, {"val_loss", p.loss}, {"val_accuracy", acc}};
  };
  trainer.hooks.save = [&](CheckpointWriter& w) {
    const std::map<std::string, std::string> meta = {{"format", "pt"}, {"classes", json(c.data.classes).dump()}};
    io::save_safetensors(w.path("score.safetensors"), clf->head_state(), meta);
    if (mode == "lora") {
      // PEFT's file for GPT2ForSequenceClassification: the c_attn/c_proj/c_fc adapters as
      // models/gpt2/adapter exports them, plus the whole head under modules_to_save.
      mg::PeftAdapter a = mg::gpt2_adapter_to_peft(clf->transformer(), c.model_path);
      a.tensors["base_model.model.score.weight"] = clf->score_weight();
      json peft = json::parse(a.config_json);
      peft["task_type"] = "SEQ_CLS";
      peft["modules_to_save"] = {"score"};
      io::save_safetensors(w.path(mg::kAdapterWeightsFile), a.tensors, a.metadata);
      io::write_file_atomic(w.path(mg::kAdapterConfigFile), peft.dump(2) + "\n");
    }
    if (mode == "full") mg::save_checkpoint(clf->transformer(), w.dir());
    // What a resume needs besides the head (and, for full, model.safetensors): the adapters under
    // our names, the dropout stream, and the settings that make the batches and the schedule.
    if (mode == "lora") {
      std::map<std::string, Tensor> adapters;
      for (auto& [name, p] : clf->transformer().named_parameters())
        if (p.requires_grad()) adapters.emplace(name, p);
      io::save_safetensors(w.path(kClassifyAdapterStateFile), adapters);
    }
    const nn::Generator& g = clf->transformer().dropout_generator();
    w.state() = json{{"settings", settings}, {"dropout_seed", g.seed()}, {"dropout_offset", g.offset()}};
  };
  trainer.hooks.load = [&](const Checkpoint& ck) {
    const json& st = ck.state();
    LR_CHECK(st.contains("dropout_seed") && st.contains("dropout_offset"), "{} has no resume state", kTrainerStateFile);
    clf->load_head(io::load_safetensors(ck.file("score.safetensors")).tensors, ck.dir);
    if (mode == "full") clf->transformer().load_state_dict(mg::load_checkpoint(ck.dir)->state_dict());
    if (mode == "lora") {
      const io::SafetensorsFile f = io::load_safetensors(ck.file(kClassifyAdapterStateFile));
      for (auto& [name, p] : clf->transformer().named_parameters())
        LR_CHECK(!p.requires_grad() || f.tensors.count(name), "{} has no tensor '{}'", kClassifyAdapterStateFile, name);
      clf->transformer().load_state_dict(f.tensors, /*strict=*/false);
    }
    clf->transformer().dropout_generator().set_state(st["dropout_seed"].get<uint64_t>(),
                                                     st["dropout_offset"].get<uint64_t>());
  };
  trainer.hooks.progress_text = [&](const IntervalStats& s) {
    return detail::format("{} step {}/{} loss {}", mode, s.step, m.steps, fixed(s.loss, 4));
  };

  run.begin();
  json cfg = {{"command", kClassifyCmd},
              {"mode", mode},
              {"base_model", c.model_path},
              {"id2label", c.data.classes},
              {"num_labels", K},
              {"max_len", o.max_len},
              {"steps", m.steps},
              {"batch", o.batch},
              {"lr", m.lr},
              {"warmup", warmup},
              {"weight_decay", o.weight_decay},
              {"grad_clip", o.grad_clip},
              {"seed", o.seed},
              {"data", c.data.source}};
  if (mode == "lora")
    cfg["lora"] = {{"r", o.rank}, {"lora_alpha", o.alpha}, {"targets", o.targets}, {"modules_to_save", {"score"}}};
  run.write_text("config.json", cfg.dump(2) + "\n");

  clf->train(mode != "probe");
  std::vector<json> records;
  const std::optional<Checkpoint>& from = run.resume_from();
  if (from) {  // the same flags, or the batches and the schedule would differ from the stopped run's
    const json saved = from->state().value("settings", json::object());
    for (const auto& [key, value] : settings.items())
      if (!saved.contains(key) || saved[key] != value)
        usage_error("{}: --resume: the {} run in {} was made with {} {}, this one asks for {}; give the same flags",
                    kClassifyCmd, mode, from->run_dir, key, saved.value(key, json()).dump(), value.dump());
  }
  if (from && from->step >= m.steps) {
    // This mode finished before the stop: read its weights back and score them, no training.
    trainer.hooks.load(*from);
    m.resumed_from_step = m.final_step = from->step;
    m.seconds = from->trainer_state.value("seconds", 0.0);
    if (auto h = from->trainer_state.find("history"); h != from->trainer_state.end() && h->is_array())
      records.assign(h->begin(), h->end());
    for (const json& rec : records)
      if (rec.contains("train_loss")) m.train_loss = rec["train_loss"].get<double>();
  } else {
    if (from) m.resumed_from_step = trainer.restore(*from);
    const TrainSummary s = trainer.run();
    m.seconds = s.seconds;
    m.tokens_per_s = s.step_seconds > 0 ? static_cast<double>(s.tokens) / s.step_seconds : 0.0;
    records = trainer.history();
    m.final_step = s.final_step;
    if (s.stopped_early) {
      m.stopped_early = true;
      m.val.accuracy = m.test.accuracy = NAN;
      return m;
    }
  }

  clf->eval();
  m.val = score_split(predict(c.val, o.eval_batch, logits_of(c.val, val_features)).predicted, c.val.labels, K);
  m.test = score_split(predict(c.test, o.eval_batch, logits_of(c.test, test_features)).predicted, c.test.labels, K);
  records.push_back({{"step", m.steps},
                     {"val_accuracy", m.val.accuracy},
                     {"test_accuracy", m.test.accuracy},
                     {"test_per_class", m.test.per_class}});
  run.write_metrics(records);
  m.confusion_png = run.path("confusion.png");
  write_confusion_figure(m.confusion_png, mode, c.data.classes, m.test);
  return m;
}

}  // namespace

SplitScores score_split(const std::vector<int64_t>& predicted, const std::vector<int64_t>& labels, int64_t K) {
  SplitScores s;
  s.count = static_cast<int64_t>(labels.size());
  s.confusion.assign(static_cast<size_t>(K * K), 0);
  std::vector<int64_t> per(static_cast<size_t>(K), 0), hit(static_cast<size_t>(K), 0);
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const int64_t y = labels[i], p = predicted[i];
    ++s.confusion[static_cast<size_t>(y * K + p)];
    ++per[static_cast<size_t>(y)];
    hit[static_cast<size_t>(y)] += p == y;
    correct += p == y;
  }
  s.accuracy = s.count > 0 ? static_cast<double>(correct) / static_cast<double>(s.count) : NAN;
  for (int64_t k = 0; k < K; ++k)
    s.per_class.push_back(per[static_cast<size_t>(k)] > 0 ? static_cast<double>(hit[static_cast<size_t>(k)]) /
                                                                static_cast<double>(per[static_cast<size_t>(k)])
                                                          : NAN);
  return s;
}

ClassifyResult run_classify(const ClassifyOptions& o) {
  const double t0 = now_seconds();
  // ---- flags, before anything is read or written
  if (o.modes.empty()) usage_error("{}: --mode needs at least one of lora, full, probe", kClassifyCmd);
  for (const std::string& mode : o.modes)
    if (std::find(std::begin(kClassifyModes), std::end(kClassifyModes), mode) == std::end(kClassifyModes))
      usage_error("{}: unknown mode '{}' (lora, full or probe)", kClassifyCmd, mode);
  for (size_t i = 0; i < o.modes.size(); ++i)
    if (std::find(o.modes.begin() + static_cast<int64_t>(i) + 1, o.modes.end(), o.modes[i]) != o.modes.end())
      usage_error("{}: mode '{}' is given twice", kClassifyCmd, o.modes[i]);
  const bool lora = std::find(o.modes.begin(), o.modes.end(), "lora") != o.modes.end();
  if (lora && o.targets.empty()) usage_error("{}: --targets needs at least one layer", kClassifyCmd);
  for (const std::string& t : o.targets)
    if (!known_target(t))
      usage_error("{}: --targets '{}' matches no layer (query, key, value, out, fc, proj)", kClassifyCmd, t);
  for (size_t i = 0; i < o.targets.size(); ++i)
    if (std::find(o.targets.begin() + static_cast<int64_t>(i) + 1, o.targets.end(), o.targets[i]) != o.targets.end())
      usage_error("{}: --targets names '{}' twice", kClassifyCmd, o.targets[i]);
  if (o.rank < 1) usage_error("{}: --rank must be >= 1, got {}", kClassifyCmd, o.rank);
  if (o.max_len < 1) usage_error("{}: --max-len must be >= 1, got {}", kClassifyCmd, o.max_len);
  if (o.batch < 1 || o.eval_batch < 1) usage_error("{}: --batch must be >= 1", kClassifyCmd);
  if (o.epochs < 1 && o.steps < 1) usage_error("{}: --epochs must be >= 1", kClassifyCmd);
  if (!(o.lr >= 0 && std::isfinite(o.lr))) usage_error("{}: --lr must be a positive number", kClassifyCmd);
  if (o.stop_at < 0) usage_error("{}: --stop-at must be >= 0, got {}", kClassifyCmd, o.stop_at);
  if (!(o.max_time >= 0)) usage_error("{}: --max-time must be >= 0, got {}", kClassifyCmd, o.max_time);
  if (o.checkpoint_every < 0) usage_error("{}: --checkpoint-every must be >= 0", kClassifyCmd);
  if (!o.resume.empty()) {
    if (!o.out.empty() && fs::path(o.out).lexically_normal() != fs::path(o.resume).lexically_normal())
      usage_error("{}: --resume goes on in its own folder ({}); leave --out out", kClassifyCmd, o.resume);
    if (o.overwrite) usage_error("{}: --resume and --overwrite exclude each other", kClassifyCmd);
    bool any = false;
    for (const char* mode : kClassifyModes)
      any = any || !list_checkpoints((fs::path(o.resume) / mode).string()).empty();
    if (!any)
      LR_FAIL("{}: --resume {}: no checkpoint of `{}` there (it holds one folder per mode: lora, full, probe)",
              kClassifyCmd, o.resume, kClassifyCmd);
  }
  const Device device = setup_device(o.device, o.threads, kClassifyCmd);

  ClassifyResult r;
  r.out_dir = !o.resume.empty() ? o.resume : o.out.empty() ? kClassifyDefaultOut : o.out;
  r.model_path = o.model.empty() ? kGpt2DefaultOut : o.model;

  // ---- data (class names are checked against the folder first: a misspelt class is a usage error)
  mg::LabelDataOptions dopt;
  dopt.classes = o.classes;
  if (!o.data.empty() && fs::is_regular_file(o.data))
    dopt.file = o.data;
  else
    dopt.dir = o.data;
  if (dopt.file.empty() && !o.classes.empty()) {
    const std::string dir = o.data.empty() ? mg::kDefaultCorpusDir : o.data;
    const std::vector<std::string> have = mg::available_classes(dir);
    for (const std::string& cl : o.classes)
      if (std::find(have.begin(), have.end(), cl) == have.end())
        usage_error("{}: --classes names '{}', which {} does not have", kClassifyCmd, cl, dir);
  }
  Context c{o, mg::load_label_data(dopt), device, {}, {}, {}, {}};
  r.classes = c.data.classes;
  r.data_source = c.data.source;
  LR_CHECK(!c.data.val.empty() && !c.data.test.empty(),
           "{}: {} gives {} validation and {} test documents; each split needs at least one (more data, please)",
           kClassifyCmd, c.data.source, c.data.val.size(), c.data.test.size());

  // ---- base model and tokenizer: a missing base is one line that says how to make one
  if (!fs::exists(r.model_path))
    LR_FAIL(
        "{}: no base model at {} (train one with `lowrank gpt2 train`, or point --model at a run folder or a "
        "Hugging Face GPT-2 folder)",
        kClassifyCmd, r.model_path);
  c.model_path = r.model_path;
  const mg::Tokenizer tok = load_gpt2_tokenizer(o.vocab, kClassifyCmd);
  {
    const std::shared_ptr<mg::Gpt2> probe_base = load_gpt2_model(r.model_path, kClassifyCmd);
    check_vocab_fits(*probe_base, tok, kClassifyCmd);
    if (o.max_len > probe_base->config().n_ctx)
      usage_error("{}: --max-len {} is longer than the model's context ({})", kClassifyCmd, o.max_len,
                  probe_base->config().n_ctx);
    if (lora && o.rank > probe_base->config().n_embd)
      usage_error("{}: --rank {} is larger than the layers allow (min(in, out) = {})", kClassifyCmd, o.rank,
                  probe_base->config().n_embd);
    c.vocab_size = probe_base->config().vocab_size;
  }
  c.pad_id = tok.eot_id();

  // ---- tokens
  int64_t tokens = 0;
  const std::pair<const std::vector<mg::LabelledText>*, Encoded*> splits[] = {
      {&c.data.train, &c.train}, {&c.data.val, &c.val}, {&c.data.test, &c.test}};
  for (const auto& [split, enc] : splits)
    for (const mg::LabelledText& d : *split) {
      std::vector<int64_t> ids = tok.encode(d.text);
      if (ids.empty()) ids.push_back(tok.eot_id());
      if (static_cast<int64_t>(ids.size()) > o.max_len) ids.resize(static_cast<size_t>(o.max_len)), ++r.truncated_docs;
      tokens += static_cast<int64_t>(ids.size());
      enc->ids.push_back(std::move(ids));
      enc->labels.push_back(d.label);
    }
  r.train_docs = static_cast<int64_t>(c.train.ids.size());
  r.val_docs = static_cast<int64_t>(c.val.ids.size());
  r.test_docs = static_cast<int64_t>(c.test.ids.size());
  r.mean_tokens = static_cast<double>(tokens) / static_cast<double>(r.train_docs + r.val_docs + r.test_docs);
  if (o.log)
    std::fprintf(stderr,
                 "%s: %zu classes from %s: %lld train, %lld val, %lld test documents, %.1f tokens each "
                 "(%lld cut to --max-len %lld)\n",
                 kClassifyCmd, r.classes.size(), r.data_source.c_str(), static_cast<long long>(r.train_docs),
                 static_cast<long long>(r.val_docs), static_cast<long long>(r.test_docs), r.mean_tokens,
                 static_cast<long long>(r.truncated_docs), static_cast<long long>(o.max_len));

  // ---- floors: chance, the majority class, bag-of-words
  const int64_t K = static_cast<int64_t>(r.classes.size());
  r.chance = 1.0 / static_cast<double>(K);
  std::vector<int64_t> freq(static_cast<size_t>(K), 0);
  for (int64_t y : c.train.labels) ++freq[static_cast<size_t>(y)];
  const int64_t major = std::max_element(freq.begin(), freq.end()) - freq.begin();
  r.majority_class = r.classes[static_cast<size_t>(major)];
  r.majority_val = score_split(std::vector<int64_t>(c.val.labels.size(), major), c.val.labels, K).accuracy;
  r.majority_test = score_split(std::vector<int64_t>(c.test.labels.size(), major), c.test.labels, K).accuracy;
  train_baseline(c, r);
  if (o.log)
    std::fprintf(stderr, "%s: bag-of-words baseline: val acc %.4f, test acc %.4f (%.1f s)\n", kClassifyCmd,
                 r.baseline_val.accuracy, r.baseline_test.accuracy, r.baseline_seconds);

  for (const std::string& mode : o.modes) {
    r.modes.push_back(run_mode(mode, c, r.out_dir, t0));
    if (r.modes.back().stopped_early) {
      r.stopped_early = true;
      r.seconds = now_seconds() - t0;
      return r;  // no results.json yet: `--resume` finishes the run and writes it
    }
  }

  r.results_path = (fs::path(r.out_dir) / "results.json").string();
  r.seconds = now_seconds() - t0;
  io::write_file_atomic(r.results_path, classify_json(o, r) + "\n");
  io::write_file_atomic((fs::path(r.out_dir) / "results.md").string(), classify_table(r));
  return r;
}

}  // namespace lowrank::train
