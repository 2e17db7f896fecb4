// GPT-2 set-up shared by the gpt2 subcommands, and the `gpt2 train` run on the trainer: AdamW in
// two parameter groups (decay on matrices only) with warmup + cosine, periodic validation,
// checkpoints that hold the dropout stream, and a loss-curve PNG.
#include "tools/train/gpt2.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "analysis/plot.h"
#include "core/autograd.h"
#include "models/gpt2/checkpoint.h"
#include "optim/adam.h"
#include "tools/train/clock.h"
#include "tools/train/data_parallel.h"
#include "tools/train/setup.h"
#include "tools/train/trainer.h"

namespace lowrank::train {
namespace fs = std::filesystem;
namespace mg = models::gpt2;
using nlohmann::json;

// ---- set-up shared by the gpt2 subcommands

mg::Tokenizer load_gpt2_tokenizer(const std::string& dir_flag, const std::string& command) {
  const std::string dir = dir_flag.empty() ? mg::Tokenizer::default_dir() : dir_flag;
  LR_CHECK(fs::is_directory(dir),
           "{}: no GPT-2 vocabulary folder {} (tools/setup installs encoder.json + vocab.bpe there; "
           "point --vocab or $LOWRANK_GPT2_VOCAB at a folder with them or with vocab.json + merges.txt)",
           command, dir);
  try {
    return mg::Tokenizer::from_dir(dir);
  } catch (const Error& e) {
    LR_FAIL("{}: cannot read the vocabulary in {}: {}", command, dir, e.what());
  }
}

mg::TextEncoder gpt2_text_encoder(const mg::Tokenizer& tok, const std::string& dir_flag) {
  const std::string dir = dir_flag.empty() ? mg::Tokenizer::default_dir() : dir_flag;
  mg::TextEncoder e;
  e.encode = [tok](std::string_view text) { return tok.encode(text); };
  e.eot_id = tok.eot_id();
  e.vocab_size = tok.vocab_size();
  e.fingerprint = mg::vocab_fingerprint(dir);
  return e;
}

std::unique_ptr<mg::Gpt2> load_gpt2_model(const std::string& path, const std::string& command) {
  LR_CHECK(fs::exists(path),
           "{}: no model at {} (a folder from `lowrank gpt2 train`, a Hugging Face folder with "
           "model.safetensors + config.json, or a .safetensors file)",
           command, path);
  try {
    return mg::load_any(path);
  } catch (const Error& e) {
    LR_FAIL("{}: cannot load the model {}: {}", command, path, e.what());
  }
}

void check_vocab_fits(const mg::Gpt2& model, const mg::Tokenizer& tok, const std::string& command) {
  LR_CHECK(model.config().vocab_size >= tok.vocab_size(),
           "{}: the model's vocabulary has {} ids but the tokenizer's has {}; they must match", command,
           model.config().vocab_size, tok.vocab_size());
}

double gpt2_mean_loss(mg::Gpt2& model, const std::vector<mg::Batch>& batches, Device device) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  double sum = 0.0;
  int64_t n = 0;
  for (const mg::Batch& b : batches) {
    const double loss = model.loss(b.inputs.to(device), b.targets.to(device)).item();
    sum += loss * static_cast<double>(b.targets.numel());
    n += b.targets.numel();
  }
  model.train(was_training);
  return n > 0 ? sum / static_cast<double>(n) : NAN;
}

// ---- gpt2 train

namespace {

constexpr const char* kCmd = "gpt2 train";
constexpr uint64_t kDropoutSeedSalt = 0xA0761D6478BD642Full;  // dropout masks: not the weights' stream

// GPT-2's recipe: weight decay on kernels and embeddings, none on biases and LayerNorm parameters.
optim::ParamGroups gpt2_param_groups(const mg::Gpt2& model, double weight_decay) {
  optim::ParamGroup decay{"decay", {}, std::nullopt, weight_decay}, no_decay{"no_decay", {}, std::nullopt, 0.0};
  for (auto& [name, p] : model.named_trainable_parameters())
    (p.dim() >= 2 ? decay : no_decay).params.emplace_back(name, p);
  return {decay, no_decay};
}

json options_json(const Gpt2TrainOptions& o, const std::string& out, const std::vector<std::string>& files,
                  int64_t seq_len, int64_t warmup) {
  json j{{"command", kCmd},    {"data", files},
         {"preset", o.preset}, {"config", o.config},
         {"init", o.init},     {"resume", o.resume},
         {"out", out},         {"cache_dir", o.cache_dir},
         {"vocab", o.vocab},   {"optimizer", "adamw (decay on tensors of 2+ axes), warmup + cosine schedule"}};
  j.update(gpt2_training_json(o, seq_len, warmup));
  return j;
}

// `vocab`: the model's output size; predicting uniformly over it costs ln(vocab) nats a token (chance).
void write_loss_curve(const std::string& path, const Gpt2TrainResult& r, int64_t vocab) {
  analysis::Series train{"train (mean per log interval)", {}, {}}, val{"validation", {}, {}};
  for (const Gpt2TrainPoint& p : r.train) train.x.push_back(static_cast<double>(p.step)), train.y.push_back(p.loss);
  for (const Gpt2TrainPoint& p : r.val) val.x.push_back(static_cast<double>(p.step)), val.y.push_back(p.loss);
  std::vector<analysis::Series> series;
  for (auto* s : {&train, &val})
    if (!s->x.empty()) series.push_back(*s);
  if (series.empty()) return;
  analysis::LineOptions lo;
  lo.title = "GPT-2 training: loss";
  lo.x_label = "optimizer step";
  lo.y_label = "cross-entropy per token (nats)";
  lo.markers = r.train.size() + r.val.size() < 40;
  const double chance = std::log(static_cast<double>(vocab));
  lo.hlines.push_back({detail::format("chance (uniform): ln {} = {}", vocab, fixed(chance, 3)), chance});
  analysis::plot_lines(path, series, lo);
}

}  // namespace

