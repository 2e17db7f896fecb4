// `lowrank version`: the build's version and backends (also a smoke test of the program).
#include <cstdio>

#include "core/device.h"
#include "tools/cli/command.h"

namespace lowrank::cli {

RunFn register_version(CLI::App& app) {
  auto* sub = app.add_subcommand("version", "print the version and the available backends");
  auto json = std::make_shared<bool>(false);
  sub->add_flag("--json", *json, "print one JSON object");
  return [json]() {
#ifdef LOWRANK_WITH_CUDA
    const bool built_cuda = true;
#else
    const bool built_cuda = false;
#endif
    int gpus = cuda_device_count();
    if (*json)
      std::printf("{\"version\": \"0.1.0\", \"cuda_built\": %s, \"cuda_devices\": %d}\n", built_cuda ? "true" : "false",
                  gpus);
    else
      std::printf("lowrank 0.1.0 (CUDA %s, %d device(s))\n", built_cuda ? "built" : "not built", gpus);
    return kExitOk;
  };
}

}  // namespace lowrank::cli
