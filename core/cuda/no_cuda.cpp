// The CUDA runtime hooks of a build without CUDA: no devices, nothing cached.
#include "core/cuda/cuda_api.h"

namespace lowrank {

int cuda_runtime_device_count() { return 0; }
CudaMemoryStats cuda_memory_stats() { return {}; }
void cuda_reset_peak_memory() {}
void cuda_empty_cache() {}
void cuda_synchronize() {}

}  // namespace lowrank
