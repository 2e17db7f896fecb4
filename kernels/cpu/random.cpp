// CPU Philox random fill; the CUDA twin draws the same numbers (core/rng.h). One Philox block
// gives four consecutive elements, so each block is computed once, not once per element.
#include <cmath>

#include "core/rng.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"

namespace lowrank::cpu {
namespace {

constexpr double k2Pow24Inv = 1.0 / 16777216.0;

// Elements [4 c, 4 c + 4) ∩ [0, n) from counter offset + c; the same formulas as
// philox_uniform / philox_normal, so every element equals its per-element definition.
template <class T>
void fill_block(RandomKind kind, uint64_t seed, uint64_t offset, uint64_t c, int64_t n, T* p) {
  const Philox4 r = philox4x32_10(offset + c, seed);
  const int64_t base = static_cast<int64_t>(c) * 4;
  double v[4];
  if (kind == RandomKind::Uniform) {
    for (int l = 0; l < 4; ++l) v[l] = static_cast<double>(r.v[l] >> 8) * k2Pow24Inv;
  } else {
    for (int pair = 0; pair < 4; pair += 2) {
      const double u1 = (static_cast<double>(r.v[pair] >> 8) + 1.0) * k2Pow24Inv;
      const double u2 = static_cast<double>(r.v[pair + 1] >> 8) * k2Pow24Inv;
      const double rad = std::sqrt(-2.0 * std::log(u1)), ang = 6.283185307179586 * u2;
      v[pair] = rad * std::cos(ang);
      v[pair + 1] = rad * std::sin(ang);
    }
  }
  for (int l = 0; l < 4 && base + l < n; ++l) p[base + l] = static_cast<T>(v[l]);
}

template <class T>
void fill(RandomKind kind, uint64_t seed, uint64_t offset, int64_t n, T* p) {
  const int64_t blocks = (n + 3) / 4;
  parallel_for(blocks, n >= kParallelMinElems,
               [&](int64_t c) { fill_block(kind, seed, offset, static_cast<uint64_t>(c), n, p); });
}

}  // namespace

void random(RandomKind kind, uint64_t seed, uint64_t offset, const Tensor& out) {
  const int64_t n = out.numel();
  if (out.dtype() == DType::F32)
    fill(kind, seed, offset, n, static_cast<float*>(out.raw_data()));
  else
    fill(kind, seed, offset, n, static_cast<double*>(out.raw_data()));
}

}  // namespace lowrank::cpu
