// Philox 4x32-10 against the Random123 known-answer vectors, determinism of rand/randn/dropout,
// the counter layout shared with CUDA, and the distributions' first moments.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "core/rng.h"
#include "support/compare.h"
#include "support/errors.h"

using namespace lowrank;

TEST(Philox, Random123KnownAnswers) {
  // Random123's kat_vectors for philox4x32_10 (Salmon et al., SC'11).
  struct Kat {
    Philox4 ctr;
    uint32_t k0, k1;
    Philox4 want;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       0xffffffffu,
       0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       0xa4093822u,
       0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    Philox4 got = philox4x32_10_block(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], k.want.v[i]) << "lane " << i;
  }
  // Our 64-bit form is the block form with counter (lo, hi, 0, 0) and key (seed lo, seed hi).
  Philox4 zero = philox4x32_10(0, 0);
  EXPECT_EQ(zero.v[0], 0x6627e8d5u);
  EXPECT_EQ(zero.v[3], 0x9b00dbd8u);
  const uint64_t c = 0x0123456789abcdefull, s = 0xfedcba9876543210ull;
  Philox4 a = philox4x32_10(c, s),
          b = philox4x32_10_block({{0x89abcdefu, 0x01234567u, 0, 0}}, 0x76543210u, 0xfedcba98u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.v[i], b.v[i]);
}

TEST(Philox, TensorElementsFollowTheCounterLayout) {
  // Element i of rand(seed, offset) uses counter offset + i / 4, lane i % 4, top 24 bits.
  const uint64_t seed = 42, offset = 9;
  std::vector<double> u = rand({11}, seed, offset, DType::F64).to_vector<double>();
  for (uint64_t i = 0; i < 11; ++i) {
    Philox4 r = philox4x32_10(offset + i / 4, seed);
    EXPECT_EQ(u[i], static_cast<double>(r.v[i % 4] >> 8) / 16777216.0) << i;
  }
  // f32 and f64 draw the same (24-bit) numbers.
  std::vector<double> uf = rand({11}, seed, offset, DType::F32).to_vector<double>();
  EXPECT_EQ(uf, u);
  // Normals: element i is philox_normal(seed, offset, i), the definition the CUDA kernel shares.
  std::vector<double> z = randn({11}, seed, offset, DType::F64).to_vector<double>();
  for (uint64_t i = 0; i < 11; ++i) EXPECT_EQ(z[i], philox_normal(seed, offset, i)) << i;
  std::vector<double> zl = randn({70001}, 3, 5, DType::F64).to_vector<double>();  // a parallel fill
  for (uint64_t i : {0ull, 1ull, 2ull, 3ull, 4ull, 35000ull, 69999ull, 70000ull})
    EXPECT_EQ(zl[i], philox_normal(3, 5, i)) << i;
}

TEST(Random, SameSeedSameBitsOtherSeedOtherBits) {
  for (DType dt : {DType::F32, DType::F64}) {
    EXPECT_EQ(rand({33, 7}, 5, 0, dt).to_vector<double>(), rand({33, 7}, 5, 0, dt).to_vector<double>());
    EXPECT_EQ(randn({33, 7}, 5, 3, dt).to_vector<double>(), randn({33, 7}, 5, 3, dt).to_vector<double>());
    EXPECT_NE(rand({33, 7}, 5, 0, dt).to_vector<double>(), rand({33, 7}, 6, 0, dt).to_vector<double>());
    EXPECT_NE(randn({33, 7}, 5, 0, dt).to_vector<double>(), randn({33, 7}, 5, 1, dt).to_vector<double>());
    Tensor x = Tensor::ones({33, 7}, dt);
    EXPECT_EQ(dropout(x, 0.25, true, 8, 2).to_vector<double>(), dropout(x, 0.25, true, 8, 2).to_vector<double>());
  }
  // Offsets advance in counters (4 values each): offset 1 continues offset 0 four elements later.
  std::vector<double> a = rand({12}, 3, 0, DType::F64).to_vector<double>(),
                      b = rand({8}, 3, 1, DType::F64).to_vector<double>();
  EXPECT_EQ(std::vector<double>(a.begin() + 4, a.end()), b);
}

TEST(Random, Moments) {
  const int64_t n = 1 << 16;
  std::vector<double> u = rand({n}, 11, 0, DType::F64).to_vector<double>();
  std::vector<double> z = randn({n}, 12, 0, DType::F64).to_vector<double>();
  double mu = 0, mz = 0, vz = 0, lo = 1, hi = 0;
  for (int64_t i = 0; i < n; ++i) {
    mu += u[i] / n;
    mz += z[i] / n;
    lo = std::min(lo, u[i]);
    hi = std::max(hi, u[i]);
  }
  for (int64_t i = 0; i < n; ++i) vz += (z[i] - mz) * (z[i] - mz) / n;
  // 5 standard errors for 65536 draws: uniform mean sd 0.0011, normal mean sd 0.0039, variance sd 0.0055.
  EXPECT_NEAR(mu, 0.5, 0.006);
  EXPECT_NEAR(mz, 0.0, 0.02);
  EXPECT_NEAR(vz, 1.0, 0.03);
  EXPECT_GE(lo, 0.0);
  EXPECT_LT(hi, 1.0);
}