json gpt2_point_json(const Gpt2TrainPoint& p, bool val) {
  if (val) return json{{"step", p.step}, {"val_loss", p.loss}, {"tokens", p.tokens}, {"seconds", p.seconds}};
  return json{{"step", p.step},     {"train_loss", p.loss},           {"lr", p.lr},
              {"tokens", p.tokens}, {"tokens_per_s", p.tokens_per_s}, {"seconds", p.seconds}};
}

void add_gpt2_point(const json& j, std::vector<Gpt2TrainPoint>& train, std::vector<Gpt2TrainPoint>& val,
                    const std::string& command) {
  try {
    Gpt2TrainPoint p;
    p.step = j.at("step").get<int64_t>();
    p.tokens = j.value("tokens", int64_t{0});
    p.seconds = j.value("seconds", 0.0);
    if (j.contains("val_loss")) {
      p.loss = j.at("val_loss").get<double>();
      val.push_back(p);
    } else {
      p.loss = j.at("train_loss").get<double>();
      p.lr = j.value("lr", 0.0);
      p.tokens_per_s = j.value("tokens_per_s", 0.0);
      train.push_back(p);
    }
  } catch (const std::exception& e) {
    LR_FAIL("{}: a metrics record is not a train or validation record ({}): {}", command, e.what(), j.dump());
  }
}

void use_rank_stream(nn::Generator& g, int rank) {
  constexpr uint64_t kRankSalt = 0xE7037ED1A0B428DBull;
  g.set_state(g.seed() ^ (kRankSalt * static_cast<uint64_t>(rank)), g.offset());
}

mg::TokenData load_gpt2_run_data(const mg::Tokenizer& tok, const std::string& vocab_dir,
                                 const std::vector<std::string>& files, double val_fraction,
                                 const std::string& cache_dir, int threads) {
  mg::TokenDataOptions dopt;
  dopt.files = files;
  dopt.val_fraction = val_fraction;
  dopt.cache_dir = cache_dir;
  dopt.threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!dist::is_leader()) dist::barrier();  // (mpirun) the leader encodes the text and writes the cache first
  mg::TokenData data = mg::load_token_data(gpt2_text_encoder(tok, vocab_dir), dopt);
  if (dist::distributed() && dist::is_leader()) dist::barrier();
  return data;
}

void set_gpt2_log_hooks(Trainer& trainer, std::vector<Gpt2TrainPoint>& train, int64_t steps, int64_t tokens_per_step,
                        bool log) {
  trainer.hooks.log = [&trainer, &train, steps, tokens_per_step, log](const IntervalStats& s) -> std::optional<json> {
    Gpt2TrainPoint p{
        s.step, s.loss, s.lr, static_cast<double>(s.tokens) / s.step_seconds, s.seconds, s.step * tokens_per_step};
    train.push_back(p);
    if (log)
      trainer.print(detail::format("step {}/{}  loss {}  lr {}  {} tokens/s", p.step, steps, fixed(p.loss, 4),
                                   scientific(p.lr, 2), fixed(p.tokens_per_s, 0)));
    return gpt2_point_json(p, false);
  };
  trainer.hooks.progress_text = [steps](const IntervalStats& s) {
    return detail::format("step {}/{} loss {} {} tokens/s", s.step, steps, fixed(s.loss, 4),
                          fixed(static_cast<double>(s.tokens) / std::max(s.step_seconds, 1e-9), 0));
  };
}

