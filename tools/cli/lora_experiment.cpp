// `lowrank lora-experiment`: the main job. Flags, then train::run_lora_experiment(), then the
// table on stdout (or one JSON object with --json).
#include <cstdio>
#include <memory>

#include "core/io/fashion_mnist.h"
#include "tools/cli/command.h"
#include "tools/cli/flags.h"
#include "tools/dist/dist.h"
#include "tools/train/lora_experiment.h"

namespace lowrank::cli {
namespace {

struct LoraExperimentFlags {
  train::LoraExperimentOptions o;
  bool quiet = false;
};

}  // namespace

RunFn register_lora_experiment(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "lora-experiment",
      "train (or load) the Fashion-MNIST MLP, scale a layer's kernel, freeze it, train LoRA adapters over ranks and "
      "seeds, compare with the compression variant and truncated SVD, and analyse the adapters' subspaces");
  auto f = std::make_shared<LoraExperimentFlags>();
  train::LoraExperimentOptions& o = f->o;
  o.data_dir = io::kFashionMnistDefaultDir;
  sub->add_option("--data", o.data_dir, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  sub->add_option("--out", o.out_dir, "output folder (created)")->capture_default_str();
  sub->add_flag("--overwrite", o.overwrite, "replace an experiment already in the output folder");
  sub->add_option("--base", o.base, "a trained model.safetensors or run folder (default: train one into OUT/base)");
  sub->add_option("--base-epochs", o.base_epochs, "epochs when training the base model")
      ->check(positive_int())
      ->capture_default_str();
  sub->add_option("--base-seed", o.base_seed, "seed of the base model's training")
      ->check(unsigned_int())
      ->capture_default_str();
  sub->add_option("--layer", o.layers,
                  "a Dense layer that gets scaled and adapted; repeat it (or give a comma-separated list) for several, "
                  "the first is the one the figures analyse")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--ranks", o.ranks, "adapter ranks")->delimiter(',')->check(positive_int())->capture_default_str();
  sub->add_option("--seeds", o.seeds, "adapter seeds")->delimiter(',')->check(unsigned_int())->capture_default_str();
  sub->add_option("--epochs", o.epochs, "adapter training epochs per run")
      ->check(positive_int())
      ->capture_default_str();
  sub->add_option("--base-scales,--base-scale", o.base_scales,
                  "factors on the frozen kernel, comma-separated: one set of LoRA runs, table and figures each "
                  "(e.g. 0.9,0.5,0)")
      ->delimiter(',')
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--alpha", o.alpha, "LoRA alpha (0: alpha = r, so scale = 1)")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_flag("--rslora", o.rslora, "scale the adapter by alpha / sqrt(r) instead of alpha / r (rsLoRA)");
  sub->add_option("--dropout", o.dropout, "dropout on the adapter's input while training")
      ->check(fraction_below_one())
      ->capture_default_str();
  sub->add_option("--lr", o.lr, "Adam learning rate for the adapters")->check(positive_number())->capture_default_str();
  sub->add_option("--batch", o.batch, "batch size")->check(positive_int())->capture_default_str();
  sub->add_option("--init", o.init, "adapter init: kaiming, gaussian or pissa")
      ->check(CLI::IsMember({"kaiming", "gaussian", "pissa"}))
      ->capture_default_str();
  add_switch(sub, "compression", o.compression, "also run the compression variant (base_scale 1 -> 0)");
  sub->add_option("--compress-schedule", o.compress_schedule, "linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  sub->add_option("--compress-fraction", o.compress_fraction, "share of the steps over which base_scale falls to 0")
      ->check(fraction_up_to_one())
      ->capture_default_str();
  add_switch(sub, "svd-baseline", o.svd_baseline, "also evaluate W's rank-r truncation");
  add_device_options(sub, o.device, o.threads);
  sub->add_option("--train-limit", o.train_limit, "use only the first N training samples (0: all)")
      ->check(non_negative_int());
  sub->add_option("--test-limit", o.test_limit, "use only the first N test samples (0: all)")
      ->check(non_negative_int());
  add_json_flag(sub, o.json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    train::LoraExperimentOptions o = f->o;
    o.log = !f->quiet;
    const train::LoraExperimentResult r = train::run_lora_experiment(o);
    if (!dist::is_leader()) return kExitOk;  // (mpirun) rank 0 reports
    std::fputs((o.json ? train::lora_experiment_json(o, r) : train::lora_experiment_table(o, r)).c_str(), stdout);
    return kExitOk;
  };
}

}  // namespace lowrank::cli
