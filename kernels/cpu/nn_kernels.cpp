// Registers the CPU kernels of the nn-op families. Each family file adds its slots here.
#include "kernels/cpu/cpu_kernels.h"

namespace lowrank::cpu {

void register_nn_kernels(Backend& t) { (void)t; }

}  // namespace lowrank::cpu
