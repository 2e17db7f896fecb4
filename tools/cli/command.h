// The subcommand registry of the `lowrank` program: each subcommand file adds itself to the
// CLI11 app and returns the function that runs it once its flags are parsed.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace lowrank::cli {

// Exit codes (docs/design.md): 0 success, 1 runtime failure (bad file, NaN), 2 bad usage.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

using RunFn = std::function<int()>;

// Each subcommand file defines one of these; main.cpp calls them all (add yours to both lists).
RunFn register_version(CLI::App& app);
RunFn register_train_mlp(CLI::App& app);
RunFn register_similarity(CLI::App& app);
RunFn register_lora_experiment(CLI::App& app);
RunFn register_gpt2(CLI::App& app);  // `lowrank gpt2 train|generate|eval|tokenize` (gpt2_common.cpp)

}  // namespace lowrank::cli
