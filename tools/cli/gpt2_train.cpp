// `lowrank gpt2 train`: flags and the summary (text or --json); the run is train::run_gpt2_train.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "tools/cli/gpt2_common.h"
#include "tools/dist/dist.h"
#include "tools/train/gpt2.h"

namespace lowrank::cli::gpt2 {

namespace {

nlohmann::json curve(const std::vector<train::Gpt2TrainPoint>& points) {
  nlohmann::json a = nlohmann::json::array();
  for (const train::Gpt2TrainPoint& p : points) a.push_back({p.step, p.loss});
  return a;
}

struct TrainFlags {
  train::Gpt2TrainOptions o;
  bool quiet = false;
};

}  // namespace

RunFn register_gpt2_train(CLI::App& gpt2) {
  auto* sub = gpt2.add_subcommand(
      "train",
      "train a GPT-2 on text files (default: the fortunes corpus) from scratch (--preset, --config), from "
      "weights (--init) or continuing a run (--resume)");
  auto f = std::make_shared<TrainFlags>();
  train::Gpt2TrainOptions& o = f->o;
  sub->add_option("--data", o.data,
                  std::string("text files or folders (fortune files split at '%' lines; default: ") +
                      models::gpt2::kDefaultCorpusDir + ")")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  auto* preset = sub->add_option("--preset", o.preset,
                                 "model size: small (4 layers, 4 heads, 256 wide, context 256), gpt2 (124M), "
                                 "gpt2-medium, gpt2-large, gpt2-xl")
                     ->check(CLI::IsMember(std::vector<std::string>(std::begin(train::kGpt2TrainPresets),
                                                                    std::end(train::kGpt2TrainPresets))))
                     ->capture_default_str();
  auto* config = sub->add_option("--config", o.config, "model config.json (ours or Hugging Face's)");
  auto* init = sub->add_option("--init", o.init,
                               "start from these weights: a run folder, a Hugging Face folder (model.safetensors + "
                               "config.json) or a .safetensors file");
  add_run_folder_options(sub, o.out, o.resume, o.overwrite, train::kGpt2DefaultOut);
  auto* resume = sub->get_option("--resume");
  config->excludes(init)->excludes(resume)->excludes(preset);
  init->excludes(resume)->excludes(preset);
  resume->excludes(preset);
  sub->add_option("--cache-dir", o.cache_dir, "folder of the token cache (default: the output folder)");
  add_vocab_option(sub, o.vocab);
  sub->add_option("--steps", o.steps, "total optimizer steps (a resumed run counts those done)")
      ->check(positive_int())
      ->capture_default_str();
  sub->add_option("--max-time", o.max_time,
                  "the whole command ends within this many seconds of its start (0: no limit): loading the model "
                  "and the data count, and training stops early, with a checkpoint, when another step and the last "
                  "validation and checkpoint (timed as they happen) would not fit")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--stop-at", o.stop_at,
                  "stop (with a checkpoint) on reaching this step; the schedule still spans --steps, and --resume "
                  "goes on from there")
      ->check(non_negative_int());
  sub->add_option("--lr", o.lr, "peak learning rate")->check(positive_number())->capture_default_str();
  sub->add_option("--weight-decay", o.weight_decay, "AdamW decay on kernels and embeddings (not biases, LayerNorm)")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--beta2", o.beta2, "AdamW beta2")->check(fraction_below_one())->capture_default_str();
  add_gpt2_loop_options(sub, o);
  sub->add_option("--seed", o.seed, "seed of the initial weights, the batches and dropout")
      ->check(unsigned_int())
      ->capture_default_str();
  add_device_options(sub, o.device, o.threads);
  add_json_flag(sub, o.json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    train::Gpt2TrainOptions o = f->o;
    o.progress = o.log = !f->quiet;
    const train::Gpt2TrainResult r = train::run_gpt2_train(o);
    if (!dist::is_leader()) return kExitOk;  // (mpirun) rank 0 reports
    const double tps = r.train_seconds > 0 ? static_cast<double>(r.run_tokens) / r.train_seconds : 0.0;
    const double first_val = r.val.empty() ? NAN : r.val.front().loss;
    const double last_val = r.val.empty() ? NAN : r.val.back().loss;
    const double last_train = r.train.empty() ? NAN : r.train.back().loss;
    if (o.json) {
      nlohmann::json j{{"steps", r.final_step},
                       {"resumed_from_step", r.start_step},
                       {"stopped_early", r.stopped_early},
                       {"train_loss", last_train},
                       {"val_loss", r.val.empty() ? nlohmann::json(nullptr) : nlohmann::json(last_val)},
                       {"initial_val_loss", r.val.empty() ? nlohmann::json(nullptr) : nlohmann::json(first_val)},
                       {"tokens_per_s", tps},
                       {"seconds", r.seconds},
                       {"train_seconds", r.train_seconds},
                       {"ranks", dist::size()},
                       {"allreduce_seconds", r.allreduce_seconds},
                       {"run_tokens", r.run_tokens},
                       {"parameters", r.parameters},
                       {"seed", o.seed},
                       {"device", o.device},
                       {"data",
                        {{"train_tokens", r.train_tokens},
                         {"val_tokens", r.val_tokens},
                         {"documents", r.documents},
                         {"from_cache", r.data_from_cache},
                         {"seconds", r.data_seconds},
                         {"cache", r.data_cache}}},
                       {"train_curve", curve(r.train)},
                       {"val_curve", curve(r.val)},
                       {"outputs",
                        {{"model", r.model_dir},
                         {"optimizer", r.optimizer_path},
                         {"metrics", r.metrics_path},
                         {"config", r.config_path},
                         {"loss_curve", r.loss_curve_path},
                         {"checkpoint", r.checkpoint_dir}}}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("step %lld: train loss %.4f, validation loss %.4f (from %.4f), %.0f tokens/s, %.1f s; model in %s\n",
                  static_cast<long long>(r.final_step), last_train, last_val, first_val, tps, r.seconds,
                  r.model_dir.c_str());
    }
    return kExitOk;
  };
}

}  // namespace lowrank::cli::gpt2
