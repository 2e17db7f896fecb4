// GPT-2 LoRA runs on the trainer (see gpt2_lora.h).
#include "tools/train/gpt2_lora.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "analysis/plot.h"
#include "core/autograd.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "nn/lora.h"
#include "optim/adam.h"
#include "tools/train/clock.h"
#include "tools/train/data_parallel.h"
#include "tools/train/setup.h"
#include "tools/train/trainer.h"

namespace lowrank::train {
namespace fs = std::filesystem;
namespace mg = models::gpt2;

std::vector<mg::Gpt2LoraLayer> load_gpt2_adapter(mg::Gpt2& model, const std::string& dir, const std::string& command) {
  LR_CHECK(fs::exists(dir),
           "{}: no adapter at {} (a folder from `lowrank gpt2 lora`, or one PEFT saved with {} and {})", command, dir,
           mg::kAdapterWeightsFile, mg::kAdapterConfigFile);
  try {
    return mg::load_peft_adapter(model, dir);
  } catch (const Error& e) {
    LR_FAIL("{}: cannot apply the adapter {}: {}", command, dir, e.what());
  }
}

std::string describe_gpt2_adapters(const std::vector<mg::Gpt2LoraLayer>& layers) {
  if (layers.empty()) return "no adapters";
  std::set<int64_t> blocks;
  std::vector<std::string> targets;
  for (const mg::Gpt2LoraLayer& l : layers) {
    const size_t dot = l.path.find('.', 2);
    blocks.insert(std::stoll(l.path.substr(2, dot - 2)));
    const std::string t = l.path.substr(l.path.rfind('.') + 1);
    if (std::find(targets.begin(), targets.end(), t) == targets.end()) targets.push_back(t);
  }
  std::string ts;
  for (const std::string& t : targets) ts += (ts.empty() ? "" : ",") + t;
  const nn::LoRA& l0 = *layers.front().lora;
  return detail::format("{} adapters ({} on {} blocks), rank {}, scale {}", layers.size(), ts, blocks.size(),
                        l0.config().r, l0.scale());
}

}  // namespace lowrank::train

// ---- gpt2 lora

