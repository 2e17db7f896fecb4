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
