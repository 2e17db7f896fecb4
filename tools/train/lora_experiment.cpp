// run_lora_experiment(): base model, scaled baseline, adapters per rank × seed, the compression
// variant, truncated-SVD baseline and the subspace analysis, all written under the output folder.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "analysis/delta_report.h"
#include "analysis/similarity.h"
#include "core/io/fashion_mnist.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/mlp.h"
#include "nn/lora.h"
#include "nn/loss.h"
#include "optim/adam.h"
#include "tools/train/clock.h"
#include "tools/train/lora_experiment.h"
#include "tools/train/mlp.h"
#include "tools/train/setup.h"
#include "tools/train/sweep.h"

namespace lowrank::train {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kEvalBatch = 1000;
// Adapter loaders shuffle with their own stream, apart from the base model's.
constexpr uint64_t kAdapterLoaderSalt = 0xA5A5'0000'0000'0001ull;

struct Context {
  const LoraExperimentOptions& o;
  Device device;
  io::FashionMnist data;
  std::map<std::string, Tensor> base_state;  // CPU copies of the trained base
  std::vector<Tensor> w;                     // each --layer's trained kernel [out, in], CPU
};

std::shared_ptr<models::Mlp> fresh_model(const Context& ctx) {
  auto m = std::make_shared<models::Mlp>();
  m->load_state_dict(ctx.base_state);
  m->to(ctx.device);
  return m;
}

nn::Dense& target_dense(nn::Module& m, const std::string& path) {
  auto* d = dynamic_cast<nn::Dense*>(&m.submodule(path));
  LR_CHECK(d != nullptr, "lora-experiment: --layer {} is a {}, not a Dense layer", path, m.submodule(path).type_name());
  return *d;
}

nn::EvalResult evaluate(const Context& ctx, nn::Module& m) {
  Device d = ctx.device;
  return nn::evaluate_classifier(m, ctx.data.test_images, ctx.data.test_labels, kEvalBatch,
                                 [d](const Tensor& x) { return x.to(d); });
}

// lora_r8_s0, or lora_r8_s0_bs0.5 when several base scales are run.
std::string run_name(const std::string& method, int64_t r, uint64_t seed, const std::string& suffix) {
  return method + "_r" + std::to_string(r) + "_s" + std::to_string(seed) + suffix;
}

// Trains one adapter on the frozen, scaled model and reports on it.
AdapterRun train_adapter(const Context& ctx, const std::string& method, int64_t r, uint64_t seed,
                         const nn::BaseScaleSchedule& schedule, const std::string& suffix, Tensor* a_out) {
  const LoraExperimentOptions& o = ctx.o;
  const double t0 = now_seconds();
  auto model = fresh_model(ctx);
  nn::LoraConfig c;
  c.r = r;
  c.alpha = o.alpha > 0 ? o.alpha : static_cast<double>(r);
  c.use_rslora = o.rslora;
  c.dropout = o.dropout;
  c.init = nn::parse_lora_init(o.init);
  c.seed = seed;
  c.base_scale = schedule;
  std::vector<std::shared_ptr<nn::LoRA>> loras;
  for (const std::string& layer : o.layers) loras.push_back(nn::inject_lora(*model, layer, c));
  const nn::LoRA& first = *loras.front();
  optim::Adam adam(model->named_trainable_parameters(), {.lr = o.lr, .eps = optim::kKerasAdamEps});
  io::DataLoader loader({ctx.data.train_images, ctx.data.train_labels}, {.batch_size = o.batch,
                                                                         .shuffle = true,
                                                                         .drop_last = false,
                                                                         .seed = seed ^ kAdapterLoaderSalt,
                                                                         .device = ctx.device});
  AdapterRun run;
  run.method = method, run.rank = r, run.seed = seed, run.base_scale = schedule.target;
  const std::string name = run_name(method, r, seed, suffix);
  const int64_t per_epoch = loader.num_batches();
  const int64_t total = per_epoch * o.epochs;
  Trainer trainer(adam, {.command = "lora-experiment: " + name,
                         .total_steps = total,
                         .steps_per_epoch = per_epoch,
                         .total_flag = "--epochs",
                         .log_every = per_epoch,
                         .progress = o.log && dist::is_leader()});
  trainer.hooks.before_step = [&](int64_t step) {
    for (auto& l : loras) l->set_schedule_step(step);
  };
  trainer.hooks.forward = [&](int64_t) { return classifier_step(*model, loader); };
  trainer.hooks.log = [&](const IntervalStats& s) -> std::optional<nlohmann::json> {
    run.train_loss = s.loss;  // the last epoch's mean
    return std::nullopt;
  };
  trainer.hooks.progress_text = [&](const IntervalStats& s) {
    return detail::format("{} epoch {}/{} {}/{} loss {}", name, (s.step - 1) / per_epoch + 1, o.epochs,
                          (s.step - 1) % per_epoch + 1, per_epoch, fixed(s.loss, 4));
  };
  model->train();
  trainer.run();
  for (auto& l : loras) l->set_schedule_step(total);  // evaluate at the schedule's end value
  nn::EvalResult ev = evaluate(ctx, *model);
  run.test_acc = ev.accuracy, run.test_loss = ev.loss;
  int64_t kernel_elements = 0;
  std::vector<std::pair<std::string, const nn::LoRA*>> saved;
  for (size_t k = 0; k < loras.size(); ++k) {
    const nn::LoRA& l = *loras[k];
    run.params += r * (l.in_features() + l.out_features());
    kernel_elements += l.in_features() * l.out_features();
    saved.emplace_back(o.layers[k], &l);
    // Against the trained W (PiSSA moves the kernel's top part into the adapter; W stays the reference).
    run.reports.push_back(analysis::delta_report(ctx.w[k], l.lora_A(), l.lora_B(), l.scale(), l.base_scale()));
  }
  run.compression_ratio = static_cast<double>(kernel_elements) / static_cast<double>(run.params);
  run.adapter_dir = (fs::path(o.out_dir) / "adapters" / name).string();
  nn::save_lora_adapter(run.adapter_dir, saved);
  if (a_out) *a_out = first.lora_A().detach().to(Device::cpu()).clone();
  run.seconds = now_seconds() - t0;
  if (o.log)
    std::fprintf(stderr, "lora-experiment: %s%-18s test acc %.4f  loss %.4f  rel.err %.4f  (%.1f s)\n",
                 dist::distributed() ? ("[rank " + std::to_string(dist::rank()) + "] ").c_str() : "", name.c_str(),
                 run.test_acc, run.test_loss, run.reports.front().relative_error, run.seconds);
  return run;
}

// Each layer's W replaced by its best rank-r approximation (Eckart–Young), no training.
AdapterRun svd_baseline(const Context& ctx, const std::vector<SvdResult>& ds, int64_t r) {
  const double t0 = now_seconds();
  auto model = fresh_model(ctx);
  AdapterRun run;
  run.method = "svd", run.rank = r;
  int64_t kernel_elements = 0;
  for (size_t k = 0; k < ds.size(); ++k) {
    const SvdResult& d = ds[k];
    NoGradGuard ng;
    Tensor wr = matmul(mul(d.u.slice(1, 0, r), d.s.slice(0, 0, r)), d.vt.slice(0, 0, r));
    Tensor kernel = target_dense(*model, ctx.o.layers[k]).kernel();
    kernel.copy_(wr);
    run.params += r * (ctx.w[k].size(0) + ctx.w[k].size(1));
    kernel_elements += ctx.w[k].numel();
  }
  nn::EvalResult ev = evaluate(ctx, *model);
  run.test_acc = ev.accuracy, run.test_loss = ev.loss;
  run.compression_ratio = static_cast<double>(kernel_elements) / static_cast<double>(run.params);
  run.seconds = now_seconds() - t0;
  if (ctx.o.log)
    std::fprintf(stderr, "lora-experiment: svd_r%-13lld test acc %.4f  loss %.4f\n", static_cast<long long>(r),
                 run.test_acc, run.test_loss);
  return run;
}

// An adapter run (and its A, when it has one) as bytes, for the sweep's gather, and back.
std::string pack_run(const AdapterRun& a, const Tensor& lora_a) {
  Packer p;
  p.str(a.method).f64(a.base_scale).i64(a.rank).i64(static_cast<int64_t>(a.seed));
  p.f64(a.test_acc).f64(a.test_loss).f64(a.train_loss).f64(a.seconds).i64(a.params).f64(a.compression_ratio);
  p.str(a.adapter_dir).i64(static_cast<int64_t>(a.reports.size()));
  for (const analysis::DeltaReport& d : a.reports) {
    p.i64(d.out).i64(d.in).i64(d.rank).f64(d.scale).f64(d.base_scale).f64s(d.phi_left).f64s(d.phi_right);
    p.f64(d.delta_norm).f64(d.w_norm).f64(d.target_norm).f64(d.relative_error).f64(d.eckart_young_error);
    p.f64(d.projected_w_norm).f64(d.amplification).f64s(d.delta_singular_values).f64s(d.w_singular_values);
  }
  p.i64(lora_a.defined() ? 1 : 0);
  if (lora_a.defined()) p.tensor(lora_a);
  return p.bytes();
}

AdapterRun unpack_run(const std::string& bytes, Tensor* lora_a) {
  Unpacker u(bytes);
  AdapterRun a;
  a.method = u.str(), a.base_scale = u.f64(), a.rank = u.i64(), a.seed = static_cast<uint64_t>(u.i64());
  a.test_acc = u.f64(), a.test_loss = u.f64(), a.train_loss = u.f64(), a.seconds = u.f64(), a.params = u.i64();
  a.compression_ratio = u.f64();
  a.adapter_dir = u.str();
  const int64_t n = u.i64();
  LR_CHECK(n >= 0 && n < 1024, "sweep: a run with {} layer reports", n);
  for (int64_t k = 0; k < n; ++k) {
    analysis::DeltaReport& d = a.reports.emplace_back();
    d.out = u.i64(), d.in = u.i64(), d.rank = u.i64(), d.scale = u.f64(), d.base_scale = u.f64();
    d.phi_left = u.f64s(), d.phi_right = u.f64s();
    d.delta_norm = u.f64(), d.w_norm = u.f64(), d.target_norm = u.f64(), d.relative_error = u.f64();
    d.eckart_young_error = u.f64(), d.projected_w_norm = u.f64(), d.amplification = u.f64();
    d.delta_singular_values = u.f64s(), d.w_singular_values = u.f64s();
  }
  if (u.i64() != 0) *lora_a = u.tensor();
  return a;
}

// --base names a model.safetensors or the run folder holding one.
std::string base_model_file(const std::string& base) {
  fs::path p(base);
  if (fs::is_directory(p)) p /= "model.safetensors";
  LR_CHECK(fs::is_regular_file(p), "lora-experiment: --base {}: no model file {}", base, p.string());
  return p.string();
}

// The epochs a loaded base was trained for: the last record of its run's metrics.jsonl (the
// folder of the model file, or the run folder above a checkpoint-<step>), else its config.json's
// "epochs"; -1 when neither says.
int64_t trained_epochs_of(const std::string& model_file) {
  const fs::path dir = fs::path(model_file).parent_path();
  for (const fs::path& d : {dir, dir.parent_path()}) {
    std::ifstream metrics(d / "metrics.jsonl");
    int64_t last = -1;
    for (std::string line; std::getline(metrics, line);) {
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("epoch") && j["epoch"].is_number_integer())
        last = std::max(last, j["epoch"].get<int64_t>());
    }
    if (last >= 0) return last;
  }
  std::ifstream config(dir / "config.json");
  if (config) {
    const nlohmann::json j = nlohmann::json::parse(config, nullptr, false);
    if (j.is_object() && j.contains("epochs") && j["epochs"].is_number_integer()) return j["epochs"].get<int64_t>();
  }
  return -1;
}

