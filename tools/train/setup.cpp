// setup_device(): device parsing and CUDA availability, the thread bound and count.
#include "tools/train/setup.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/threads.h"

namespace lowrank::train {

int threads_per_process() {
  int cores = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = static_cast<int>(std::thread::hardware_concurrency());
  int local_ranks = 1;
  if (const char* v = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) {
    try {
      local_ranks = std::max(1, std::stoi(v));
    } catch (const std::exception&) {
      local_ranks = 1;
    }
  }
  return std::clamp(cores / local_ranks, 1, kMaxThreads);
}

Device setup_device(const std::string& name, int threads, const std::string& command) {
  Device device = Device::cpu();
  try {
    device = Device::parse(name);
  } catch (const Error&) {
    usage_error("{}: --device must be cpu, cuda or cuda:N, got '{}'", command, name);
  }
  if (device.is_cuda())
    LR_CHECK(cuda_available(), "{}: --device {} asked for, but {}", command, name,
             cuda_device_count() == 0 ? "no CUDA device answers (or this build has no CUDA backend)"
                                      : "that device is not available");
  if (threads < 0 || threads > kMaxThreads)
    usage_error("{}: --threads must be from 0 (one per core) to {}, got {}", command, kMaxThreads, threads);
  set_num_threads(threads == 0 ? threads_per_process() : threads);
  return device;
}

}  // namespace lowrank::train
