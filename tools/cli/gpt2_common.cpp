// `lowrank gpt2`: gathers the train/generate/eval/tokenize subcommands and the flag they share.
#include "tools/cli/gpt2_common.h"

#include <utility>
#include <vector>

#include "models/gpt2/tokenizer.h"

namespace lowrank::cli {
namespace gpt2 {

void add_vocab_option(CLI::App* sub, std::string& vocab) {
  sub->add_option(
      "--vocab", vocab,
      "tokenizer folder (default: $LOWRANK_GPT2_VOCAB, else " + models::gpt2::Tokenizer::default_dir() + ")");
}

}  // namespace gpt2

RunFn register_gpt2(CLI::App& app) {
  auto* sub = app.add_subcommand("gpt2",
                                 "GPT-2: train, generate, evaluate perplexity, tokenize, LoRA fine-tuning and merging, "
                                 "classify, the LoRA-as-compression experiment");
  sub->require_subcommand(1);
  // A flag given twice takes its last value, so scripts can append overrides to a fixed command.
  sub->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::vector<std::pair<CLI::App*, RunFn>> runs;
  for (auto reg : {gpt2::register_gpt2_train, gpt2::register_gpt2_generate, gpt2::register_gpt2_eval,
                   gpt2::register_gpt2_tokenize, gpt2::register_gpt2_merge, gpt2::register_gpt2_lora,
                   gpt2::register_gpt2_classify, gpt2::register_gpt2_lora_experiment}) {
    RunFn fn = reg(*sub);
    runs.emplace_back(sub->get_subcommands({}).back(), std::move(fn));
  }
  return [runs]() {
    for (const auto& [app, fn] : runs)
      if (app->parsed()) return fn();
    return kExitUsage;
  };
}

}  // namespace lowrank::cli
