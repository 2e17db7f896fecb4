// What the `lowrank gpt2 ...` subcommands share on the command line: the --vocab flag and the
// subcommand registrations that gpt2_common.cpp gathers under `lowrank gpt2`. Their set-up
// (tokenizer, model, device) is the training library's (tools/train/gpt2.h, setup.h).
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "tools/cli/command.h"
#include "tools/cli/flags.h"

namespace lowrank::cli::gpt2 {

// --vocab DIR (read by train::load_gpt2_tokenizer).
void add_vocab_option(CLI::App* sub, std::string& vocab);

// The batch, schedule, validation, checkpoint and log flags that `gpt2 train` and `gpt2 lora`
// read alike: --batch, --seq-len, --min-lr, --warmup, --grad-clip, --val-fraction, --val-every,
// --val-batches, --checkpoint-every, --log-every. `Options` is train::Gpt2TrainOptions or
// train::Gpt2LoraOptions (fields of those names).
template <class Options>
void add_gpt2_loop_options(CLI::App* sub, Options& o) {
  sub->add_option("--batch", o.batch, "sequences per step")->check(positive_int())->capture_default_str();
  sub->add_option("--seq-len", o.seq_len, "tokens per sequence (0: the model's context)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--min-lr", o.min_lr, "learning rate at the end of the cosine")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--warmup", o.warmup, "linear warmup steps (default: min(100, steps / 10))")
      ->check(non_negative_int());
  sub->add_option("--grad-clip", o.grad_clip, "clip the global gradient norm to this (0: off)")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--val-fraction", o.val_fraction, "share of documents held out for validation")
      ->check(fraction_below_one())
      ->capture_default_str();
  sub->add_option("--val-every", o.val_every, "steps between validation passes (0: at the start and end only)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--val-batches", o.val_batches, "validation batches per pass (0: the whole split)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--checkpoint-every", o.checkpoint_every, "steps between checkpoints (0: at the end only)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--log-every", o.log_every, "steps per line of training loss")
      ->check(positive_int())
      ->capture_default_str();
}

// Each subcommand file defines one of these; register_gpt2 (command.h) calls them.
RunFn register_gpt2_train(CLI::App& gpt2);
RunFn register_gpt2_generate(CLI::App& gpt2);
RunFn register_gpt2_eval(CLI::App& gpt2);
RunFn register_gpt2_tokenize(CLI::App& gpt2);
RunFn register_gpt2_merge(CLI::App& gpt2);
RunFn register_gpt2_lora(CLI::App& gpt2);
RunFn register_gpt2_classify(CLI::App& gpt2);
RunFn register_gpt2_lora_experiment(CLI::App& gpt2);

}  // namespace lowrank::cli::gpt2
