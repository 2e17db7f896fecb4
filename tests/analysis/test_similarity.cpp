// Subspace similarity φ: hand-worked values, identical / orthogonal subspaces, symmetry, range,
// the prefix-sum grid against direct per-entry products, adapter bases and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "analysis/similarity.h"
#include "analysis/svd.h"
#include "core/ops.h"
#include "support/errors.h"

using namespace lowrank;
using namespace lowrank::analysis;

namespace {

// φ sums squares of dot products of unit vectors computed in f64; 1e-12 is far above rounding.
constexpr double kTolF64 = 1e-12;
// With f32 bases each dot product carries ~1e-7 relative error.
constexpr double kTolF32 = 1e-5;

// An orthonormal [d, r] basis: the left singular vectors of a random matrix.
Tensor random_basis(int64_t d, int64_t r, uint64_t seed, DType dt = DType::F64) {
  return svd(randn({d, r}, seed, 0, dt)).u;
}

TEST(Similarity, HandWorkedTwoDimensions) {
  const double t = 0.3;
  Tensor u1 = Tensor::from_vector(std::vector<double>{1, 0}, {2, 1});
  Tensor u2 = Tensor::from_vector(std::vector<double>{std::cos(t), std::sin(t)}, {2, 1});
  EXPECT_NEAR(subspace_similarity(u1, u2, 1, 1), std::cos(t) * std::cos(t), kTolF64);
  // Full bases of R^2 always span the same space: φ(2, 2) = 1, φ(1, 2) = 1 too (e1 lies in it).
  Tensor f1 = Tensor::from_vector(std::vector<double>{1, 0, 0, 1}, {2, 2});
  Tensor f2 = Tensor::from_vector(std::vector<double>{std::cos(t), -std::sin(t), std::sin(t), std::cos(t)}, {2, 2});
  SimilarityGrid g = subspace_similarity_grid(f1, f2);
  EXPECT_NEAR(g.at(1, 1), std::cos(t) * std::cos(t), kTolF64);
  EXPECT_NEAR(g.at(2, 1), 1.0, kTolF64);
  EXPECT_NEAR(g.at(1, 2), 1.0, kTolF64);
  EXPECT_NEAR(g.at(2, 2), 1.0, kTolF64);
}

TEST(Similarity, IdenticalSubspacesGiveOne) {
  Tensor u = random_basis(20, 6, 1);
  SimilarityGrid g = subspace_similarity_grid(u, u);
  ASSERT_EQ(g.rows, 6);
  ASSERT_EQ(g.cols, 6);
  for (double v : g.values) EXPECT_NEAR(v, 1.0, kTolF64);
  // A rotated basis of the same space: only the full spans are guaranteed to coincide.
  Tensor q = random_basis(6, 6, 2);
  SimilarityGrid h = subspace_similarity_grid(u, matmul(u, q));
  EXPECT_NEAR(h.at(6, 6), 1.0, kTolF64);
  EXPECT_LT(h.at(1, 1), 1.0 - 1e-6);
}

TEST(Similarity, OrthogonalSubspacesGiveZero) {
  Tensor u = random_basis(12, 6, 3);
  Tensor u1 = u.narrow(1, 0, 3), u2 = u.narrow(1, 3, 3);
  SimilarityGrid g = subspace_similarity_grid(u1, u2);
  for (double v : g.values) EXPECT_NEAR(v, 0.0, kTolF64);
}

TEST(Similarity, SymmetricAndInUnitRange) {
  Tensor u1 = random_basis(16, 5, 4), u2 = random_basis(16, 7, 5);
  SimilarityGrid a = subspace_similarity_grid(u1, u2), b = subspace_similarity_grid(u2, u1);
  ASSERT_EQ(a.rows, 5);
  ASSERT_EQ(a.cols, 7);
  ASSERT_EQ(b.rows, 7);
  for (int64_t i = 1; i <= 5; ++i)
    for (int64_t j = 1; j <= 7; ++j) {
      EXPECT_NEAR(a.at(i, j), b.at(j, i), kTolF64);
      EXPECT_GE(a.at(i, j), 0.0);
      EXPECT_LE(a.at(i, j), 1.0 + kTolF64);
    }
}

TEST(Similarity, GridEqualsDirectEntries) {
  Tensor u1 = random_basis(10, 4, 6), u2 = random_basis(10, 6, 7);
  SimilarityGrid g = subspace_similarity_grid(u1, u2);
  for (int64_t i = 1; i <= 4; ++i)
    for (int64_t j = 1; j <= 6; ++j)
      EXPECT_NEAR(g.at(i, j), subspace_similarity(u1, u2, i, j), kTolF64) << i << "," << j;
  // A sub-grid is the top-left block of the full one.
  SimilarityGrid s = subspace_similarity_grid(u1, u2, 2, 3);
  ASSERT_EQ(s.values.size(), 6u);
  for (int64_t i = 1; i <= 2; ++i)
    for (int64_t j = 1; j <= 3; ++j) EXPECT_EQ(s.at(i, j), g.at(i, j));
}

TEST(Similarity, F32AgreesWithF64) {
  Tensor u1 = random_basis(24, 5, 8), u2 = random_basis(24, 8, 9);
  SimilarityGrid g64 = subspace_similarity_grid(u1, u2);
  SimilarityGrid g32 = subspace_similarity_grid(u1.to(DType::F32), u2.to(DType::F32));
  for (size_t k = 0; k < g64.values.size(); ++k) EXPECT_NEAR(g32.values[k], g64.values[k], kTolF32);
}

TEST(Similarity, AdaptersSharingASubspace) {
  // A2 = M·A1 has A1's row space; B2 = B1·M has B1's column space (M invertible).
  Tensor a1 = randn({4, 30}, 10, 0, DType::F64), m = randn({4, 4}, 11, 0, DType::F64);
  Tensor a2 = matmul(m, a1);
  EXPECT_NEAR(adapter_similarity(a1, a2).at(4, 4), 1.0, 1e-10);
  Tensor b1 = randn({25, 4}, 12, 0, DType::F64);
  EXPECT_NEAR(adapter_similarity(b1, matmul(b1, m), AdapterSide::LeftOfB).at(4, 4), 1.0, 1e-10);
  // Different ranks: r1 x r2 grid, and unrelated random adapters are far from 1 at (1, 1).
  Tensor a3 = randn({7, 30}, 13, 0, DType::F64);
  SimilarityGrid g = adapter_similarity(a1, a3);
  EXPECT_EQ(g.rows, 4);
  EXPECT_EQ(g.cols, 7);
  EXPECT_LT(g.at(1, 1), 0.9);
  // The basis of A is its right singular vectors: [in, r], orthonormal.
  Tensor v = singular_basis(a3, AdapterSide::RightOfA);
  EXPECT_EQ(v.shape(), (Shape{30, 7}));
  Tensor u = singular_basis(b1, AdapterSide::LeftOfB);
  EXPECT_EQ(u.shape(), (Shape{25, 4}));
}

TEST(Similarity, GridSerialisesToJson) {
  Tensor u1 = random_basis(6, 2, 14), u2 = random_basis(6, 3, 15);
  SimilarityGrid g = subspace_similarity_grid(u1, u2);
  nlohmann::json j = g;
  ASSERT_EQ(j["rows"], 2);
  ASSERT_EQ(j["cols"], 3);
  ASSERT_EQ(j["phi"].size(), 2u);
  ASSERT_EQ(j["phi"][1].size(), 3u);
  EXPECT_EQ(j["phi"][1][2].get<double>(), g.at(2, 3));
}

TEST(Similarity, BadInput) {
  Tensor u1 = random_basis(6, 3, 16), u2 = random_basis(7, 3, 17);
  EXPECT_TRUE(test::throws_with([&] { subspace_similarity_grid(u1, u2); }, {"different dimension"}));
  EXPECT_TRUE(test::throws_with([&] { subspace_similarity(u1, u1, 0, 1); }, {"outside"}));
  EXPECT_TRUE(test::throws_with([&] { subspace_similarity(u1, u1, 1, 4); }, {"outside"}));
  EXPECT_TRUE(test::throws_with([&] { subspace_similarity_grid(u1, u1, 4, 1); }, {"outside"}));
  EXPECT_TRUE(test::throws_with([&] { subspace_similarity_grid(u1, u1.to(DType::F32)); }, {"dtype"}));
  EXPECT_TRUE(test::throws_with([&] { subspace_similarity_grid(Tensor::zeros({6}, DType::F64), u1); }, {"2-D"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        subspace_similarity_grid(Tensor::zeros({6, 2}, DType::I64), Tensor::zeros({6, 2}, DType::I64));
      },
      {"f32/f64"}));
  EXPECT_TRUE(test::throws_with([&] { adapter_similarity(randn({4, 30}, 1), randn({4, 31}, 2)); }, {"A matrices"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        adapter_similarity(randn({30, 4}, 1), randn({31, 4}, 2), AdapterSide::LeftOfB);
      },
      {"B matrices"}));
  SimilarityGrid g = subspace_similarity_grid(u1, u1);
  EXPECT_TRUE(test::throws_with([&] { g.at(4, 1); }, {"outside"}));
}

}  // namespace

