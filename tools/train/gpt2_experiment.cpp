// run_gpt2_experiment(): the base, the scaled base, the jobs (method × rank × seed) through the
// sweep, the φ grids, then the report and figures, all filled into OUT.partial and renamed to OUT
// at the end, so a failed or killed run leaves no half-written experiment.
#include "tools/train/gpt2_experiment.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "analysis/delta_report.h"
#include "analysis/similarity.h"
#include "core/autograd.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "nn/lora.h"
#include "optim/adam.h"
#include "tools/dist/dist.h"
#include "tools/train/clock.h"
#include "tools/train/gpt2.h"
#include "tools/train/setup.h"
#include "tools/train/sweep.h"
#include "tools/train/trainer.h"

namespace lowrank::train {
namespace fs = std::filesystem;
namespace mg = models::gpt2;
using nlohmann::json;

namespace {

constexpr const char* kCmd = "gpt2 lora-experiment";
constexpr int64_t kGridMax = 8;                     // φ(i, j) for i, j ≤ 8, as the paper's Figures 3 and 4
constexpr uint64_t kRandomFrameSeed = 0x7AB1E7ull;  // Table 7's random directions
constexpr double kSvdJobWeight = 0.05;              // an svd job (no training) against a trained one, for the ETA

struct Context {
  Gpt2ExperimentOptions o;  // resolved: --quick applied
  Device device;
  std::string partial;  // the folder being filled
  mg::TokenData data;
  std::vector<mg::Batch> val_batches;
  mg::Gpt2LoraSpec spec;            // targets and layers
  std::vector<std::string> paths;   // the targeted layers, in adapter order
  std::map<std::string, Tensor> w;  // each targeted layer's W [out, in], CPU f32
};

bool trained(const std::string& method) {
  return method != "svd";
}

// Reads the base's config.json (ours: lowrank_train holds the data, split and vocabulary it was
// trained with); null when there is none or it is not ours.
json base_train_config(const std::string& base) {
  const fs::path p =
      fs::is_directory(base) ? fs::path(base) / "config.json" : fs::path(base).parent_path() / "config.json";
  if (!fs::exists(p)) return nullptr;
  try {
    std::ifstream in(p);
    json j = json::parse(in);
    if (j.contains("lowrank_train") && j["lowrank_train"].is_object()) return j["lowrank_train"];
  } catch (const json::exception&) {
  }
  return nullptr;
}

void check_options(const Gpt2ExperimentOptions& o) {
  if (o.ranks.empty()) usage_error("{}: --ranks is empty", kCmd);
  if (o.seeds.empty()) usage_error("{}: --seeds is empty", kCmd);
  for (int64_t r : o.ranks)
    if (r < 1) usage_error("{}: --ranks must be >= 1, got {}", kCmd, r);
  if (std::set<int64_t>(o.ranks.begin(), o.ranks.end()).size() != o.ranks.size())
    usage_error("{}: --ranks repeats a rank", kCmd);
  if (std::set<uint64_t>(o.seeds.begin(), o.seeds.end()).size() != o.seeds.size())
    usage_error("{}: --seeds repeats a seed", kCmd);
  if (o.steps < 1) usage_error("{}: --steps must be >= 1, got {}", kCmd, o.steps);
  if (o.warmup < 0 || o.warmup >= o.steps)
    usage_error("{}: --warmup {} must be from 0 to below --steps {}", kCmd, o.warmup, o.steps);
  if (o.batch < 1) usage_error("{}: --batch must be >= 1, got {}", kCmd, o.batch);
  if (o.seq_len < 1) usage_error("{}: --seq-len must be >= 1, got {}", kCmd, o.seq_len);
  if (!(std::isfinite(o.lr) && o.lr > 0)) usage_error("{}: --lr must be positive, got {}", kCmd, o.lr);
  if (!(std::isfinite(o.min_lr) && o.min_lr >= 0 && o.min_lr <= o.lr))
    usage_error("{}: --min-lr must be from 0 to --lr ({}), got {}", kCmd, o.lr, o.min_lr);
  if (!(std::isfinite(o.base_scale) && o.base_scale >= 0))
    usage_error("{}: --base-scale must be >= 0, got {}", kCmd, o.base_scale);
  if (!(std::isfinite(o.alpha) && o.alpha >= 0)) usage_error("{}: --alpha must be >= 0, got {}", kCmd, o.alpha);
  if (o.compress_schedule != "linear" && o.compress_schedule != "cosine")
    usage_error("{}: --compress-schedule must be linear or cosine, got '{}'", kCmd, o.compress_schedule);
  if (!(o.compress_fraction > 0 && o.compress_fraction <= 1))
    usage_error("{}: --compress-fraction must be in (0, 1], got {}", kCmd, o.compress_fraction);
  if (!(o.val_fraction == -1 || (o.val_fraction > 0 && o.val_fraction < 1)))
    usage_error("{}: --val-fraction must be in (0, 1), got {}", kCmd, o.val_fraction);
  if (o.val_windows < 0) usage_error("{}: --val-windows must be >= 0, got {}", kCmd, o.val_windows);
  try {
    mg::parse_lora_targets(o.targets);
  } catch (const Error& e) {
    usage_error("{}: --targets '{}': {}", kCmd, o.targets, e.what());
  }
}

Gpt2ExperimentRun run_job(const Context& c, const Gpt2ExperimentJob& job, int64_t index, int64_t total) {
  const Gpt2ExperimentOptions& o = c.o;
  const double t0 = now_seconds();
  std::shared_ptr<mg::Gpt2> model = load_gpt2_model(o.base, kCmd);
  model->to(c.device);
  mg::Gpt2LoraSpec spec = c.spec;
  spec.lora = gpt2_experiment_lora(o, job);
  const std::vector<mg::Gpt2LoraLayer> layers = mg::inject_gpt2_lora(*model, spec);
  mg::LoraInitialFactors pissa_initial;
  if (spec.lora.init == nn::LoraInit::Pissa) {  // pissa and svd: PEFT's files need the initial factors
    NoGradGuard ng;
    for (const mg::Gpt2LoraLayer& l : layers)
      pissa_initial[l.path] = {l.lora->lora_A().clone(), l.lora->lora_B().clone()};
  }
  Gpt2ExperimentRun run;
  run.job = job;
  if (trained(job.method)) {
    run.train_losses =
        train_gpt2_adapters(*model, layers, gpt2_experiment_training(o, job), c.device,
                            [&](int64_t step) { return gpt2_experiment_batch(c.data.train, o, job, step); });
  }
  for (const mg::Gpt2LoraLayer& l : layers) l.lora->set_schedule_step(o.steps);  // the schedule's end value
  run.val_loss = gpt2_mean_loss(*model, c.val_batches, c.device);
  run.perplexity = std::exp(run.val_loss);
  int64_t replaced = 0;
  for (const mg::Gpt2LoraLayer& l : layers) {
    const nn::LoRA& a = *l.lora;
    run.trainable += a.lora_A().numel() + a.lora_B().numel();
    replaced += a.in_features() * a.out_features();
    Gpt2LayerReport rep;
    rep.path = l.path;
    NoGradGuard ng;
    const Tensor A = a.lora_A().detach().to(Device::cpu()).contiguous();
    const Tensor B = a.lora_B().detach().to(Device::cpu()).contiguous();
    rep.delta = analysis::delta_report(c.w.at(l.path), A, B, a.scale(), a.base_scale());
    rep.amplification = analysis::amplification_report(c.w.at(l.path), A, B, a.scale(), kRandomFrameSeed + job.seed);
    if (job.method == "lora") rep.a = A.clone();
    run.layers.push_back(std::move(rep));
  }
  run.ratio = static_cast<double>(replaced) / static_cast<double>(run.trainable);
  run.adapter_dir = (fs::path("adapters") / job.name()).string();
  const fs::path dir = fs::path(c.partial) / run.adapter_dir;
  fs::remove_all(dir);  // a killed earlier attempt's
  mg::save_peft_adapter(*model, dir.string(), o.base, pissa_initial.empty() ? nullptr : &pissa_initial);
  run.seconds = now_seconds() - t0;
  if (o.log)
    std::fprintf(stderr, "%s: %s[%lld/%lld] %-14s val loss %.4f  ppl %8.2f  ΔW err %.4f (Eckart–Young %.4f)  %.1f s\n",
                 kCmd, dist::distributed() ? ("[rank " + std::to_string(dist::rank()) + "] ").c_str() : "",
                 static_cast<long long>(index + 1), static_cast<long long>(total), job.name().c_str(), run.val_loss,
                 run.perplexity, run.layers.front().delta.relative_error, run.layers.front().delta.eckart_young_error,
                 run.seconds);
  return run;
}

// ---- a run as bytes for the sweep's gather, and back

void pack_report(Packer& p, const analysis::DeltaReport& d) {
  p.i64(d.out).i64(d.in).i64(d.rank).f64(d.scale).f64(d.base_scale).f64s(d.phi_left).f64s(d.phi_right);
  p.f64(d.delta_norm).f64(d.w_norm).f64(d.target_norm).f64(d.relative_error).f64(d.eckart_young_error);
  p.f64(d.projected_w_norm).f64(d.amplification).f64s(d.delta_singular_values).f64s(d.w_singular_values);
}

analysis::DeltaReport unpack_report(Unpacker& u) {
  analysis::DeltaReport d;
  d.out = u.i64(), d.in = u.i64(), d.rank = u.i64(), d.scale = u.f64(), d.base_scale = u.f64();
  d.phi_left = u.f64s(), d.phi_right = u.f64s();
  d.delta_norm = u.f64(), d.w_norm = u.f64(), d.target_norm = u.f64(), d.relative_error = u.f64();
  d.eckart_young_error = u.f64(), d.projected_w_norm = u.f64(), d.amplification = u.f64();
  d.delta_singular_values = u.f64s(), d.w_singular_values = u.f64s();
  return d;
}

std::string pack_run(const Gpt2ExperimentRun& r) {
  Packer p;
  p.str(r.job.method).i64(r.job.rank).i64(static_cast<int64_t>(r.job.seed));
  p.f64(r.val_loss).f64(r.perplexity).i64(r.trainable).f64(r.ratio).f64(r.seconds).f64s(r.train_losses);
  p.str(r.adapter_dir).i64(static_cast<int64_t>(r.layers.size()));
  for (const Gpt2LayerReport& l : r.layers) {
    p.str(l.path);
    pack_report(p, l.delta);
    const analysis::AmplificationReport& m = l.amplification;
    p.i64(m.out).i64(m.in).i64(m.rank).f64(m.scale).i64(static_cast<int64_t>(m.seed)).f64(m.w_norm).f64(m.delta_norm);
    for (const auto* d : {&m.delta, &m.w, &m.random}) p.f64(d->projected_w_norm).f64(d->amplification);
    p.i64(l.a.defined() ? 1 : 0);
    if (l.a.defined()) p.tensor(l.a);
  }
  return p.bytes();
}

Gpt2ExperimentRun unpack_run(const std::string& bytes) {
  Unpacker u(bytes);
  Gpt2ExperimentRun r;
  r.job.method = u.str(), r.job.rank = u.i64(), r.job.seed = static_cast<uint64_t>(u.i64());
  r.val_loss = u.f64(), r.perplexity = u.f64(), r.trainable = u.i64(), r.ratio = u.f64(), r.seconds = u.f64();
  r.train_losses = u.f64s();
  r.adapter_dir = u.str();
  const int64_t n = u.i64();
  LR_CHECK(n >= 0 && n < 100000, "{}: a gathered run with {} layers", kCmd, n);
  for (int64_t k = 0; k < n; ++k) {
    Gpt2LayerReport& l = r.layers.emplace_back();
    l.path = u.str();
    l.delta = unpack_report(u);
    analysis::AmplificationReport& m = l.amplification;
    m.out = u.i64(), m.in = u.i64(), m.rank = u.i64(), m.scale = u.f64(), m.seed = static_cast<uint64_t>(u.i64());
    m.w_norm = u.f64(), m.delta_norm = u.f64();
    for (auto* d : {&m.delta, &m.w, &m.random}) d->projected_w_norm = u.f64(), d->amplification = u.f64();
    if (u.i64() != 0) l.a = u.tensor();
  }
  return r;
}

const Gpt2ExperimentRun* find_run(const Gpt2ExperimentResult& r, const std::string& method, int64_t rank,
                                  uint64_t seed) {
  for (const Gpt2ExperimentRun& x : r.runs)
    if (x.job.method == method && x.job.rank == rank && x.job.seed == seed) return &x;
  return nullptr;
}

analysis::SimilarityGrid crop(const analysis::SimilarityGrid& g, int64_t rows, int64_t cols) {
  analysis::SimilarityGrid out;
  out.rows = std::min(rows, g.rows), out.cols = std::min(cols, g.cols);
  for (int64_t i = 0; i < out.rows; ++i)
    for (int64_t j = 0; j < out.cols; ++j) out.values.push_back(g.values[static_cast<size_t>(i * g.cols + j)]);
  return out;
}

// Makes `partial` (and removes what an earlier killed run left there), with one line when the
// output folder cannot be written. Rank 0's alone (under mpirun the others wait for it).
void make_partial(const std::string& partial) {
  std::error_code ec;
  fs::remove_all(partial, ec);
  fs::create_directories(fs::path(partial) / "adapters", ec);
  if (ec) LR_FAIL("{}: cannot create the output folder {}: {}", kCmd, partial, ec.message());
  const fs::path probe = fs::path(partial) / ".write-test";
  {
    std::ofstream f(probe);
    f << "ok";
    if (!f.good()) LR_FAIL("{}: cannot write into the output folder {}", kCmd, partial);
  }
  fs::remove(probe, ec);
}

}  // namespace

std::string Gpt2ExperimentJob::name() const {
  return method == "svd" ? detail::format("svd_r{}", rank) : detail::format("{}_r{}_s{}", method, rank, seed);
}

std::vector<Gpt2ExperimentJob> gpt2_experiment_jobs(const Gpt2ExperimentOptions& o) {
  std::vector<Gpt2ExperimentJob> jobs;
  for (int64_t r : o.ranks)
    for (uint64_t s : o.seeds) jobs.push_back({"lora", r, s});
  for (const char* m : {"compress", "pissa"})
    for (int64_t r : o.ranks) jobs.push_back({m, r, o.seeds.front()});
  for (int64_t r : o.ranks) jobs.push_back({"svd", r, 0});
  return jobs;
}

nn::LoraConfig gpt2_experiment_lora(const Gpt2ExperimentOptions& o, const Gpt2ExperimentJob& job) {
  nn::LoraConfig l;
  l.r = job.rank;
  l.alpha = o.alpha > 0 ? o.alpha : static_cast<double>(job.rank);
  l.seed = job.seed;
  l.init = job.method == "pissa" || job.method == "svd" ? nn::LoraInit::Pissa : nn::LoraInit::Kaiming;
  if (job.method == "lora") {
    l.base_scale = nn::BaseScaleSchedule::constant(o.base_scale);
  } else if (job.method == "svd") {
    l.base_scale = nn::BaseScaleSchedule::constant(0.0);
  } else {
    const int64_t steps = std::max<int64_t>(1, std::llround(o.compress_fraction * static_cast<double>(o.steps)));
    l.base_scale = {nn::BaseScaleSchedule::parse_kind(o.compress_schedule), 1.0, 0.0, steps};
  }
  return l;
}

mg::Batch gpt2_experiment_batch(const std::vector<uint16_t>& train_tokens, const Gpt2ExperimentOptions& o,
                                const Gpt2ExperimentJob& job, int64_t step) {
  return mg::random_batch(train_tokens, o.batch, o.seq_len, job.seed, step);
}

Gpt2ExperimentData load_gpt2_experiment_data(Gpt2ExperimentOptions& o, const mg::Gpt2& base) {
  const json base_cfg = base_train_config(o.base);
  std::vector<std::string> data_paths = o.data;
  std::string cache_dir;
  if (data_paths.empty()) {
    if (base_cfg.is_null() || !base_cfg.contains("data") || !base_cfg["data"].is_array() || base_cfg["data"].empty())
      usage_error(
          "{}: the base {} does not say what text it was trained on (no lowrank_train.data in its "
          "config.json); pass --data",
          kCmd, o.base);
    for (const json& f : base_cfg["data"]) data_paths.push_back(f.get<std::string>());
    if (fs::is_directory(o.base)) cache_dir = o.base;  // gpt2 train's token cache for this very split
  }
  if (o.val_fraction == -1)
    o.val_fraction = !base_cfg.is_null() && base_cfg.contains("val_fraction") && base_cfg["val_fraction"].is_number()
                         ? base_cfg["val_fraction"].get<double>()
                         : 0.05;
  if (o.vocab.empty() && !base_cfg.is_null() && base_cfg.contains("vocab") && base_cfg["vocab"].is_string())
    o.vocab = base_cfg["vocab"].get<std::string>();
  for (const std::string& p : data_paths)
    LR_CHECK(fs::exists(p), "{}: no text at {} (--data takes files or folders)", kCmd, p);
  const mg::Tokenizer tok = load_gpt2_tokenizer(o.vocab, kCmd);
  check_vocab_fits(base, tok, kCmd);
  Gpt2ExperimentData d;
  d.files = mg::list_text_files(data_paths);
  d.tokens = load_gpt2_run_data(tok, o.vocab, d.files, o.val_fraction, cache_dir, o.threads);
  const int64_t train = static_cast<int64_t>(d.tokens.train.size()), val = static_cast<int64_t>(d.tokens.val.size());
  LR_CHECK(train >= o.seq_len + 1 && val >= o.seq_len + 1,
           "{}: the text splits into {} training and {} validation tokens; each needs at least --seq-len + 1 = {} "
           "(give more text, a larger --val-fraction or a shorter --seq-len)",
           kCmd, train, val, o.seq_len + 1);
  return d;
}

Gpt2AdapterTraining gpt2_experiment_training(const Gpt2ExperimentOptions& o, const Gpt2ExperimentJob& job) {
  Gpt2AdapterTraining t;
  t.steps = o.steps, t.lr = o.lr, t.min_lr = o.min_lr, t.warmup = o.warmup, t.grad_clip = o.grad_clip;
  t.progress = o.log && dist::is_leader();
  t.name = detail::format("{}: {}", kCmd, job.name());
  return t;
}

std::vector<double> train_gpt2_adapters(mg::Gpt2& model, const std::vector<mg::Gpt2LoraLayer>& layers,
                                        const Gpt2AdapterTraining& t, Device device,
                                        const std::function<mg::Batch(int64_t step)>& batch_for) {
  optim::NamedParameters params;
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) params.emplace_back(name, p);
  optim::AdamW opt(optim::ParamGroups{{"adapters", params, std::nullopt, 0.0}},
                   {.lr = t.lr, .eps = optim::kTorchAdamEps});
  opt.set_schedule(optim::LrSchedule::cosine(t.lr, t.warmup, t.steps, t.min_lr));
  Trainer trainer(opt, {.command = t.name.empty() ? std::string(kCmd) : t.name,
                        .total_steps = t.steps,
                        .log_every = 1,
                        .grad_clip = t.grad_clip,
                        .progress = t.progress});
  std::vector<double> losses;
  trainer.hooks.before_step = [&](int64_t step) {
    for (const mg::Gpt2LoraLayer& l : layers) l.lora->set_schedule_step(step);
  };
  trainer.hooks.forward = [&](int64_t step) {
    const mg::Batch b = batch_for(step);
    StepOutput out;
    out.loss = model.loss(b.inputs.to(device), b.targets.to(device));
    out.tokens = b.inputs.numel();
    return out;
  };
  trainer.hooks.log = [&](const IntervalStats& s) -> std::optional<json> {
    losses.push_back(s.loss);
    return std::nullopt;
  };
  trainer.hooks.progress_text = [&](const IntervalStats& s) {
    return detail::format("{} step {}/{} loss {}", t.name, s.step, t.steps, fixed(s.loss, 4));
  };
  model.train();
  trainer.run();
  for (const mg::Gpt2LoraLayer& l : layers) l.lora->set_schedule_step(t.steps);
  return losses;
}