// Flag values that cannot be right are usage errors (exit 2), found before any training starts.
void check_options(const LoraExperimentOptions& o) {
  const char* cmd = "lora-experiment";
  if (o.ranks.empty()) usage_error("{}: --ranks is empty", cmd);
  if (o.seeds.empty()) usage_error("{}: --seeds is empty", cmd);
  if (o.epochs < 1) usage_error("{}: --epochs must be at least 1, got {}", cmd, o.epochs);
  if (o.base_epochs < 1) usage_error("{}: --base-epochs must be at least 1, got {}", cmd, o.base_epochs);
  if (o.batch < 1) usage_error("{}: --batch must be at least 1, got {}", cmd, o.batch);
  if (!(std::isfinite(o.lr) && o.lr > 0)) usage_error("{}: --lr must be a positive number, got {}", cmd, o.lr);
  if (o.base_scales.empty()) usage_error("{}: --base-scales is empty", cmd);
  for (double s : o.base_scales)
    if (!(std::isfinite(s) && s >= 0)) usage_error("{}: --base-scales must be numbers >= 0, got {}", cmd, s);
  for (size_t i = 0; i < o.base_scales.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (scale_text(o.base_scales[i]) == scale_text(o.base_scales[j]))
        usage_error("{}: --base-scales lists {} twice", cmd, scale_text(o.base_scales[i]));
  if (!(o.dropout >= 0 && o.dropout < 1))
    usage_error("{}: --dropout must be from 0 to below 1, got {}", cmd, o.dropout);
  if (!(std::isfinite(o.alpha) && o.alpha >= 0))
    usage_error("{}: --alpha must be a number >= 0 (0: alpha = r), got {}", cmd, o.alpha);
  if (!(o.compress_fraction > 0 && o.compress_fraction <= 1))
    usage_error("{}: --compress-fraction must be above 0 and at most 1, got {}", cmd, o.compress_fraction);
  try {
    nn::parse_lora_init(o.init);
    nn::BaseScaleSchedule::parse_kind(o.compress_schedule);
  } catch (const Error& e) {
    usage_error("{}: {}", cmd, e.what());
  }
  // The layers and the ranks are checked on an untrained model.
  models::Mlp probe;
  std::string dense_layers;
  for (const auto& [path, m] : probe.named_modules())
    if (dynamic_cast<nn::Dense*>(m)) dense_layers += (dense_layers.empty() ? "" : ", ") + path;
  if (o.layers.empty()) usage_error("{}: --layer is empty", cmd);
  for (size_t i = 0; i < o.layers.size(); ++i) {
    const std::string& path = o.layers[i];
    for (size_t j = 0; j < i; ++j)
      if (o.layers[j] == path) usage_error("{}: --layer {} is given twice", cmd, path);
    nn::Module* layer = nullptr;
    try {
      layer = &probe.submodule(path);
    } catch (const Error&) {
      usage_error("{}: --layer {}: the MLP has no such layer (its Dense layers: {})", cmd, path, dense_layers);
    }
    auto* d = dynamic_cast<nn::Dense*>(layer);
    if (!d)
      usage_error("{}: --layer {} is a {}, not a Dense layer (the MLP's Dense layers: {})", cmd, path,
                  layer->type_name(), dense_layers);
    const int64_t limit = std::min(d->in_features(), d->units());
    for (int64_t r : o.ranks)
      if (r < 1 || r > limit)
        usage_error("{}: rank {} must be from 1 to min(in, out) = {} for {} ({} -> {})", cmd, r, limit, path,
                    d->in_features(), d->units());
  }
}

}  // namespace

