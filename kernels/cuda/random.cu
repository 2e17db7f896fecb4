// CUDA Philox random fill: element i draws exactly what the CPU twin (kernels/cpu/random.cpp)
// draws, through the same host/device functions of core/rng.h.
#include "core/rng.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

// ---- kernels

template <class T, RandomKind Kind>
__global__ void random_kernel(uint64_t seed, uint64_t offset, T* out, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    const auto u = static_cast<uint64_t>(i);
    if constexpr (Kind == RandomKind::Uniform)
      out[i] = static_cast<T>(philox_uniform(seed, offset, u));
    else
      out[i] = static_cast<T>(philox_normal(seed, offset, u));
  }
}

}  // namespace

// ---- launchers

void random(RandomKind kind, uint64_t seed, uint64_t offset, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const int dev = out.device().index;
  cudaStream_t s = stream(out.device());
  visit_float(out.dtype(), [&](auto t) {
    using T = decltype(t);
    T* p = static_cast<T*>(out.raw_data());
    if (kind == RandomKind::Uniform)
      random_kernel<T, RandomKind::Uniform><<<grid_for(n, dev), kThreads, 0, s>>>(seed, offset, p, n);
    else
      random_kernel<T, RandomKind::Normal><<<grid_for(n, dev), kThreads, 0, s>>>(seed, offset, p, n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lowrank::cuda