Gpt2ExperimentResult run_gpt2_experiment(const Gpt2ExperimentOptions& options) {
  const double t0 = now_seconds();
  Context c{options, Device::cpu(), {}, {}, {}, {}, {}, {}};
  Gpt2ExperimentOptions& o = c.o;
  if (o.quick) {
    if (o.ranks == Gpt2ExperimentOptions{}.ranks) o.ranks = {1, 8};
    o.seeds.resize(1);
    if (o.steps == Gpt2ExperimentOptions{}.steps) o.steps = kQuickSteps;
  }
  check_options(o);
  Gpt2ExperimentResult r;
  // "runs/x/" names the folder runs/x: its partial sibling must not land inside it.
  while (o.out.size() > 1 && o.out.back() == '/') o.out.pop_back();
  if (o.out.empty() || o.out == "." || o.out == "..")
    usage_error("{}: --out must name a folder of its own, got '{}'", kCmd, options.out);
  r.out_dir = o.out;
  if (fs::exists(o.out) && !fs::is_empty(o.out) && !o.overwrite)
    usage_error("{}: {} already holds an experiment; pass --overwrite to replace it, or --out for another folder", kCmd,
                o.out);
  if (!fs::exists(o.base))
    LR_FAIL(
        "{}: no base model at {}: train one with `lowrank gpt2 train --max-time 600` (writes runs/gpt2), or pass "
        "--base with a run folder or a Hugging Face folder (model.safetensors + config.json)",
        kCmd, o.base);
  c.device = setup_device(o.device, o.threads, kCmd);

  // The base, its targets and the data are checked before anything is written.
  std::shared_ptr<mg::Gpt2> base = load_gpt2_model(o.base, kCmd);
  const mg::Config& cfg = base->config();
  r.n_embd = cfg.n_embd;
  c.spec.targets = mg::parse_lora_targets(o.targets);
  try {
    c.spec.layers = mg::parse_lora_layers(o.layers, cfg.n_layer);
  } catch (const Error& e) {
    usage_error("{}: --layers: {}", kCmd, e.what());
  }
  // Every target maps n_embd to n_embd or 4·n_embd (or back): min(in, out) is n_embd.
  for (int64_t rank : o.ranks)
    if (rank > cfg.n_embd)
      usage_error("{}: --ranks {} is larger than min(in, out) = {} of the targeted layers", kCmd, rank, cfg.n_embd);
  if (o.seq_len > cfg.n_ctx)
    usage_error("{}: --seq-len {} is longer than the base's context ({})", kCmd, o.seq_len, cfg.n_ctx);

  Gpt2ExperimentData data = load_gpt2_experiment_data(o, *base);
  c.data = std::move(data.tokens);
  r.data_files = std::move(data.files);
  r.train_tokens = static_cast<int64_t>(c.data.train.size());
  r.val_tokens = static_cast<int64_t>(c.data.val.size());
  c.val_batches = mg::sequential_batches(c.data.val, o.batch, o.seq_len, o.val_windows);
  for (const mg::Batch& b : c.val_batches) r.val_tokens_used += b.targets.numel();

  // Each targeted W as the adapters see it ([out, in]), from adapters that change nothing.
  base->to(c.device);
  r.base_loss = gpt2_mean_loss(*base, c.val_batches, c.device);
  {
    mg::Gpt2LoraSpec probe = c.spec;
    probe.lora.r = 1;
    probe.lora.base_scale = nn::BaseScaleSchedule::constant(o.base_scale);
    const std::vector<mg::Gpt2LoraLayer> layers = mg::inject_gpt2_lora(*base, probe);
    NoGradGuard ng;
    for (const mg::Gpt2LoraLayer& l : layers) {
      c.paths.push_back(l.path);
      c.w[l.path] = l.lora->base_weight().detach().to(Device::cpu()).to(DType::F32).contiguous();
      r.replaced_elements += l.lora->in_features() * l.lora->out_features();
    }
    // B = 0: the scaled variant, base_scale · W and no adapter.
    r.scaled_loss = gpt2_mean_loss(*base, c.val_batches, c.device);
  }
  r.paths = c.paths;
  base.reset();

  c.partial = o.out + ".partial";
  if (dist::is_leader()) make_partial(c.partial);
  dist::barrier();  // (mpirun) the folder is there, emptied, before any rank writes its adapters into it
  // A run that fails from here on takes its partial folder with it (rank 0's; under mpirun the
  // abort ends every rank).
  try {
    const std::vector<Gpt2ExperimentJob> jobs = gpt2_experiment_jobs(o);
    const int64_t n = static_cast<int64_t>(jobs.size());
    if (o.log && dist::is_leader())
      std::fprintf(stderr,
                   "%s: %zu layers (%s) of %s, %lld jobs; %lld train / %lld validation tokens; base val loss %.4f, "
                   "scaled (x%g) %.4f\n",
                   kCmd, c.paths.size(), o.targets.c_str(), o.base.c_str(), static_cast<long long>(n),
                   static_cast<long long>(r.train_tokens), static_cast<long long>(r.val_tokens_used), r.base_loss,
                   o.base_scale, r.scaled_loss);
    double total_weight = 0;
    for (const Gpt2ExperimentJob& j : jobs) total_weight += trained(j.method) ? 1.0 : kSvdJobWeight;
    double done_weight = 0;
    const double sweep_start = now_seconds();
    const std::vector<std::string> packed = run_sweep(n, [&](int64_t i) {
      const Gpt2ExperimentJob& job = jobs[static_cast<size_t>(i)];
      std::string bytes = pack_run(run_job(c, job, i, n));
      done_weight += trained(job.method) ? 1.0 : kSvdJobWeight;
      if (o.log && dist::is_leader() && !dist::distributed() && i + 1 < n) {
        const double elapsed = now_seconds() - sweep_start;
        std::fprintf(stderr, "%s: %lld/%lld jobs done in %s, about %s left\n", kCmd, static_cast<long long>(i + 1),
                     static_cast<long long>(n), clock_text(elapsed).c_str(),
                     clock_text(elapsed / done_weight * (total_weight - done_weight)).c_str());
      }
      return bytes;
    });
    if (!dist::is_leader()) return r;  // (mpirun) rank 0 reports
    for (const std::string& b : packed) r.runs.push_back(unpack_run(b));

    // φ grids, one panel per layer × target, computed where --device says (cuSOLVER on CUDA), in f64.
    auto on = [&](const Tensor& a) { return a.to(DType::F64).to(c.device); };
    r.grid_rank_large = *std::max_element(o.ranks.begin(), o.ranks.end());
    r.grid_rank_small = std::find(o.ranks.begin(), o.ranks.end(), 8) != o.ranks.end() && r.grid_rank_large != 8
                            ? 8
                            : *std::min_element(o.ranks.begin(), o.ranks.end());
    for (size_t k = 0; k < c.paths.size(); ++k) {
      Gpt2PhiPanel p;
      p.path = c.paths[k];
      const Gpt2ExperimentRun* small = find_run(r, "lora", r.grid_rank_small, o.seeds[0]);
      const Gpt2ExperimentRun* large = find_run(r, "lora", r.grid_rank_large, o.seeds[0]);
      if (small && large && r.grid_rank_small != r.grid_rank_large)
        p.ranks =
            crop(analysis::adapter_similarity(on(small->layers[k].a), on(large->layers[k].a)), kGridMax, kGridMax);
      if (o.seeds.size() > 1) {
        const Gpt2ExperimentRun* other = find_run(r, "lora", r.grid_rank_large, o.seeds[1]);
        if (large && other)
          p.seeds =
              crop(analysis::adapter_similarity(on(large->layers[k].a), on(other->layers[k].a)), kGridMax, kGridMax);
      }
      r.panels.push_back(std::move(p));
    }

    r.options = o;
    r.seconds = now_seconds() - t0;
    r.figures = write_gpt2_experiment_figures(c.partial, o, r);
    r.results_md = (fs::path(o.out) / "results.md").string();
    r.results_json = (fs::path(o.out) / "results.json").string();
    io::write_file_atomic((fs::path(c.partial) / "results.md").string(), gpt2_experiment_table(o, r));
    io::write_file_atomic((fs::path(c.partial) / "results.json").string(), gpt2_experiment_json(o, r));
    // Into place: the earlier experiment (--overwrite) goes only now that the new one is complete.
    std::error_code ec;
    if (fs::exists(o.out)) fs::remove_all(o.out, ec);
    if (ec) LR_FAIL("{}: cannot replace {}: {}", kCmd, o.out, ec.message());
    fs::rename(c.partial, o.out, ec);
    if (ec) LR_FAIL("{}: cannot move {} to {}: {}", kCmd, c.partial, o.out, ec.message());
  } catch (...) {
    std::error_code ec;
    if (dist::is_leader()) fs::remove_all(c.partial, ec);
    throw;
  }
  return r;
}

}  // namespace lowrank::train