TEST(AdapterSimilarity, AllZeroMatrixIsUndefinedNotAGrid) {
  // A lora_A that never left zero has no singular directions; SVD's arbitrary basis made a full
  // φ grid that looked like a result.
  const Tensor zero = Tensor::zeros({4, 6}, DType::F64);
  const Tensor a = randn({4, 6}, 3, 0, DType::F64);
  for (auto [m1, m2, which] : {std::tuple{zero, a, "first"}, std::tuple{a, zero, "second"}}) {
    try {
      analysis::adapter_similarity(m1, m2);
      ADD_FAILURE() << "no error for an all-zero " << which << " matrix";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("the ") + which + " matrix [4, 6] is all zeros"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("undefined"), std::string::npos) << e.what();
    }
  }
}

// The chance level is what random subspaces give on average: the mean φ of 300 pairs of random
// 3- and 5-dimensional subspaces of R^20 lies within 10% of max(i, j)/20 in every cell (the seeds
// are fixed; the standard error of the mean is a few percent).
TEST(PhiChance, RandomSubspacesAverageToIt) {
  const int64_t n = 20, r1 = 3, r2 = 5, pairs = 300;
  const SimilarityGrid chance = lowrank::analysis::phi_chance_grid(r1, r2, n);
  ASSERT_EQ(chance.rows, r1);
  ASSERT_EQ(chance.cols, r2);
  EXPECT_DOUBLE_EQ(chance.at(2, 4), 4.0 / 20.0);
  EXPECT_DOUBLE_EQ(chance.at(3, 1), 3.0 / 20.0);
  std::vector<double> mean(static_cast<size_t>(r1 * r2), 0.0);
  for (int64_t p = 0; p < pairs; ++p) {
    const Tensor u1 = lowrank::svd(randn({n, r1}, 1000 + p, 0, DType::F64)).u;
    const Tensor u2 = lowrank::svd(randn({n, r2}, 5000 + p, 0, DType::F64)).u;
    const SimilarityGrid g = subspace_similarity_grid(u1, u2);
    for (size_t k = 0; k < mean.size(); ++k) mean[k] += g.values[k] / static_cast<double>(pairs);
  }
  for (size_t k = 0; k < mean.size(); ++k) EXPECT_NEAR(mean[k] / chance.values[k], 1.0, 0.1) << k;
  EXPECT_TRUE(lowrank::test::throws_with([] { lowrank::analysis::phi_chance_grid(3, 30, 20); }, {"n = 20"}));
}
