// setup_device(): device parsing and CUDA availability, the thread bound and count.
#include "tools/train/setup.h"

#include "core/threads.h"

namespace lowrank::train {

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
  set_num_threads(threads);
  return device;
}

}  // namespace lowrank::train
