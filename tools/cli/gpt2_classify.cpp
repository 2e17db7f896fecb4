// `lowrank gpt2 classify`: flags and the summary (table or --json); the runs are train::run_classify.
#include <cstdio>

#include "tools/cli/gpt2_common.h"
#include "tools/train/classify.h"

namespace lowrank::cli::gpt2 {

namespace {

struct ClassifyFlags {
  train::ClassifyOptions o;
  bool quiet = false, json = false;
};

}  // namespace

RunFn register_gpt2_classify(CLI::App& gpt2) {
  auto* sub = gpt2.add_subcommand(
      "classify",
      "sequence classification with a GPT-2 (default: eight fortunes categories, LoRA on query/value of runs/gpt2) "
      "beside a bag-of-words baseline, the majority class and chance");
  auto f = std::make_shared<ClassifyFlags>();
  train::ClassifyOptions& o = f->o;
  sub->add_option("--model", o.model,
                  "base GPT-2: a run folder of `lowrank gpt2 train`, a Hugging Face folder or a .safetensors file "
                  "(default: runs/gpt2)");
  sub->add_option("--data", o.data,
                  "a folder whose text files are the classes (fortune files: documents between '%' lines), or a file "
                  "of label<TAB>text lines (default: /usr/share/games/fortunes)");
  sub->add_option("--classes", o.classes,
                  "classes to keep, comma-separated (default: computers, politics, science, songs-poems, men-women, "
                  "work, art, definitions for the fortunes; every class otherwise)")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--max-len", o.max_len, "tokens per document; longer ones are cut")
      ->check(positive_int())
      ->capture_default_str();
  sub->add_option("--mode", o.modes,
                  "comma-separated: lora (adapters + head), full (every weight), probe (head on frozen features)")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->default_str("lora");
  sub->add_option("--targets", o.targets, "LoRA layers in every block: query, key, value, out, fc, proj")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->default_str("query,value");
  sub->add_option("--rank", o.rank, "LoRA rank r")->check(positive_int())->capture_default_str();
  sub->add_option("--alpha", o.alpha, "LoRA alpha (scale alpha / r)")->check(positive_number())->capture_default_str();
  sub->add_option("--epochs", o.epochs, "training epochs of lora and full")
      ->check(positive_int())
      ->capture_default_str();
  sub->add_option("--probe-epochs", o.probe_epochs, "epochs of the probe and the bag-of-words baseline")
      ->check(positive_int())
      ->capture_default_str();
  sub->add_option("--steps", o.steps, "optimizer steps per mode instead of epochs (0: from the epochs)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--batch", o.batch, "documents per step")->check(positive_int())->capture_default_str();
  sub->add_option("--lr", o.lr, "peak learning rate (default: lora 1e-3, full 1e-4, probe 1e-2); warmup + cosine")
      ->check(positive_number());
  sub->add_option("--weight-decay", o.weight_decay, "AdamW decay on matrices")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--grad-clip", o.grad_clip, "clip the global gradient norm to this (0: off)")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--seed", o.seed, "seed of the head, the adapters and the batches")
      ->check(unsigned_int())
      ->capture_default_str();
  auto* out =
      sub->add_option("--out", o.out, std::string("output folder (default: ") + train::kClassifyDefaultOut + ")");
  auto* overwrite = sub->add_flag("--overwrite", o.overwrite, "replace the runs already in the output folder");
  sub->add_option("--resume", o.resume,
                  "continue a stopped run in its output folder: each mode goes on from its newest checkpoint (the "
                  "same result, bit for bit, at the same thread count); give the run's other flags again")
      ->excludes(out)
      ->excludes(overwrite);
  sub->add_option("--stop-at", o.stop_at,
                  "stop (with a checkpoint) when a mode reaches this step; its schedule still spans all steps, and "
                  "--resume goes on from there")
      ->check(non_negative_int());
  sub->add_option("--max-time", o.max_time,
                  "the whole command ends within this many seconds of its start (0: no limit): training stops early, "
                  "with a checkpoint, when another step, the last validation and checkpoint and the test scoring "
                  "(timed as they happen) would not fit; --resume goes on from there")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--checkpoint-every", o.checkpoint_every, "steps between checkpoints of a mode (0: at its end only)")
      ->check(non_negative_int())
      ->capture_default_str();
  add_vocab_option(sub, o.vocab);
  add_device_options(sub, o.device, o.threads);
  add_json_flag(sub, f->json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    train::ClassifyOptions o = f->o;
    o.progress = o.log = !f->quiet;
    const train::ClassifyResult r = train::run_classify(o);
    if (r.stopped_early) {
      const train::ClassifyModeResult& m = r.modes.back();
      if (f->json)
        std::printf("%s\n", train::classify_json(o, r).c_str());
      else
        std::printf("stopped: %s at step %lld of %lld; go on with the same flags and --resume %s\n", m.mode.c_str(),
                    static_cast<long long>(m.final_step), static_cast<long long>(m.steps), r.out_dir.c_str());
      return kExitOk;
    }
    if (f->json) {
      std::printf("%s\n", train::classify_json(o, r).c_str());
    } else {
      std::printf("%s\nresults in %s (%.0f s)\n", train::classify_table(r).c_str(), r.out_dir.c_str(), r.seconds);
    }
    return kExitOk;
  };
}

}  // namespace lowrank::cli::gpt2
