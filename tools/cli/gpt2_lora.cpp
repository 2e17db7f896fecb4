// `lowrank gpt2 lora`: flags and the summary table (text or --json); the run is train::run_gpt2_lora.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "tools/cli/gpt2_common.h"
#include "tools/dist/dist.h"
#include "tools/train/gpt2_lora.h"

namespace lowrank::cli::gpt2 {
namespace {

struct LoraFlags {
  train::Gpt2LoraOptions o;
  bool quiet = false;
  bool no_compare_full = false;
};

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

nlohmann::json summary_json(const train::Gpt2LoraRunSummary& s) {
  return {{"name", s.name},
          {"trainable_parameters", s.trainable},
          {"val_loss_before", number_or_null(s.val_loss_before)},
          {"val_loss_after", number_or_null(s.val_loss_after)},
          {"val_perplexity_before", number_or_null(std::exp(s.val_loss_before))},
          {"val_perplexity_after", number_or_null(std::exp(s.val_loss_after))},
          {"train_seconds", s.seconds},
          {"tokens_per_s", s.tokens_per_s},
          {"optimizer_state_bytes", s.optimizer_state_bytes}};
}

void print_row(const train::Gpt2LoraRunSummary& s, int64_t base_params) {
  std::printf("%-34s %12lld %8.4f%% %10.2f %10.2f %9.0f %10.1f\n", s.name.c_str(), static_cast<long long>(s.trainable),
              100.0 * static_cast<double>(s.trainable) / static_cast<double>(base_params), std::exp(s.val_loss_before),
              std::exp(s.val_loss_after), s.tokens_per_s, static_cast<double>(s.optimizer_state_bytes) / 1048576.0);
}

}  // namespace

RunFn register_gpt2_lora(CLI::App& gpt2) {
  auto* sub = gpt2.add_subcommand(
      "lora",
      "LoRA fine-tuning of a GPT-2 (default: runs/gpt2 on the fortunes' startrek file), beside full fine-tuning with "
      "the same steps; writes the adapter as PEFT does");
  auto f = std::make_shared<LoraFlags>();
  train::Gpt2LoraOptions& o = f->o;
  sub->add_option("--model", o.model,
                  "the frozen base: a gpt2 train run folder, a Hugging Face folder (model.safetensors + config.json) "
                  "or a .safetensors file")
      ->capture_default_str();
  sub->add_option("--data", o.data,
                  std::string("text files or folders (fortune files split at '%' lines; default: ") +
                      train::kGpt2LoraDefaultData + ")")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  add_run_folder_options(sub, o.out, o.resume, o.overwrite, train::kGpt2LoraDefaultOut);
  sub->add_option("--cache-dir", o.cache_dir, "folder of the token cache (default: the output folder)");
  add_vocab_option(sub, o.vocab);
  sub->add_option("--targets", o.targets, "layers that get adapters, of query,key,value,out,fc,proj")
      ->capture_default_str();
  sub->add_option("--layers", o.layers, "blocks that get adapters, e.g. 0,1,5 or 0-3 (default: all)");
  sub->add_option("--rank", o.rank, "adapter rank r")->check(positive_int())->capture_default_str();
  sub->add_option("--alpha", o.alpha, "LoRA alpha: the update is scaled by alpha / r")
      ->check(positive_number())
      ->capture_default_str();
  sub->add_flag("--rslora", o.rslora, "scale by alpha / sqrt(r) (rank-stabilised LoRA)");
  sub->add_option("--dropout", o.dropout, "dropout on the adapters' input")
      ->check(fraction_below_one())
      ->capture_default_str();
  sub->add_option("--init", o.init, "adapter init: kaiming (B = 0), gaussian (B = 0) or pissa (top-r SVD of W)")
      ->check(CLI::IsMember({"kaiming", "gaussian", "pissa"}))
      ->capture_default_str();
  sub->add_option("--base-scale", o.base_scale, "factor on the frozen kernels (at the start, with a schedule)")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--base-scale-target", o.base_scale_target,
                  "move the base scale to this value (linear or cosine) over --base-scale-steps")
      ->check(non_negative_number());
  sub->add_option("--base-scale-schedule", o.base_scale_schedule, "linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  sub->add_option("--base-scale-steps", o.base_scale_steps, "steps of the base-scale schedule (0: all of them)")
      ->check(non_negative_int());
  sub->add_option("--steps", o.steps, "total optimizer steps (a resumed run counts those done)")
      ->check(positive_int())
      ->capture_default_str();
  sub->add_option("--max-time", o.max_time,
                  "the whole command (LoRA run and comparison) ends within this many seconds of its start (0: no "
                  "limit); a LoRA run stopped early, with a checkpoint, skips the comparison, which gets what is left")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--stop-at", o.stop_at, "stop (with a checkpoint) on reaching this step")->check(non_negative_int());
  sub->add_option("--lr", o.lr, "peak learning rate of the adapters")->check(positive_number())->capture_default_str();
  sub->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")
      ->check(non_negative_number())
      ->capture_default_str();
  add_gpt2_loop_options(sub, o);
  sub->add_option("--seed", o.seed, "seed of the adapters' init, the batches and dropout")
      ->check(unsigned_int())
      ->capture_default_str();
  sub->add_flag("--no-compare-full", f->no_compare_full,
                "skip the full fine-tuning with the same steps and batches that runs after the LoRA run (in "
                "OUT/full-finetune)");
  sub->add_option("--full-lr", o.full_lr, "peak learning rate of that full fine-tuning")
      ->check(positive_number())
      ->capture_default_str();
  add_device_options(sub, o.device, o.threads);
  add_json_flag(sub, o.json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    train::Gpt2LoraOptions o = f->o;
    o.progress = o.log = !f->quiet;
    o.compare_full = !f->no_compare_full;
    const train::Gpt2LoraResult r = train::run_gpt2_lora(o);
    if (!dist::is_leader()) return kExitOk;  // (mpirun) rank 0 reports
    if (o.json) {
      nlohmann::json runs = nlohmann::json::array({summary_json(r.lora)});
      if (r.full) runs.push_back(summary_json(*r.full));
      nlohmann::json j{
          {"steps", r.final_step},
          {"resumed_from_step", r.start_step},
          {"stopped_early", r.stopped_early},
          {"adapters", r.description},
          {"base_parameters", r.base_parameters},
          {"runs", runs},
          {"seconds", r.seconds},
          {"ranks", dist::size()},
          {"allreduce_seconds", r.allreduce_seconds},
          {"data", {{"train_tokens", r.train_tokens}, {"val_tokens", r.val_tokens}, {"documents", r.documents}}},
          {"outputs",
           {{"adapter", r.adapter_dir},
            {"metrics", r.metrics_path},
            {"loss_curve", r.loss_curve_path},
            {"full_finetune", r.full_dir}}}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("%s, %lld steps; validation perplexity before and after:\n", r.description.c_str(),
                  static_cast<long long>(r.final_step));
      std::printf("%-34s %12s %9s %10s %10s %9s %10s\n", "run", "trainable", "share", "ppl before", "ppl after",
                  "tokens/s", "AdamW MiB");
      print_row(r.lora, r.base_parameters);
      if (r.full) print_row(*r.full, r.base_parameters);
      std::printf("adapter in %s (PEFT format: adapter_model.safetensors + adapter_config.json)%s\n",
                  r.adapter_dir.c_str(), r.full ? (", full fine-tuning in " + r.full_dir).c_str() : "");
    }
    return kExitOk;
  };
}

}  // namespace lowrank::cli::gpt2
