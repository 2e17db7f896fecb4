// CPU Philox random fill; the CUDA twin draws the same numbers (core/rng.h).
#include "core/rng.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"

namespace lowrank::cpu {

void random(RandomKind kind, uint64_t seed, uint64_t offset, const Tensor& out) {
  const int64_t n = out.numel();
  auto draw = [&](int64_t i) {
    return kind == RandomKind::Uniform ? philox_uniform(seed, offset, static_cast<uint64_t>(i))
                                       : philox_normal(seed, offset, static_cast<uint64_t>(i));
  };
  if (out.dtype() == DType::F32) {
    float* p = static_cast<float*>(out.raw_data());
    parallel_for(n, n >= 2 * kParallelMinElems, [&](int64_t i) { p[i] = static_cast<float>(draw(i)); });
  } else {
    double* p = static_cast<double*>(out.raw_data());
    parallel_for(n, n >= 2 * kParallelMinElems, [&](int64_t i) { p[i] = draw(i); });
  }
}

}  // namespace lowrank::cpu