double phi_chance(int64_t i, int64_t j, int64_t n) {
  return n > 0 ? static_cast<double>(std::max(i, j)) / static_cast<double>(n) : std::nan("");
}

std::string scale_text(double base_scale) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", base_scale);
  return buf;
}

std::string layers_text(const LoraExperimentOptions& o) {
  std::string s;
  for (const std::string& l : o.layers) s += (s.empty() ? "" : ", ") + l;
  return s;
}

std::string scale_suffix(const LoraExperimentOptions& o, double base_scale) {
  return o.base_scales.size() > 1 ? "_bs" + scale_text(base_scale) : "";
}

LoraExperimentResult run_lora_experiment(const LoraExperimentOptions& o) {
  const double t0 = now_seconds();
  check_options(o);
  if (!o.base.empty()) base_model_file(o.base);
  const Device device = setup_device(o.device, o.threads, "lora-experiment");
  keep_freed_memory_for_reuse();
  LR_CHECK(fs::is_directory(o.data_dir),
           "lora-experiment: data folder '{}' does not exist (tools/setup installs Fashion-MNIST into {})", o.data_dir,
           io::kFashionMnistDefaultDir);
  fs::create_directories(o.out_dir);

  Context ctx{o, device, io::load_fashion_mnist(o.data_dir), {}, {}};
  auto limit = [](Tensor& t, int64_t n) {
    if (n > 0 && n < t.size(0)) t = t.narrow(0, 0, n).contiguous();
  };
  limit(ctx.data.train_images, o.train_limit);
  limit(ctx.data.train_labels, o.train_limit);
  limit(ctx.data.test_images, o.test_limit);
  limit(ctx.data.test_labels, o.test_limit);

  // ---- the base model: trained here, or loaded
  LoraExperimentResult r;
  std::shared_ptr<models::Mlp> base;
  if (o.base.empty()) {
    MlpTrainOptions t;
    t.data_dir = o.data_dir, t.epochs = o.base_epochs, t.seed = o.base_seed, t.device = o.device;
    t.out_dir = (fs::path(o.out_dir) / "base").string(), t.threads = o.threads, t.batch = o.batch;
    t.train_limit = o.train_limit, t.test_limit = o.test_limit, t.log = o.log, t.progress = o.log;
    t.overwrite = o.overwrite;
    t.data_parallel = false;  // (mpirun) every rank trains the same base: the single-process numbers, bit for bit
    base = run_train_mlp(t).model;
    r.base_trained_here = true, r.base_epochs = o.base_epochs;
  } else {
    base = std::make_shared<models::Mlp>();
    const std::string file = base_model_file(o.base);
    base->load(file);
    r.base_trained_here = false, r.base_epochs = trained_epochs_of(file);
  }
  for (auto& [name, t] : base->state_dict()) ctx.base_state[name] = t.detach().to(Device::cpu()).clone();

  {
    auto m = fresh_model(ctx);
    for (const std::string& layer : o.layers)
      ctx.w.push_back(target_dense(*m, layer).kernel().detach().to(Device::cpu()).clone());
    const nn::Dense& d = target_dense(*m, o.layers.front());
    r.layer_out = d.units(), r.layer_in = d.in_features();
    nn::EvalResult ev = evaluate(ctx, *m);
    r.base_acc = ev.accuracy, r.base_loss = ev.loss;
  }
  for (double scale : o.base_scales) {
    auto m = fresh_model(ctx);
    for (const std::string& layer : o.layers) {
      NoGradGuard ng;
      Tensor k = target_dense(*m, layer).kernel();
      k.copy_(mul(k, scale));
    }
    nn::EvalResult sc = evaluate(ctx, *m);
    ScaleResult s;
    s.base_scale = scale, s.scaled_acc = sc.accuracy, s.scaled_loss = sc.loss;
    r.scales.push_back(s);
    if (o.log)
      std::fprintf(stderr, "lora-experiment: base test acc %.4f; with %s scaled by %s and no adapter %.4f\n",
                   r.base_acc, layers_text(o).c_str(), scale_text(scale).c_str(), s.scaled_acc);
  }

  // ---- the adapter runs, spread over the ranks under mpirun (run_sweep) and gathered on rank 0 in
  // order: adapters on the scaled layer, every base scale × rank × seed; then compression, where
  // base_scale falls from 1 to 0, leaving a pure rank-r layer (one seed per rank)
  struct Job {
    std::string method;
    size_t scale;  // index into r.scales (lora)
    int64_t rank;
    uint64_t seed;
  };
  std::vector<Job> jobs;
  for (size_t k = 0; k < r.scales.size(); ++k)
    for (int64_t rank : o.ranks)
      for (uint64_t seed : o.seeds) jobs.push_back({"lora", k, rank, seed});
  const int64_t batches = (ctx.data.train_labels.size(0) + o.batch - 1) / o.batch;
  const int64_t compress_steps = std::max<int64_t>(
      1, static_cast<int64_t>(std::llround(o.compress_fraction * static_cast<double>(batches * o.epochs))));
  const nn::BaseScaleSchedule compress{nn::BaseScaleSchedule::parse_kind(o.compress_schedule), 1.0, 0.0,
                                       compress_steps};
  if (o.compression)
    for (int64_t rank : o.ranks) jobs.push_back({"compress", 0, rank, o.seeds.front()});
  const std::vector<std::string> done = run_sweep(static_cast<int64_t>(jobs.size()), [&](int64_t i) {
    const Job& j = jobs[static_cast<size_t>(i)];
    Tensor a;
    AdapterRun run = j.method == "lora" ? train_adapter(ctx, "lora", j.rank, j.seed,
                                                        nn::BaseScaleSchedule::constant(r.scales[j.scale].base_scale),
                                                        scale_suffix(o, r.scales[j.scale].base_scale), &a)
                                        : train_adapter(ctx, "compress", j.rank, j.seed, compress, "", nullptr);
    return pack_run(run, a);
  });
  if (!dist::is_leader()) return r;  // rank 0 has every result and writes the outputs
  std::vector<std::map<std::pair<int64_t, uint64_t>, Tensor>> a_of(r.scales.size());
  for (size_t i = 0; i < done.size(); ++i) {
    Tensor a;
    r.runs.push_back(unpack_run(done[i], &a));
    if (jobs[i].method == "lora") a_of[jobs[i].scale][{jobs[i].rank, jobs[i].seed}] = a;
  }
  // φ grids per base scale (the LoRA paper's Figure 3); A_r=8 against itself would show nothing.
  auto has = [&](int64_t x) { return std::find(o.ranks.begin(), o.ranks.end(), x) != o.ranks.end(); };
  r.grid_rank_small = has(8) ? 8 : *std::min_element(o.ranks.begin(), o.ranks.end());
  r.grid_rank_large = has(64) ? 64 : *std::max_element(o.ranks.begin(), o.ranks.end());
  const uint64_t s0 = o.seeds.front();
  for (size_t k = 0; k < r.scales.size(); ++k) {
    ScaleResult& sr = r.scales[k];
    if (r.grid_rank_small != r.grid_rank_large)
      sr.phi_ranks = analysis::adapter_similarity(a_of[k][{r.grid_rank_small, s0}], a_of[k][{r.grid_rank_large, s0}]);
    if (o.seeds.size() >= 2)
      sr.phi_seeds =
          analysis::adapter_similarity(a_of[k][{r.grid_rank_large, s0}], a_of[k][{r.grid_rank_large, o.seeds[1]}]);
  }

  // ---- truncated SVD of W, no training
  if (o.svd_baseline) {
    std::vector<SvdResult> ds;
    for (const Tensor& w : ctx.w) ds.push_back(svd(w.to(device)));
    for (int64_t rank : o.ranks) r.runs.push_back(svd_baseline(ctx, ds, rank));
  }

  r.seconds = now_seconds() - t0;
  const fs::path out(o.out_dir);
  r.table_md_path = (out / "results.md").string();
  r.results_json_path = (out / "results.json").string();
  r.figures = write_lora_experiment_figures(o, r);
  io::write_file_atomic(r.table_md_path, lora_experiment_table(o, r));
  io::write_file_atomic(r.results_json_path, lora_experiment_json(o, r));
  return r;
}

}  // namespace lowrank::train
