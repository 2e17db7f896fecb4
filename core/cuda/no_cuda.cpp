// The CUDA runtime hooks of a build without CUDA: no devices, nothing cached.
#include "core/cuda/cuda_api.h"
#include "core/error.h"

namespace lowrank {

int cuda_runtime_device_count() {
  return 0;
}
std::string cuda_unavailable_reason(int) {
  return "this build has no CUDA backend (LOWRANK_CUDA=OFF)";
}
void cuda_require_device(int index) {
  LR_FAIL("CUDA device cuda:{} is not available: {}", index, cuda_unavailable_reason(index));
}
CudaMemoryStats cuda_memory_stats() {
  return {};
}
void cuda_reset_peak_memory() {}
void cuda_empty_cache() {}
void cuda_synchronize() {}
Allocator* cuda_caching_allocator() {
  return nullptr;
}

}  // namespace lowrank
