// Builds without CUDA leave the CUDA slots empty: each use throws "no CUDA kernel for <op>".
#include "core/dispatch.h"

namespace lowrank {

void register_cuda_kernels(Backend&) {}

}  // namespace lowrank
