// `lowrank gpt2 lora-experiment`: LoRA as compression on GPT-2. Flags, then
// train::run_gpt2_experiment(), then the table on stdout (or one JSON object with --json).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>

#include "tools/cli/gpt2_common.h"
#include "tools/dist/dist.h"
#include "tools/train/gpt2_experiment.h"

namespace lowrank::cli::gpt2 {
namespace {

struct ExperimentFlags {
  train::Gpt2ExperimentOptions o;
  bool quiet = false;
};

// The command as the shell received it (/proc/self/cmdline), quoted where needed, for results.json.
std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string out, arg;
  auto flush = [&]() {
    const bool plain = !arg.empty() && arg.find_first_not_of(
                                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789-_./,=:+@%") == std::string::npos;
    std::string q = arg;
    if (!plain) {
      q = "'";
      for (char ch : arg) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      q += "'";
    }
    out += (out.empty() ? "" : " ") + (out.empty() ? std::string("lowrank") : q);
    arg.clear();
  };
  for (char ch : raw)
    if (ch == '\0')
      flush();
    else
      arg += ch;
  if (!arg.empty()) flush();
  return out;
}

}  // namespace

RunFn register_gpt2_lora_experiment(CLI::App& gpt2) {
  auto* sub = gpt2.add_subcommand(
      "lora-experiment",
      "LoRA as compression on GPT-2: scale the targeted kernels, train LoRA over ranks and seeds, move the base "
      "scale to 0 (compress, PiSSA), compare with the truncated SVD, and analyse the adapters' subspaces");
  auto f = std::make_shared<ExperimentFlags>();
  train::Gpt2ExperimentOptions& o = f->o;
  sub->add_option("--base", o.base,
                  "the trained base: a `lowrank gpt2 train` run folder or a Hugging Face folder (model.safetensors + "
                  "config.json); make one with `lowrank gpt2 train`")
      ->capture_default_str();
  sub->add_option("--data", o.data, "text files or folders (default: the text the base was trained on, same split)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--out", o.out, "output folder")->capture_default_str();
  sub->add_flag("--overwrite", o.overwrite, "replace an experiment already in the output folder");
  add_vocab_option(sub, o.vocab);
  sub->add_option("--targets", o.targets, "layers that get adapters, of query,key,value,out,fc,proj")
      ->capture_default_str();
  sub->add_option("--layers", o.layers, "blocks that get adapters, e.g. 0,1 or 0-3 (default: all)");
  sub->add_option("--ranks", o.ranks, "adapter ranks")->delimiter(',')->check(positive_int())->capture_default_str();
  sub->add_option("--seeds", o.seeds, "adapter seeds of the lora variant (the others use the first)")
      ->delimiter(',')
      ->check(unsigned_int())
      ->capture_default_str();
  sub->add_option("--base-scale", o.base_scale, "factor on the frozen kernels for scaled and lora")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_flag("--quick", o.quick,
                "a first look: ranks 1,8 (unless --ranks), one seed, " + std::to_string(train::kQuickSteps) +
                    " steps (unless --steps)");
  sub->add_option("--steps", o.steps, "optimizer steps per adapter")->check(positive_int())->capture_default_str();
  sub->add_option("--batch", o.batch, "windows per step")->check(positive_int())->capture_default_str();
  sub->add_option("--seq-len", o.seq_len, "tokens per window")->check(positive_int())->capture_default_str();
  sub->add_option("--lr", o.lr, "AdamW peak learning rate")->check(positive_number())->capture_default_str();
  sub->add_option("--min-lr", o.min_lr, "learning rate at the end of the cosine")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--warmup", o.warmup, "linear warmup steps")->check(non_negative_int())->capture_default_str();
  sub->add_option("--alpha", o.alpha, "LoRA alpha (0: alpha = r, scale 1)")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--compress-schedule", o.compress_schedule, "compress and pissa: linear or cosine")
      ->check(CLI::IsMember({"linear", "cosine"}))
      ->capture_default_str();
  sub->add_option("--compress-fraction", o.compress_fraction, "share of the steps over which base_scale falls to 0")
      ->check(fraction_up_to_one())
      ->capture_default_str();
  sub->add_option("--val-fraction", o.val_fraction, "with --data: share of documents held out (default: the base's)");
  sub->add_option("--val-windows", o.val_windows, "validation windows (0: the whole split)")
      ->check(non_negative_int())
      ->capture_default_str();
  add_device_options(sub, o.device, o.threads);
  add_json_flag(sub, o.json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    train::Gpt2ExperimentOptions o = f->o;
    o.log = !f->quiet;
    o.command_line = command_line();
    const train::Gpt2ExperimentResult r = train::run_gpt2_experiment(o);
    if (!dist::is_leader()) return kExitOk;  // (mpirun) rank 0 reports
    std::fputs(
        (o.json ? train::gpt2_experiment_json(r.options, r) : train::gpt2_experiment_table(r.options, r)).c_str(),
        stdout);
    return kExitOk;
  };
}

}  // namespace lowrank::cli::gpt2
