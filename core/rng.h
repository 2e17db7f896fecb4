// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"): a counter-based
// generator, so element i of a random tensor is a pure function of (seed, offset, i) on any device.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LR_HOST_DEVICE __host__ __device__
#else
#define LR_HOST_DEVICE
#endif

namespace lowrank {

struct Philox4 {
  uint32_t v[4];
};

LR_HOST_DEVICE inline void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds over a full 128-bit counter and 64-bit key (Random123's philox4x32_10; its published
// known-answer vectors test this form).
LR_HOST_DEVICE inline Philox4 philox4x32_10_block(Philox4 ctr, uint32_t k0, uint32_t k1) {
  uint32_t c0 = ctr.v[0], c1 = ctr.v[1], c2 = ctr.v[2], c3 = ctr.v[3];
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Our layout: counter words (lo, hi, 0, 0) of a 64-bit counter, key = the 64-bit seed.
LR_HOST_DEVICE inline Philox4 philox4x32_10(uint64_t counter, uint64_t seed) {
  return philox4x32_10_block({{static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u}},
                             static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform in [0, 1) with 24 bits (exact in f32 and f64 alike).
LR_HOST_DEVICE inline double philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  Philox4 r = philox4x32_10(offset + i / 4, seed);
  return static_cast<double>(r.v[i % 4] >> 8) * (1.0 / 16777216.0);
}

// Standard normal by Box-Muller on the lane pair (2j, 2j+1) of the element's counter.
LR_HOST_DEVICE inline double philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  Philox4 r = philox4x32_10(offset + i / 4, seed);
  unsigned lane = static_cast<unsigned>(i % 4), pair = lane & ~1u;
  double u1 = (static_cast<double>(r.v[pair] >> 8) + 1.0) * (1.0 / 16777216.0);  // (0, 1]
  double u2 = static_cast<double>(r.v[pair + 1] >> 8) * (1.0 / 16777216.0);
  double rad = std::sqrt(-2.0 * std::log(u1));
  double ang = 6.283185307179586 * u2;
  return (lane & 1u) ? rad * std::sin(ang) : rad * std::cos(ang);
}

}  // namespace lowrank
