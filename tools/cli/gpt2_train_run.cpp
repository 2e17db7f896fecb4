// The `lowrank gpt2 train` run: data, model, AdamW (decay on matrices only) with warmup + cosine,
// periodic validation, atomic checkpoints and a resume that replays the same batches and losses.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/checkpoint.h"
#include "optim/adam.h"
#include "optim/clip.h"
#include "tools/cli/gpt2_common.h"
#include "tools/cli/gpt2_train.h"

namespace lowrank::cli::gpt2 {
namespace {

namespace fs = std::filesystem;
namespace mg = models::gpt2;
using nlohmann::json;

constexpr const char* kCmd = "train";
constexpr uint64_t kDropoutSeedSalt = 0xA0761D6478BD642Full;  // dropout masks: not the weights' stream

// The two AdamW instances of a run: weight decay on kernels and embeddings, none on biases and
// LayerNorm parameters (GPT-2's recipe); one step count, one schedule.
struct Optimizers {
  std::unique_ptr<optim::AdamW> decay, no_decay;
  std::set<std::string> decay_names, no_decay_names;

  void zero_grad() { decay->zero_grad(), no_decay->zero_grad(); }
  void step() { decay->step(), no_decay->step(); }
  int64_t step_count() const { return decay->step_count(); }
  double lr() const { return decay->lr(); }
};

Optimizers make_optimizers(mg::Gpt2& model, const TrainOptions& o, int64_t total_steps, int64_t warmup) {
  optim::NamedParameters d, nd;
  Optimizers opt;
  for (auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    (p.dim() >= 2 ? d : nd).emplace_back(name, p);
    (p.dim() >= 2 ? opt.decay_names : opt.no_decay_names).insert(name);
  }
  const optim::AdamOptions base{.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = optim::kTorchAdamEps};
  optim::AdamOptions with_decay = base;
  with_decay.weight_decay = o.weight_decay;
  optim::AdamOptions without = base;
  without.weight_decay = 0.0;
  opt.decay = std::make_unique<optim::AdamW>(d, with_decay);
  opt.no_decay = std::make_unique<optim::AdamW>(nd, without);
  const auto schedule = optim::LrSchedule::cosine(o.lr, warmup, total_steps, o.min_lr);
  opt.decay->set_schedule(schedule);
  opt.no_decay->set_schedule(schedule);
  return opt;
}

std::string param_of(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(0, dot);
}

int64_t metadata_count(const std::map<std::string, std::string>& md, const std::string& key, const std::string& file) {
  auto it = md.find(key);
  LR_CHECK(it != md.end(), "gpt2 train: {} has no '{}' metadata (not a gpt2 train checkpoint?)", file, key);
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used == it->second.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  LR_FAIL("gpt2 train: {}: metadata '{}' = '{}' is not a count", file, key, it->second);
}

uint64_t metadata_u64(const std::map<std::string, std::string>& md, const std::string& key, const std::string& file) {
  auto it = md.find(key);
  LR_CHECK(it != md.end(), "gpt2 train: {} has no '{}' metadata (not a gpt2 train checkpoint?)", file, key);
  try {
    size_t used = 0;
    const unsigned long long v = std::stoull(it->second, &used);
    if (used == it->second.size()) return v;
  } catch (const std::exception&) {
  }
  LR_FAIL("gpt2 train: {}: metadata '{}' = '{}' is not a number", file, key, it->second);
}

json point_json(const TrainPoint& p, bool val) {
  if (val) return json{{"step", p.step}, {"val_loss", p.loss}, {"tokens", p.tokens}, {"seconds", p.seconds}};
  return json{{"step", p.step},     {"train_loss", p.loss},           {"lr", p.lr},
              {"tokens", p.tokens}, {"tokens_per_s", p.tokens_per_s}, {"seconds", p.seconds}};
}

void write_metrics(const std::string& path, const TrainResult& r) {
  // Train and validation records in step order (validation after the train record of its step).
  std::vector<std::pair<int64_t, json>> rows;
  for (const TrainPoint& p : r.train) rows.emplace_back(2 * p.step, point_json(p, false));
  for (const TrainPoint& p : r.val) rows.emplace_back(2 * p.step + 1, point_json(p, true));
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string text;
  for (const auto& [k, j] : rows) text += j.dump() + "\n";
  io::write_file_atomic(path, text);
}

void read_history(const std::string& path, int64_t up_to_step, TrainResult& r) {
  std::ifstream in(path);
  if (!in) return;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      TrainPoint p;
      p.step = j.at("step").get<int64_t>();
      if (p.step > up_to_step) continue;
      p.tokens = j.value("tokens", int64_t{0});
      p.seconds = j.value("seconds", 0.0);
      if (j.contains("val_loss")) {
        p.loss = j.at("val_loss").get<double>();
        r.val.push_back(p);
      } else {
        p.loss = j.at("train_loss").get<double>();
        p.lr = j.value("lr", 0.0);
        p.tokens_per_s = j.value("tokens_per_s", 0.0);
        r.train.push_back(p);
      }
    } catch (const std::exception& e) {
      LR_FAIL("gpt2 train: {}: a line is not a metrics record ({})", path, e.what());
    }
  }
}

