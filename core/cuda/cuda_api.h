// What core/ asks of the CUDA runtime, without including CUDA headers. Defined in core/cuda/
// (runtime.cpp and allocator.cpp with CUDA, no_cuda.cpp without).
#pragma once
#include <cstddef>
#include <string>

namespace lowrank {

class Allocator;

// 0 when the build has no CUDA or no GPU answers (never throws, prints nothing).
int cuda_runtime_device_count();
// Why CUDA device `index` cannot be used ("" when it can): the runtime's own words, e.g.
// "no CUDA-capable device is detected", or "this build has no CUDA backend".
std::string cuda_unavailable_reason(int index = 0);
// Throws lowrank::Error "CUDA device cuda:<index> is not available: <reason>" unless it answers.
void cuda_require_device(int index);

struct CudaMemoryStats {
  size_t bytes_in_use = 0;  // handed out to tensors now
  size_t peak_bytes = 0;    // most ever in use at once
  size_t bytes_cached = 0;  // held by the caching allocator, free for reuse
};
// Summed over all devices.
CudaMemoryStats cuda_memory_stats();
void cuda_reset_peak_memory();
// Returns cached, unused blocks to the driver.
void cuda_empty_cache();
// Waits for the work queued on every device's stream.
void cuda_synchronize();

// The caching allocator of device memory (nullptr without CUDA). register_cuda_kernels()
// installs it with set_allocator(DeviceType::CUDA, ...).
Allocator* cuda_caching_allocator();

}  // namespace lowrank
