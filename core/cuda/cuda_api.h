// What core/ asks of the CUDA runtime, without including CUDA headers. Defined in core/cuda/
// (runtime.cpp with CUDA, no_cuda.cpp without).
#pragma once
#include <cstddef>

namespace lowrank {

// 0 when the build has no CUDA or no GPU answers (never throws).
int cuda_runtime_device_count();

struct CudaMemoryStats {
  size_t bytes_in_use = 0;  // handed out to tensors now
  size_t peak_bytes = 0;    // most ever in use at once
  size_t bytes_cached = 0;  // held by the caching allocator, free for reuse
};
CudaMemoryStats cuda_memory_stats();
void cuda_reset_peak_memory();
// Returns cached, unused blocks to the driver.
void cuda_empty_cache();
void cuda_synchronize();

}  // namespace lowrank
