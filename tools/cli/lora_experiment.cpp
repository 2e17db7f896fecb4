// `lowrank lora-experiment`: the main job. Flags, then run_lora_experiment(), then the table on
// stdout (or one JSON object with --json).
#include <cstdio>
#include <memory>

#include "core/device.h"
#include "core/io/fashion_mnist.h"
#include "tools/cli/command.h"
#include "tools/cli/lora_experiment.h"

namespace lowrank::cli {

RunFn register_lora_experiment(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "lora-experiment",
      "train (or load) the Fashion-MNIST MLP, scale a layer's kernel, freeze it, train LoRA adapters over ranks and "
      "seeds, compare with the compression variant and truncated SVD, and analyse the adapters' subspaces");
  auto o = std::make_shared<LoraExperimentOptions>();
  o->data_dir = io::kFashionMnistDefaultDir;
  sub->add_option("--data", o->data_dir, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  sub->add_option("--out", o->out_dir, "output folder (created)")->capture_default_str();
  sub->add_option("--base", o->base, "a trained model.safetensors or run folder (default: train one into OUT/base)");
  sub->add_option("--base-epochs", o->base_epochs, "epochs when training the base model")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--base-seed", o->base_seed, "seed of the base model's training")->capture_default_str();
  sub->add_option("--layer", o->layer, "the Dense layer that gets scaled and adapted")->capture_default_str();
  sub->add_option("--ranks", o->ranks, "adapter ranks")->delimiter(',')->capture_default_str();
  sub->add_option("--seeds", o->seeds, "adapter seeds")->delimiter(',')->capture_default_str();
  sub->add_option("--epochs", o->epochs, "adapter training epochs per run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--base-scale", o->base_scale, "factor on the frozen kernel")->capture_default_str();
  sub->add_option("--alpha", o->alpha, "LoRA alpha (0: alpha = r, so scale = 1)")->capture_default_str();
  sub->add_option("--lr", o->lr, "Adam learning rate for the adapters")->capture_default_str();
  sub->add_option("--batch", o->batch, "batch size")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--init", o->init, "adapter init: kaiming, gaussian or pissa")
      ->check(CLI::IsMember({"kaiming", "gaussian", "pissa"}))
      ->capture_default_str();
  sub->add_flag("--compression,!--no-compression", o->compression,
                "also run the compression variant (base_scale 1 -> 0)")
      ->capture_default_str();
  sub->add_option("--compress-schedule", o->compress_schedule, "linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  sub->add_option("--compress-fraction", o->compress_fraction, "share of the steps over which base_scale falls to 0")
      ->capture_default_str();
  sub->add_flag("--svd-baseline,!--no-svd-baseline", o->svd_baseline, "also evaluate W's rank-r truncation")
      ->capture_default_str();
  sub->add_option("--device", o->device, "cpu or cuda[:N]")->capture_default_str();
  sub->add_option("--threads", o->threads, "CPU threads (0: one per core)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_option("--train-limit", o->train_limit, "use only the first N training samples (0: all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--test-limit", o->test_limit, "use only the first N test samples (0: all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--json", o->json, "print one JSON object (the summary) instead of the table");
  sub->add_flag(
      "--quiet", [o](int64_t) { o->log = false; }, "no progress or per-run lines on stderr");
  return [o]() {
    LoraExperimentResult r = run_lora_experiment(*o);
    if (o->json)
      std::fputs(lora_experiment_json(*o, r).c_str(), stdout);
    else
      std::fputs(lora_experiment_table(*o, r).c_str(), stdout);
    return kExitOk;
  };
}

}  // namespace lowrank::cli