Gpt2TrainResult run_gpt2_train(const Gpt2TrainOptions& o) {
  const double started_at = std::isnan(o.started_at) ? now_seconds() : o.started_at;  // --max-time counts from here
  if (o.steps < 1) usage_error("gpt2 train: --steps must be >= 1, got {}", o.steps);
  if (o.batch < 1) usage_error("gpt2 train: --batch must be >= 1, got {}", o.batch);
  if (o.seq_len < 0) usage_error("gpt2 train: --seq-len must be >= 0 (0: the model's context), got {}", o.seq_len);
  if (!(std::isfinite(o.lr) && o.lr > 0)) usage_error("gpt2 train: --lr must be a positive number, got {}", o.lr);
  if (!(std::isfinite(o.min_lr) && o.min_lr >= 0 && o.min_lr <= o.lr))
    usage_error("gpt2 train: --min-lr must be from 0 to --lr ({}), got {}", o.lr, o.min_lr);
  if (!(o.max_time >= 0)) usage_error("gpt2 train: --max-time must be >= 0, got {}", o.max_time);
  if ((o.init.empty() ? 0 : 1) + (o.resume.empty() ? 0 : 1) + (o.config.empty() ? 0 : 1) > 1)
    usage_error("gpt2 train: --init, --resume and --config exclude each other");
  if (o.config.empty() && o.init.empty() && o.resume.empty() &&
      std::find(std::begin(kGpt2TrainPresets), std::end(kGpt2TrainPresets), o.preset) == std::end(kGpt2TrainPresets))
    usage_error("gpt2 train: unknown preset '{}' (gpt2 train offers small, gpt2, gpt2-medium, gpt2-large, gpt2-xl)",
                o.preset);
  const Device device = setup_device(o.device, o.threads, kCmd);
  DataParallel dp;
  dp.check_batch(kCmd, o.batch);

  Gpt2TrainResult r;
  r.model_dir = run_dir_for(o.out, o.resume, kGpt2DefaultOut);
  RunFolder run(r.model_dir, {.command = kCmd, .resume = o.resume, .overwrite = o.overwrite});
  dist::barrier();  // (mpirun) every rank has looked at the folder before the leader writes to it
  r.metrics_path = run.path(kMetricsFile);
  r.config_path = run.path("config.json");
  r.optimizer_path = run.path("optimizer.safetensors");
  r.loss_curve_path = run.path("training_loss.png");

  // ---- model
  const uint64_t dropout_seed = o.seed ^ kDropoutSeedSalt;
  if (run.resume_from()) {
    r.model = load_gpt2_model(run.resume_from()->dir, kCmd);
  } else if (!o.init.empty()) {
    r.model = load_gpt2_model(o.init, kCmd);
  } else {
    const mg::Config cfg = o.config.empty() ? mg::Config::preset(o.preset) : mg::Config::from_json_file(o.config);
    nn::Generator init_gen(o.seed);
    r.model = std::make_shared<mg::Gpt2>(cfg, init_gen, dropout_seed);
  }
  mg::Gpt2& model = *r.model;
  model.to(device);
  model.train();
  const mg::Config& cfg = model.config();
  const int64_t seq_len = o.seq_len == 0 ? cfg.n_ctx : o.seq_len;
  LR_CHECK(seq_len <= cfg.n_ctx, "gpt2 train: --seq-len {} is longer than the model's context ({})", seq_len,
           cfg.n_ctx);
  r.parameters = model.parameter_count().total;

  // ---- data
  const mg::Tokenizer tok = load_gpt2_tokenizer(o.vocab, kCmd);
  check_vocab_fits(model, tok, kCmd);
  const std::vector<std::string> files =
      mg::list_text_files(o.data.empty() ? std::vector<std::string>{mg::kDefaultCorpusDir} : o.data);
  const mg::TokenData data = load_gpt2_run_data(tok, o.vocab, files, o.val_fraction,
                                                o.cache_dir.empty() ? r.model_dir : o.cache_dir, o.threads);
  r.train_tokens = static_cast<int64_t>(data.train.size());
  r.val_tokens = static_cast<int64_t>(data.val.size());
  r.documents = data.documents;
  r.data_from_cache = data.from_cache;
  r.data_seconds = data.seconds;
  r.data_cache = data.cache_path;
  LR_CHECK(r.train_tokens >= seq_len + 1,
           "gpt2 train: the training split has {} tokens, fewer than --seq-len + 1 ({}); give more text or a "
           "shorter --seq-len",
           r.train_tokens, seq_len + 1);
  const std::vector<mg::Batch> val_batches =
      mg::sequential_batches(data.val, o.batch, seq_len, o.val_batches > 0 ? o.val_batches * o.batch : 0);

  // ---- optimizer and trainer
  const int64_t warmup = o.warmup >= 0 ? o.warmup : std::min<int64_t>(100, o.steps / 10);
  if (warmup >= o.steps) usage_error("gpt2 train: --warmup {} must be below --steps {}", warmup, o.steps);
  optim::AdamW opt(gpt2_param_groups(model, o.weight_decay),
                   {.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = optim::kTorchAdamEps});
  opt.set_schedule(optim::LrSchedule::cosine(o.lr, warmup, o.steps, o.min_lr));
  const int64_t tokens_per_step = o.batch * seq_len;
  Trainer trainer(opt, gpt2_trainer_options(kCmd, o, dp.leader(), started_at), &run);
  trainer.hooks.forward = [&](int64_t step) {
    mg::Batch b = mg::random_batch(data.train, o.batch, seq_len, o.seed, step);  // the global batch
    const Tensor inputs = dp.local(b.inputs), targets = dp.local(b.targets);     // (mpirun) this rank's rows
    StepOutput out;
    out.tokens = targets.numel();
    return dp.combine(model.loss(inputs.to(device), targets.to(device)), targets.size(0), o.batch, std::move(out));
  };
  set_gpt2_log_hooks(trainer, r.train, o.steps, tokens_per_step, o.log);
  trainer.hooks.evaluate = [&](int64_t step) -> std::optional<json> {
    if (val_batches.empty()) return std::nullopt;
    Gpt2TrainPoint p{step, gpt2_mean_loss(model, val_batches, device),      opt.lr(0),
                     0,    trainer.prior_seconds() + trainer.run_seconds(), step * tokens_per_step};
    r.val.push_back(p);
    if (o.log)
      trainer.print(
          detail::format("step {}/{}  val loss {}  ({})", step, o.steps, fixed(p.loss, 4), clock_text(p.seconds)));
    if (dp.leader()) write_loss_curve(r.loss_curve_path, r, model.config().vocab_size);
    return gpt2_point_json(p, true);
  };
  trainer.hooks.save = [&](CheckpointWriter& w) {
    mg::save_checkpoint(model, w.dir(), {{"step", std::to_string(w.step())}, {"seed", std::to_string(o.seed)}});
    w.state() = json{{"seed", o.seed},
                     {"dropout_seed", model.dropout_generator().seed()},
                     {"dropout_offset", model.dropout_generator().offset()},
                     {"data_key", data.key}};
  };
  trainer.hooks.load = [&](const Checkpoint& c) {
    // The weights came with the model above; the dropout stream goes on where it stopped.
    const json& s = c.state();
    try {
      model.dropout_generator().set_state(s.at("dropout_seed").get<uint64_t>(), s.at("dropout_offset").get<uint64_t>());
    } catch (const json::exception& e) {
      LR_FAIL("{} has no dropout stream state ({})", kTrainerStateFile, e.what());
    }
    // Flags are not read back from the run: say when the ones that decide the batches differ.
    if (o.log && s.contains("data_key") && s["data_key"] != data.key)
      trainer.print("gpt2 train: note: the text or split differs from the resumed run's");
    if (o.log && s.contains("seed") && s["seed"] != o.seed)
      trainer.print(detail::format("gpt2 train: note: --seed {} differs from the resumed run's ({}): other batches",
                                   o.seed, s["seed"].dump()));
  };

  if (run.resume_from()) {
    r.start_step = trainer.restore(*run.resume_from());
    for (const json& j : trainer.history()) add_gpt2_point(j, r.train, r.val, "gpt2 train");
  }
  if (o.log)
    trainer.print(detail::format("gpt2 train: {} files, {} documents, {} train + {} validation tokens ({}, {} s)",
                                 files.size(), data.documents, r.train_tokens, r.val_tokens,
                                 data.from_cache ? "from the cache" : "encoded", fixed(data.seconds, 1)));
  if (o.log && val_batches.empty())
    trainer.print("gpt2 train: the validation split is shorter than one window; no validation loss");

  if (dp.leader()) {
    run.begin();  // (--overwrite) the earlier run goes before this run's config.json replaces its own
    json run_config = json::parse(cfg.to_json());
    run_config["lowrank_train"] = options_json(o, r.model_dir, files, seq_len, warmup);
    run.write_text("config.json", run_config.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  }
  if (dp.active()) use_rank_stream(model.dropout_generator(), dist::rank());
  dp.attach(trainer, model.named_parameters());

  const TrainSummary s = trainer.run();
  // (the last validation drew the curve, with every point: only a run without one draws it here)
  if (dp.leader() && val_batches.empty()) write_loss_curve(r.loss_curve_path, r, model.config().vocab_size);
  r.final_step = s.final_step;
  r.stopped_early = s.stopped_early;
  r.seconds = s.seconds;
  r.train_seconds = s.step_seconds;
  r.allreduce_seconds = dp.sync().seconds();
  r.run_tokens = s.tokens;
  r.checkpoint_dir = s.last_checkpoint;
  return r;
}

}  // namespace lowrank::train