namespace lowrank::train {
namespace {

using nlohmann::json;
constexpr const char* kCmd = "gpt2 lora";
constexpr const char* kStateFile = "adapter_state.safetensors";  // our layer names: what --resume loads
constexpr int64_t kAdamBytesPerParameter = 8;                    // AdamW's two f32 moments

// The LoRA run's train and validation loss, with the base model's validation loss as a level and,
// once it ran, the full fine-tuning's validation loss beside it.
void write_lora_curve(const std::string& path, const Gpt2LoraResult& r, double base_val, int64_t steps,
                      const std::vector<Gpt2TrainPoint>& full_val) {
  std::vector<analysis::Series> series;
  auto add = [&](const std::string& label, const std::vector<Gpt2TrainPoint>& points) {
    analysis::Series s{label, {}, {}};
    for (const Gpt2TrainPoint& p : points) s.x.push_back(static_cast<double>(p.step)), s.y.push_back(p.loss);
    if (!s.x.empty()) series.push_back(s);
  };
  add("LoRA: train (mean per log interval)", r.train);
  add("LoRA: validation", r.val);
  add("full fine-tuning: validation", full_val);
  if (series.empty()) return;
  if (std::isfinite(base_val))
    series.push_back({detail::format("base model: validation ({})", fixed(base_val, 3)),
                      {0.0, static_cast<double>(steps)},
                      {base_val, base_val}});
  analysis::LineOptions lo;
  lo.title = "GPT-2 LoRA fine-tuning: loss";
  lo.x_label = "optimizer step";
  lo.y_label = "cross-entropy per token (nats)";
  lo.markers = r.train.size() + r.val.size() + full_val.size() < 40;
  lo.legend_outside = true;  // inside, the legend covered the full fine-tuning line as it fell
  analysis::plot_lines(path, series, lo);
}

void check_options(const Gpt2LoraOptions& o) {
  if (o.steps < 1) usage_error("{}: --steps must be >= 1, got {}", kCmd, o.steps);
  if (o.batch < 1) usage_error("{}: --batch must be >= 1, got {}", kCmd, o.batch);
  if (o.seq_len < 0) usage_error("{}: --seq-len must be >= 0 (0: the model's context), got {}", kCmd, o.seq_len);
  if (!(std::isfinite(o.lr) && o.lr > 0)) usage_error("{}: --lr must be a positive number, got {}", kCmd, o.lr);
  if (!(std::isfinite(o.full_lr) && o.full_lr > 0))
    usage_error("{}: --full-lr must be a positive number, got {}", kCmd, o.full_lr);
  if (!(std::isfinite(o.min_lr) && o.min_lr >= 0 && o.min_lr <= o.lr))
    usage_error("{}: --min-lr must be from 0 to --lr ({}), got {}", kCmd, o.lr, o.min_lr);
  if (!(o.max_time >= 0)) usage_error("{}: --max-time must be >= 0, got {}", kCmd, o.max_time);
  if (o.rank < 1) usage_error("{}: --rank must be >= 1, got {}", kCmd, o.rank);
  if (!(std::isfinite(o.alpha) && o.alpha > 0)) usage_error("{}: --alpha must be positive, got {}", kCmd, o.alpha);
  if (!(o.dropout >= 0 && o.dropout < 1)) usage_error("{}: --dropout must be in [0, 1), got {}", kCmd, o.dropout);
  if (!(std::isfinite(o.base_scale) && o.base_scale >= 0))
    usage_error("{}: --base-scale must be >= 0, got {}", kCmd, o.base_scale);
  if (!(std::isfinite(o.base_scale_target) && (o.base_scale_target >= 0 || o.base_scale_target == -1)))
    usage_error("{}: --base-scale-target must be >= 0, got {}", kCmd, o.base_scale_target);
  if (o.base_scale_schedule != "linear" && o.base_scale_schedule != "cosine")
    usage_error("{}: --base-scale-schedule must be linear or cosine, got '{}'", kCmd, o.base_scale_schedule);
  if (o.init != "kaiming" && o.init != "gaussian" && o.init != "pissa")
    usage_error("{}: --init must be kaiming, gaussian or pissa, got '{}'", kCmd, o.init);
  try {
    mg::parse_lora_targets(o.targets);
  } catch (const Error& e) {
    usage_error("{}: --targets '{}': {}", kCmd, o.targets, e.what());
  }
}

json options_json(const Gpt2LoraOptions& o, const std::string& out, const std::vector<std::string>& files,
                  int64_t seq_len, int64_t warmup) {
  json j{{"command", kCmd},
         {"model", o.model},
         {"data", files},
         {"resume", o.resume},
         {"out", out},
         {"targets", o.targets},
         {"layers", o.layers.empty() ? "all" : o.layers},
         {"rank", o.rank},
         {"alpha", o.alpha},
         {"rslora", o.rslora},
         {"dropout", o.dropout},
         {"init", o.init},
         {"base_scale", o.base_scale},
         {"base_scale_target", o.base_scale_target},
         {"base_scale_schedule", o.base_scale_schedule},
         {"base_scale_steps", o.base_scale_steps},
         {"compare_full", o.compare_full},
         {"full_lr", o.full_lr}};
  j.update(gpt2_training_json(o, seq_len, warmup));
  return j;
}

}  // namespace

Gpt2LoraResult run_gpt2_lora(const Gpt2LoraOptions& o) {
  const double started_at = now_seconds();  // --max-time spans the command: the LoRA run and the comparison
  check_options(o);
  const Device device = setup_device(o.device, o.threads, kCmd);
  DataParallel dp;  // (mpirun) each rank takes its rows of every batch; only the adapters' gradients are summed
  dp.check_batch(kCmd, o.batch);
  Gpt2LoraResult r;
  r.out_dir = run_dir_for(o.out, o.resume, kGpt2LoraDefaultOut);
  if (!fs::exists(o.model))
    LR_FAIL(
        "{}: no base model at {}: train one with `lowrank gpt2 train --max-time 600` (writes runs/gpt2), or "
        "pass --model with a run folder, a Hugging Face folder (model.safetensors + config.json) or a "
        ".safetensors file",
        kCmd, o.model);
  // The base and the flags are checked before the run folder is made, so a refused run leaves nothing.
  std::shared_ptr<mg::Gpt2> model = load_gpt2_model(o.model, kCmd);
  const mg::Config& cfg = model->config();
  mg::Gpt2LoraSpec spec;
  spec.targets = mg::parse_lora_targets(o.targets);
  try {
    spec.layers = mg::parse_lora_layers(o.layers, cfg.n_layer);
  } catch (const Error& e) {
    usage_error("{}: --layers: {}", kCmd, e.what());
  }
  // Every target maps n_embd to n_embd or 4·n_embd (or back): min(in, out) is n_embd.
  if (o.rank > cfg.n_embd)
    usage_error("{}: --rank {} is larger than min(in, out) = {} of the targeted layers", kCmd, o.rank, cfg.n_embd);
  spec.lora.r = o.rank;
  spec.lora.alpha = o.alpha;
  spec.lora.use_rslora = o.rslora;
  spec.lora.dropout = o.dropout;
  spec.lora.init = nn::parse_lora_init(o.init);
  spec.lora.seed = o.seed;
  if (o.base_scale_target < 0 || o.base_scale_target == o.base_scale) {
    spec.lora.base_scale = nn::BaseScaleSchedule::constant(o.base_scale);
  } else {
    spec.lora.base_scale = {nn::BaseScaleSchedule::parse_kind(o.base_scale_schedule), o.base_scale, o.base_scale_target,
                            o.base_scale_steps > 0 ? o.base_scale_steps : o.steps};
  }
  const int64_t seq_len = o.seq_len == 0 ? cfg.n_ctx : o.seq_len;
  if (seq_len > cfg.n_ctx)
    usage_error("{}: --seq-len {} is longer than the model's context ({})", kCmd, seq_len, cfg.n_ctx);
  const int64_t warmup = o.warmup >= 0 ? o.warmup : std::min<int64_t>(100, o.steps / 10);
  if (warmup >= o.steps) usage_error("{}: --warmup {} must be below --steps {}", kCmd, warmup, o.steps);

  const mg::Tokenizer tok = load_gpt2_tokenizer(o.vocab, kCmd);
  check_vocab_fits(*model, tok, kCmd);
  const std::vector<std::string> data_paths = o.data.empty() ? std::vector<std::string>{kGpt2LoraDefaultData} : o.data;
  for (const std::string& p : data_paths)
    LR_CHECK(fs::exists(p),
             "{}: no text at {} (--data takes files or folders; the default is the fortunes "
             "package's startrek file, which tools/setup installs)",
             kCmd, p);
  const std::vector<std::string> files = mg::list_text_files(data_paths);

  RunFolder run(r.out_dir, {.command = kCmd,
                            .resume = o.resume,
                            .overwrite = o.overwrite,
                            .exports = {mg::kAdapterWeightsFile, mg::kAdapterConfigFile, "optimizer.safetensors"}});
  dist::barrier();  // (mpirun) every rank has looked at the folder before the leader writes to it
  r.adapter_dir = r.out_dir;
  r.metrics_path = run.path(kMetricsFile);
  r.loss_curve_path = run.path("training_loss.png");

  const std::string cache_dir = o.cache_dir.empty() ? r.out_dir : o.cache_dir;
  const mg::TokenData data = load_gpt2_run_data(tok, o.vocab, files, o.val_fraction, cache_dir, o.threads);
  r.train_tokens = static_cast<int64_t>(data.train.size());
  r.val_tokens = static_cast<int64_t>(data.val.size());
  r.documents = data.documents;
  LR_CHECK(r.train_tokens >= seq_len + 1,
           "{}: the training split has {} tokens, fewer than --seq-len + 1 ({}); give more text or a shorter --seq-len",
           kCmd, r.train_tokens, seq_len + 1);
  const std::vector<mg::Batch> val_batches =
      mg::sequential_batches(data.val, o.batch, seq_len, o.val_batches > 0 ? o.val_batches * o.batch : 0);

  model->to(device);
  r.base_parameters = model->parameter_count().total;
  const double base_val = val_batches.empty() ? NAN : gpt2_mean_loss(*model, val_batches, device);
  const std::vector<mg::Gpt2LoraLayer> layers = mg::inject_gpt2_lora(*model, spec);
  r.description = describe_gpt2_adapters(layers);
  model->train();
  // PiSSA moved the top-r part of each W into the adapter: the export for PEFT needs where it started.
  mg::LoraInitialFactors pissa_initial;
  if (spec.lora.init == nn::LoraInit::Pissa) {
    NoGradGuard ng;
    for (const mg::Gpt2LoraLayer& l : layers)
      pissa_initial[l.path] = {l.lora->lora_A().clone(), l.lora->lora_B().clone()};
  }

  optim::NamedParameters adapter_params;
  for (auto& [name, p] : model->named_parameters())
    if (p.requires_grad()) adapter_params.emplace_back(name, p);
  optim::AdamW opt(optim::ParamGroups{{"adapters", adapter_params, std::nullopt, o.weight_decay}},
                   {.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = optim::kTorchAdamEps});
  opt.set_schedule(optim::LrSchedule::cosine(o.lr, warmup, o.steps, o.min_lr));
  r.lora.name = detail::format("LoRA r={} ({})", o.rank, o.targets);
  r.lora.trainable = model->parameter_count().trainable;
  r.lora.optimizer_state_bytes = kAdamBytesPerParameter * r.lora.trainable;
  r.lora.val_loss_before = base_val;

  const int64_t tokens_per_step = o.batch * seq_len;
  Trainer trainer(opt, gpt2_trainer_options(kCmd, o, dp.leader(), started_at), &run);
  auto set_step = [&](int64_t step) {
    for (const mg::Gpt2LoraLayer& l : layers) l.lora->set_schedule_step(step);
  };
  trainer.hooks.before_step = set_step;
  trainer.hooks.forward = [&](int64_t step) {
    mg::Batch b = mg::random_batch(data.train, o.batch, seq_len, o.seed, step);  // the global batch
    const Tensor inputs = dp.local(b.inputs), targets = dp.local(b.targets);     // (mpirun) this rank's rows
    StepOutput out;
    out.tokens = targets.numel();
    return dp.combine(model->loss(inputs.to(device), targets.to(device)), targets.size(0), o.batch, std::move(out));
  };
  set_gpt2_log_hooks(trainer, r.train, o.steps, tokens_per_step, o.log);
  trainer.hooks.evaluate = [&](int64_t step) -> std::optional<json> {
    if (val_batches.empty()) return std::nullopt;
    set_step(step);  // the model as it stands after `step` steps
    Gpt2TrainPoint p{step, gpt2_mean_loss(*model, val_batches, device),     opt.lr(0),
                     0,    trainer.prior_seconds() + trainer.run_seconds(), step * tokens_per_step};
    r.val.push_back(p);
    if (o.log)
      trainer.print(
          detail::format("step {}/{}  val loss {}  ({})", step, o.steps, fixed(p.loss, 4), clock_text(p.seconds)));
    if (dp.leader()) write_lora_curve(r.loss_curve_path, r, base_val, o.steps, {});
    return gpt2_point_json(p, true);
  };
  trainer.hooks.save = [&](CheckpointWriter& w) {
    set_step(w.step());
    const mg::PeftAdapter a =
        mg::gpt2_adapter_to_peft(*model, o.model, pissa_initial.empty() ? nullptr : &pissa_initial);
    io::save_safetensors(w.path(mg::kAdapterWeightsFile), a.tensors, a.metadata);
    io::write_file_atomic(w.path(mg::kAdapterConfigFile), a.config_json);
    std::map<std::string, Tensor> mine;
    json streams = json::array();
    for (const mg::Gpt2LoraLayer& l : layers) {
      for (auto& kv : l.lora->adapter_state(l.path)) mine.insert(kv);
      streams.push_back({l.lora->generator().seed(), l.lora->generator().offset()});
    }
    io::save_safetensors(w.path(kStateFile), mine);
    w.state() = json{{"seed", o.seed},
                     {"data_key", data.key},
                     {"adapter_streams", streams},
                     {"dropout_seed", model->dropout_generator().seed()},
                     {"dropout_offset", model->dropout_generator().offset()}};
  };
  trainer.hooks.load = [&](const Checkpoint& c) {
    const io::SafetensorsFile f = io::load_safetensors(c.file(kStateFile));
    try {
      for (const mg::Gpt2LoraLayer& l : layers) l.lora->load_adapter_state(f.tensors, l.path);
    } catch (const Error& e) {
      usage_error("{}: the run in {} has other adapters than --targets/--layers/--rank ask for: {}", kCmd, c.dir,
                  e.what());
    }
    const json& s = c.state();
    try {
      const json& streams = s.at("adapter_streams");
      LR_CHECK(streams.size() == layers.size(), "{} adapter streams for {} adapters", streams.size(), layers.size());
      for (size_t i = 0; i < layers.size(); ++i)
        layers[i].lora->generator().set_state(streams[i].at(0).get<uint64_t>(), streams[i].at(1).get<uint64_t>());
      model->dropout_generator().set_state(s.at("dropout_seed").get<uint64_t>(),
                                           s.at("dropout_offset").get<uint64_t>());
    } catch (const json::exception& e) {
      LR_FAIL("{}: {} has no random stream state ({})", kCmd, kTrainerStateFile, e.what());
    }
    if (o.log && s.contains("data_key") && s["data_key"] != data.key)
      trainer.print(detail::format("{}: note: the text or split differs from the resumed run's", kCmd));
  };

  if (run.resume_from()) {
    r.start_step = trainer.restore(*run.resume_from());
    for (const json& j : trainer.history()) add_gpt2_point(j, r.train, r.val, kCmd);
  }
  if (o.log) {
    trainer.print(detail::format("{}: {} on {} ({} of {} parameters trainable)", kCmd, r.description, o.model,
                                 r.lora.trainable, model->parameter_count().total));
    trainer.print(detail::format("{}: {} files, {} documents, {} train + {} validation tokens", kCmd, files.size(),
                                 data.documents, r.train_tokens, r.val_tokens));
    if (val_batches.empty())
      trainer.print(detail::format("{}: the validation split is shorter than one window; no validation loss", kCmd));
  }
  if (dp.leader()) {
    run.begin();
    json run_config = json::parse(cfg.to_json());
    run_config["lowrank_train"] = options_json(o, r.out_dir, files, seq_len, warmup);
    run.write_text("config.json", run_config.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  }
  if (dp.active()) {  // (mpirun) rank k's dropout masks, in the base and in the adapters, from its own streams
    use_rank_stream(model->dropout_generator(), dist::rank());
    for (const mg::Gpt2LoraLayer& l : layers) use_rank_stream(l.lora->generator(), dist::rank());
  }
  dp.attach(trainer, adapter_params);

  const TrainSummary s = trainer.run();
  // (the last validation drew the curve, with every point: only a run without one draws it here)
  if (dp.leader() && val_batches.empty()) write_lora_curve(r.loss_curve_path, r, base_val, o.steps, {});
  r.final_step = s.final_step;
  r.stopped_early = s.stopped_early;
  r.seconds = s.seconds;
  r.train_seconds = s.step_seconds;
  r.run_tokens = s.tokens;
  r.allreduce_seconds = dp.sync().seconds();
  r.lora.val_loss_after = r.val.empty() ? NAN : r.val.back().loss;
  r.lora.seconds = s.step_seconds;
  r.lora.tokens_per_s = s.step_seconds > 0 ? static_cast<double>(s.tokens) / s.step_seconds : 0.0;

  const bool time_left = !(o.max_time > 0) || now_seconds() - started_at < o.max_time;
  if (o.compare_full && !r.stopped_early && !time_left && o.log)
    trainer.print(
        detail::format("{}: no time left for the full fine-tuning comparison (--max-time {})", kCmd, o.max_time));
  if (o.compare_full && !r.stopped_early && time_left) {
    Gpt2TrainOptions f;
    f.data = data_paths;
    f.init = o.model;
    f.out = (fs::path(r.out_dir) / "full-finetune").string();
    f.overwrite = true;  // this run's own subfolder
    f.cache_dir = cache_dir;
    f.vocab = o.vocab;
    f.steps = o.steps;
    f.batch = o.batch;
    f.seq_len = seq_len;
    f.lr = o.full_lr;
    f.min_lr = o.full_lr * (o.min_lr / o.lr);
    f.warmup = warmup;
    f.weight_decay = o.weight_decay;
    f.beta1 = o.beta1;
    f.beta2 = o.beta2;
    f.grad_clip = o.grad_clip;
    f.val_fraction = o.val_fraction;
    f.val_every = o.val_every;
    f.val_batches = o.val_batches;
    f.checkpoint_every = 0;
    f.log_every = o.log_every;
    f.seed = o.seed;
    f.max_time = o.max_time;  // what the LoRA run left of it
    f.started_at = started_at;
    f.device = o.device;
    f.threads = o.threads;
    f.progress = o.progress;
    f.log = o.log;
    if (o.log)
      trainer.print(detail::format("{}: full fine-tuning with the same steps, for comparison, in {}", kCmd, f.out));
    const Gpt2TrainResult fr = run_gpt2_train(f);
    Gpt2LoraRunSummary full;
    full.name = fr.stopped_early ? detail::format("full fine-tuning ({} of {} steps)", fr.final_step, o.steps)
                                 : std::string("full fine-tuning");
    full.trainable = fr.model ? fr.model->parameter_count().trainable : 0;
    full.val_loss_before = fr.val.empty() ? NAN : fr.val.front().loss;
    full.val_loss_after = fr.val.empty() ? NAN : fr.val.back().loss;
    full.seconds = fr.train_seconds;
    full.tokens_per_s = fr.train_seconds > 0 ? static_cast<double>(fr.run_tokens) / fr.train_seconds : 0.0;
    full.optimizer_state_bytes = kAdamBytesPerParameter * full.trainable;
    r.full = full;
    r.full_dir = f.out;
    if (dp.leader()) write_lora_curve(r.loss_curve_path, r, base_val, o.steps, fr.val);
  }
  return r;
}

}  // namespace lowrank::train
