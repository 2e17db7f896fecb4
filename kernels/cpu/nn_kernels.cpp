// Registers the CPU kernels of the nn-op families. Each family file adds its slots here.
#include "kernels/cpu/cpu_kernels.h"

namespace lowrank::cpu {

void register_nn_kernels(Backend& t) {
  t.lora_forward = lora_forward;
  t.lora_backward = lora_backward;
}

}  // namespace lowrank::cpu