json options_json(const TrainOptions& o, const std::vector<std::string>& files, int64_t seq_len, int64_t warmup) {
  return json{{"command", "gpt2 train"},
              {"data", files},
              {"preset", o.preset},
              {"config", o.config},
              {"init", o.init},
              {"resume", o.resume},
              {"out", o.out},
              {"cache_dir", o.cache_dir},
              {"vocab", o.vocab},
              {"steps", o.steps},
              {"max_time", o.max_time},
              {"stop_at", o.stop_at},
              {"batch", o.batch},
              {"seq_len", seq_len},
              {"lr", o.lr},
              {"min_lr", o.min_lr},
              {"warmup", warmup},
              {"weight_decay", o.weight_decay},
              {"beta1", o.beta1},
              {"beta2", o.beta2},
              {"grad_clip", o.grad_clip},
              {"val_fraction", o.val_fraction},
              {"val_every", o.val_every},
              {"val_batches", o.val_batches},
              {"checkpoint_every", o.checkpoint_every},
              {"log_every", o.log_every},
              {"seed", o.seed},
              {"device", o.device},
              {"threads", o.threads},
              {"optimizer", "adamw (decay on tensors of 2+ axes), warmup + cosine schedule"}};
}

double evaluate(mg::Gpt2& model, const std::vector<mg::Batch>& batches, Device device) {
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

}  // namespace

