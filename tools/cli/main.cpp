// `lowrank`: one program, one subcommand per file. Catches every lowrank::Error at the top so
// a user sees one clear line and a non-zero exit, never a crash.
#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <thread>

#include "core/error.h"
#include "tools/cli/command.h"
#include "tools/dist/dist.h"
#include "tools/train/setup.h"

namespace {

// One line on stderr and the exit code. Under mpirun (several ranks): a usage error is the same on
// every rank, so rank 0 alone says it and every rank returns; any other error may be one rank's
// own, so the rank says it (after a pause on ranks other than 0, so that an error every rank meets
// is reported once, by rank 0, whose abort ends the others) and ends every rank: none may be left
// waiting in a collective for it.
int fail(const char* what, int code, bool usage) {
  namespace dist = lowrank::dist;
  if (!dist::distributed()) {
    std::fprintf(stderr, "lowrank: error: %s\n", what);
    return code;
  }
  if (usage) {
    if (dist::is_leader()) std::fprintf(stderr, "lowrank: error: %s\n", what);
    return code;
  }
  if (!dist::is_leader()) std::this_thread::sleep_for(std::chrono::seconds(1));
  std::fprintf(stderr, "lowrank: error: %s%s\n",
               dist::is_leader() ? "" : ("(rank " + std::to_string(dist::rank()) + ") ").c_str(), what);
  dist::abort(code);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lowrank::cli;
  lowrank::dist::World world(&argc, &argv);  // MPI under mpirun; nothing otherwise
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
    if (!lowrank::dist::is_leader()) return e.get_exit_code() == 0 ? kExitOk : kExitUsage;  // rank 0 says it
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  try {
    for (auto& [sub, fn] : runs)
      if (sub->parsed()) return fn();
    return kExitUsage;
  } catch (const lowrank::train::UsageError& e) {
    return fail(e.what(), kExitUsage, true);
  } catch (const lowrank::Error& e) {
    return fail(e.what(), kExitFailure, false);
  } catch (const std::exception& e) {
    return fail(e.what(), kExitFailure, false);
  }
}
