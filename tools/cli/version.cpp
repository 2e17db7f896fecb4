// `lowrank version`: the build's version and backends (also a smoke test of the program).
#include <cstdio>

#include "core/device.h"
#include "tools/cli/command.h"
#include "tools/dist/dist.h"

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
    const std::string mpi = dist::backend_name();
    if (*json)
      std::printf(
          "{\"version\": \"0.1.0\", \"cuda_built\": %s, \"cuda_devices\": %d, \"mpi\": \"%s\", \"nccl_built\": %s, "
          "\"rank\": %d, \"ranks\": %d}\n",
          built_cuda ? "true" : "false", gpus, mpi.c_str(), dist::built_with_nccl() ? "true" : "false", dist::rank(),
          dist::size());
    else
      std::printf("lowrank 0.1.0 (CUDA %s, %d device(s); MPI %s%s, rank %d of %d)\n",
                  built_cuda ? "built" : "not built", gpus, mpi.c_str(), dist::built_with_nccl() ? ", NCCL built" : "",
                  dist::rank(), dist::size());
    return kExitOk;
  };
}

}  // namespace lowrank::cli
