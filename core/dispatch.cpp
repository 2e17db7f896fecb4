// The per-device kernel tables and the op names.
#include "core/dispatch.h"

#include <mutex>

namespace lowrank {

const char* op_name(OpKind k) {
  static const char* const kNames[] = {
#define LOWRANK_X(name) #name,
      LOWRANK_OP_LIST(LOWRANK_X)
#undef LOWRANK_X
  };
  auto i = static_cast<size_t>(k);
  return i < static_cast<size_t>(OpKind::Count) ? kNames[i] : "?";
}

Backend& backend_table(DeviceType t) {
  static Backend tables[kNumDeviceTypes];
  static std::once_flag once;
  std::call_once(once, [] {
    register_cpu_kernels(tables[static_cast<int>(DeviceType::CPU)]);
    register_cuda_kernels(tables[static_cast<int>(DeviceType::CUDA)]);
  });
  return tables[static_cast<int>(t)];
}

}  // namespace lowrank
