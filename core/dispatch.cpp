// The per-device kernel tables and the op names.
#include "core/dispatch.h"

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
  // A function-local static costs one load per call once initialised (every op calls this);
  // std::call_once cost a library call each time.
  static Backend* const tables = [] {
    static Backend t[kNumDeviceTypes];
    register_cpu_kernels(t[static_cast<int>(DeviceType::CPU)]);
    register_cuda_kernels(t[static_cast<int>(DeviceType::CUDA)]);
    return t;
  }();
  return tables[static_cast<int>(t)];
}

}  // namespace lowrank
