// `lowrank`: one program, one subcommand per file. Catches every lowrank::Error at the top so
// a user sees one clear line and a non-zero exit, never a crash.
#include <cstdio>
#include <exception>
#include <map>

#include "core/error.h"
#include "tools/cli/command.h"
#include "tools/train/setup.h"

int main(int argc, char** argv) {
  using namespace lowrank::cli;
  CLI::App app{"lowrank: tensors, autodiff and LoRA experiments"};
  app.require_subcommand(1);
  std::map<CLI::App*, RunFn> runs;
  auto add = [&](RunFn (*reg)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    RunFn fn = reg(app);
    auto subs = app.get_subcommands({});
    if (subs.size() > before) runs[subs.back()] = std::move(fn);
  };
  add(register_version);
  add(register_train_mlp);
  add(register_similarity);
  add(register_lora_experiment);
  add(register_gpt2);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  try {
    for (auto& [sub, fn] : runs)
      if (sub->parsed()) return fn();
    return kExitUsage;
  } catch (const lowrank::train::UsageError& e) {
    std::fprintf(stderr, "lowrank: error: %s\n", e.what());
    return kExitUsage;
  } catch (const lowrank::Error& e) {
    std::fprintf(stderr, "lowrank: error: %s\n", e.what());
    return kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lowrank: error: %s\n", e.what());
    return kExitFailure;
  }
}