TrainResult run_gpt2_train(const TrainOptions& o) {
  LR_CHECK(o.steps >= 1, "gpt2 train: --steps must be >= 1, got {}", o.steps);
  LR_CHECK(o.batch >= 1, "gpt2 train: --batch must be >= 1, got {}", o.batch);
  LR_CHECK(o.seq_len >= 0, "gpt2 train: --seq-len must be >= 0 (0: the model's context), got {}", o.seq_len);
  LR_CHECK(std::isfinite(o.lr) && o.lr > 0, "gpt2 train: --lr must be a positive number, got {}", o.lr);
  LR_CHECK(std::isfinite(o.min_lr) && o.min_lr >= 0 && o.min_lr <= o.lr,
           "gpt2 train: --min-lr must be in [0, --lr], got {}", o.min_lr);
  LR_CHECK(o.max_time >= 0, "gpt2 train: --max-time must be >= 0, got {}", o.max_time);
  LR_CHECK((o.init.empty() ? 0 : 1) + (o.resume.empty() ? 0 : 1) + (o.config.empty() ? 0 : 1) <= 1,
           "gpt2 train: --init, --resume and --config exclude each other");
  const Device device = setup_device(o.device, o.threads, kCmd);
  const double t_start = now_seconds();

  TrainResult r;
  const fs::path out(o.out);
  fs::create_directories(out);
  r.model_dir = out.string();
  r.metrics_path = (out / "metrics.jsonl").string();
  r.config_path = (out / "config.json").string();
  r.optimizer_path = (out / "optimizer.safetensors").string();

  // ---- model
  const uint64_t dropout_seed = o.seed ^ kDropoutSeedSalt;
  fs::path resume_dir;
  if (!o.resume.empty()) {
    resume_dir = fs::is_directory(o.resume) ? fs::path(o.resume) : fs::path(o.resume).parent_path();
    LR_CHECK(fs::is_regular_file(resume_dir / "model.safetensors") &&
                 fs::is_regular_file(resume_dir / "optimizer.safetensors"),
             "gpt2 train: --resume {}: expected a run folder with model.safetensors and optimizer.safetensors",
             o.resume);
    r.model = load_model(resume_dir.string(), kCmd);
  } else if (!o.init.empty()) {
    r.model = load_model(o.init, kCmd);
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
  const mg::Tokenizer tok = load_tokenizer(o.vocab, kCmd);
  check_vocab_fits(model, tok, kCmd);
  const std::vector<std::string> files =
      mg::list_text_files(o.data.empty() ? std::vector<std::string>{mg::kDefaultCorpusDir} : o.data);
  mg::TokenDataOptions dopt;
  dopt.files = files;
  dopt.val_fraction = o.val_fraction;
  dopt.cache_dir = o.cache_dir.empty() ? o.out : o.cache_dir;
  dopt.threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const mg::TokenData data = mg::load_token_data(text_encoder(tok, o.vocab), dopt);
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
  // ---- optimizer and resume
  const int64_t warmup = o.warmup >= 0 ? o.warmup : std::min<int64_t>(100, o.steps / 10);
  LR_CHECK(warmup < o.steps, "gpt2 train: --warmup {} must be below --steps {}", warmup, o.steps);
  Optimizers opt = make_optimizers(model, o, o.steps, warmup);
  if (!o.resume.empty()) {
    const std::string opt_file = (resume_dir / "optimizer.safetensors").string();
    const std::string model_file = (resume_dir / "model.safetensors").string();
    io::SafetensorsFile saved = io::load_safetensors(opt_file);
    const int64_t step = metadata_count(saved.metadata, "step", opt_file);
    const int64_t model_step = metadata_count(io::load_safetensors(model_file).metadata, "step", model_file);
    LR_CHECK(step == model_step, "gpt2 train: --resume {}: the model is from step {} but the optimizer from {}",
             o.resume, model_step, step);
    LR_CHECK(step < o.steps, "gpt2 train: --resume {}: the run has done {} steps already; ask for more with --steps",
             o.resume, step);
    std::map<std::string, Tensor> d, nd;
    for (auto& [key, t] : saved.tensors) {
      const std::string p = param_of(key);
      LR_CHECK(opt.decay_names.count(p) || opt.no_decay_names.count(p),
               "gpt2 train: --resume {}: optimizer state '{}' belongs to no parameter of this model", o.resume, key);
      (opt.decay_names.count(p) ? d : nd)[key] = t;
    }
    opt.decay->load_state_dict(d, step);
    opt.no_decay->load_state_dict(nd, step);
    model.dropout_generator().set_state(metadata_u64(saved.metadata, "dropout_seed", opt_file),
                                        metadata_u64(saved.metadata, "dropout_offset", opt_file));
    // Flags are not read back from the run: say when the ones that decide the batches differ.
    auto key_it = saved.metadata.find("data_key"), seed_it = saved.metadata.find("seed");
    if (o.log && key_it != saved.metadata.end() && key_it->second != std::to_string(data.key))
      std::fprintf(stderr, "gpt2 train: note: the text or split differs from the resumed run's\n");
    if (o.log && seed_it != saved.metadata.end() && seed_it->second != std::to_string(o.seed))
      std::fprintf(stderr, "gpt2 train: note: --seed %llu differs from the resumed run's (%s): other batches\n",
                   static_cast<unsigned long long>(o.seed), seed_it->second.c_str());
    r.start_step = step;
    read_history((resume_dir / "metrics.jsonl").string(), step, r);
  }

  if (o.log)
    std::fprintf(stderr, "gpt2 train: %lld files, %lld documents, %lld train + %lld validation tokens (%s, %.1f s)\n",
                 static_cast<long long>(files.size()), static_cast<long long>(data.documents),
                 static_cast<long long>(r.train_tokens), static_cast<long long>(r.val_tokens),
                 data.from_cache ? "from the cache" : "encoded", data.seconds);
  if (o.log && val_batches.empty())
    std::fprintf(stderr, "gpt2 train: the validation split is shorter than one window; no validation loss\n");

  json run_config = json::parse(cfg.to_json());
  run_config["lowrank_train"] = options_json(o, files, seq_len, warmup);
  const std::string config_text = run_config.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  io::write_file_atomic(r.config_path, config_text);

  int64_t last_saved = r.start_step;
  auto checkpoint = [&](int64_t step) {
    // Optimizer first, model last: a crash in between leaves files whose steps disagree, which
    // --resume refuses, never weights silently paired with another step's optimizer state.
    std::map<std::string, Tensor> state = opt.decay->state_dict();
    for (auto& [k, t] : opt.no_decay->state_dict()) state[k] = t;
    io::save_safetensors(r.optimizer_path, state,
                         {{"format", "lowrank-gpt2-train"},
                          {"step", std::to_string(step)},
                          {"seed", std::to_string(o.seed)},
                          {"dropout_seed", std::to_string(model.dropout_generator().seed())},
                          {"dropout_offset", std::to_string(model.dropout_generator().offset())},
                          {"data_key", std::to_string(data.key)}});
    mg::save_checkpoint(model, r.model_dir, {{"step", std::to_string(step)}, {"seed", std::to_string(o.seed)}});
    io::write_file_atomic(r.config_path, config_text);  // save_checkpoint wrote the bare model config
    write_metrics(r.metrics_path, r);
    last_saved = step;
  };

  // ---- training
  const int64_t tokens_per_step = o.batch * seq_len;
  const double prior_seconds = r.train.empty() ? 0.0 : r.train.back().seconds;
  StatusLine status(o.progress);
  auto elapsed = [&] { return now_seconds() - t_start; };
  auto validate = [&](int64_t step) {
    if (val_batches.empty()) return;
    TrainPoint p{
        step, evaluate(model, val_batches, device), opt.lr(), 0, prior_seconds + elapsed(), step * tokens_per_step};
    r.val.push_back(p);
    status.clear();
    if (o.log)
      std::fprintf(stderr, "step %lld/%lld  val loss %.4f  (%s)\n", static_cast<long long>(step),
                   static_cast<long long>(o.steps), p.loss, clock_text(p.seconds).c_str());
  };
  if (r.start_step == 0) validate(0);

  double interval_loss = 0, interval_seconds = 0;
  int64_t interval_steps = 0;
  int64_t step = r.start_step;
  size_t records_written = 0;
  while (step < o.steps) {
    const double t0 = now_seconds();
    mg::Batch b = mg::random_batch(data.train, o.batch, seq_len, o.seed, step);
    Tensor loss = model.loss(b.inputs.to(device), b.targets.to(device));
    const double value = loss.item();
    if (!std::isfinite(value)) {
      status.clear();
      std::string where = "No checkpoint was written";
      if (last_saved > r.start_step)
        where = detail::format("The last good checkpoint (step {}) is in {}", last_saved, o.out);
      else if (r.start_step > 0)
        where =
            detail::format("The last good checkpoint (step {}) is the one resumed from, {}", r.start_step, o.resume);
      LR_FAIL("gpt2 train: the loss became {} at step {}; training stopped. {}", value, step + 1, where);
    }
    opt.zero_grad();
    loss.backward();
    if (o.grad_clip > 0) optim::clip_grad_norm(model.trainable_parameters(), o.grad_clip);
    const double lr_used = opt.lr();
    opt.step();
    ++step;
    const double dt = now_seconds() - t0;
    r.train_seconds += dt;
    r.run_tokens += tokens_per_step;
    interval_loss += value, interval_seconds += dt, ++interval_steps;

    // --max-time: stop when another step of this one's length would run past it.
    const bool stop_early =
        step < o.steps && ((o.max_time > 0 && elapsed() + dt >= o.max_time) || (o.stop_at > 0 && step >= o.stop_at));
    const bool last = step == o.steps || stop_early;
    if (step % std::max<int64_t>(o.log_every, 1) == 0 || last) {
      TrainPoint p{step,
                   interval_loss / static_cast<double>(interval_steps),
                   lr_used,
                   static_cast<double>(interval_steps * tokens_per_step) / interval_seconds,
                   prior_seconds + elapsed(),
                   step * tokens_per_step};
      r.train.push_back(p);
      interval_loss = interval_seconds = 0, interval_steps = 0;
      status.clear();
      if (o.log)
        std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.2e  %.0f tokens/s\n", static_cast<long long>(step),
                     static_cast<long long>(o.steps), p.loss, p.lr, p.tokens_per_s);
    }
    if ((o.val_every > 0 && step % o.val_every == 0) || last) validate(step);
    if ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || last)
      checkpoint(step);
    else if (r.train.size() + r.val.size() != records_written)
      write_metrics(r.metrics_path, r);  // live curve between checkpoints (a resume reads only up to its step)
    records_written = r.train.size() + r.val.size();
    status.draw(static_cast<double>(step) / static_cast<double>(o.steps),
                detail::format("step {}/{} loss {} {} tokens/s", step, o.steps, std::round(value * 1e4) / 1e4,
                               static_cast<int64_t>(static_cast<double>(r.run_tokens) / r.train_seconds)));
    if (stop_early) {
      r.stopped_early = true;
      break;
    }
  }
  status.clear();
  r.final_step = step;
  r.seconds = elapsed();
  return r;
}

}  // namespace lowrank::cli::gpt2
