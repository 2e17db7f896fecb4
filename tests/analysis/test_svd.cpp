// analysis::svd on the CPU: reconstruction, orthogonality, known singular values (f32 and f64,
// tall, wide, rank-deficient, non-contiguous input), sign canonicalisation and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "analysis/svd.h"
#include "core/ops.h"
#include "support/compare.h"

using namespace lowrank;
using analysis::Svd;
using test::max_abs_diff;

namespace {

// gesdd is backward stable: errors are a small multiple of machine epsilon times the norm.
// f32 epsilon is 1.2e-7 and the matrices here have at most 12 rows, so 2e-5 leaves room.
constexpr double kTolF32 = 2e-5;
constexpr double kTolF64 = 1e-12;

double tol_for(DType t) {
  return t == DType::F32 ? kTolF32 : kTolF64;
}

double fro(const Tensor& a) {
  double s = 0;
  for (double v : a.to_vector<double>()) s += v * v;
  return std::sqrt(s);
}

Tensor reconstruct(const Svd& d) {
  return matmul(mul(d.u, d.s), d.vt);
}

// Checks every property of a thin SVD of `a`.
void expect_valid_svd(const Tensor& a, const Svd& d) {
  const int64_t m = a.size(0), n = a.size(1), k = std::min(m, n);
  const double tol = tol_for(a.dtype());
  ASSERT_EQ(d.u.shape(), (Shape{m, k}));
  ASSERT_EQ(d.s.shape(), (Shape{k}));
  ASSERT_EQ(d.vt.shape(), (Shape{k, n}));
  EXPECT_EQ(d.u.dtype(), a.dtype());
  auto s = d.s.to_vector<double>();
  for (int64_t i = 0; i < k; ++i) {
    EXPECT_GE(s[i], 0.0);
    if (i > 0) {
      EXPECT_LE(s[i], s[i - 1]) << "singular values not descending at " << i;
    }
  }
  EXPECT_LE(max_abs_diff(reconstruct(d), a), tol * std::max(1.0, fro(a)));
  Tensor eye = Tensor::zeros({k, k}, DType::F64);
  for (int64_t i = 0; i < k; ++i) eye.select(0, i).select(0, i).fill_(1.0);
  EXPECT_LE(max_abs_diff(matmul(d.u.mT(), d.u), eye), tol * k);
  EXPECT_LE(max_abs_diff(matmul(d.vt, d.vt.mT()), eye), tol * k);
}

class SvdShapes : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t>> {};

TEST_P(SvdShapes, ReconstructsWithOrthonormalFactors) {
  auto [dt, m, n] = GetParam();
  Tensor a = randn({m, n}, 1234 + static_cast<uint64_t>(m * 31 + n), 0, dt);
  expect_valid_svd(a, analysis::svd(a));
}

INSTANTIATE_TEST_SUITE_P(TallWideSquare, SvdShapes,
                         ::testing::Combine(::testing::Values(DType::F32, DType::F64), ::testing::Values(1, 5, 12),
                                            ::testing::Values(1, 4, 9)));

TEST(Svd, KnownSingularValues) {
  // A permuted, signed diagonal: singular values are the absolute entries, sorted.
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor a = Tensor::from_vector(std::vector<double>{0, 3, 0,   //
                                                       0, 0, 0,   //
                                                       -5, 0, 0,  //
                                                       0, 0, 1},
                                   {4, 3})
                   .to(dt);
    Svd d = analysis::svd(a);
    auto s = d.s.to_vector<double>();
    ASSERT_EQ(s.size(), 3u);
    EXPECT_NEAR(s[0], 5.0, tol_for(dt) * 5);
    EXPECT_NEAR(s[1], 3.0, tol_for(dt) * 5);
    EXPECT_NEAR(s[2], 1.0, tol_for(dt) * 5);
    expect_valid_svd(a, d);
  }
}

TEST(Svd, RankDeficient) {
  for (DType dt : {DType::F32, DType::F64}) {
    // Outer product x yᵀ: one singular value |x|·|y|, the rest zero.
    Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 2}, {3, 1}).to(dt);        // |x| = 3
    Tensor y = Tensor::from_vector(std::vector<double>{3, 0, 4, 0, 0}, {1, 5}).to(dt);  // |y| = 5
    Tensor a = matmul(x, y);
    Svd d = analysis::svd(a);
    auto s = d.s.to_vector<double>();
    EXPECT_NEAR(s[0], 15.0, tol_for(dt) * 15);
    EXPECT_NEAR(s[1], 0.0, tol_for(dt) * 15);
    EXPECT_NEAR(s[2], 0.0, tol_for(dt) * 15);
    expect_valid_svd(a, d);
    // A rank-2 product of random factors, wide and tall.
    for (auto [m, n] : {std::pair<int64_t, int64_t>{8, 6}, {6, 8}}) {
      Tensor b = matmul(randn({m, 2}, 7, 0, dt), randn({2, n}, 8, 0, dt));
      Svd e = analysis::svd(b);
      auto se = e.s.to_vector<double>();
      EXPECT_GT(se[1], 0.1);
      for (size_t i = 2; i < se.size(); ++i) EXPECT_LE(se[i], tol_for(dt) * 10 * se[0]) << i;
      expect_valid_svd(b, e);
    }
  }
}

TEST(Svd, NonContiguousInputMatchesContiguous) {
  Tensor base = randn({9, 5}, 42, 0, DType::F64);
  Tensor view = base.mT();  // [5, 9], transposed strides
  ASSERT_FALSE(view.is_contiguous());
  Svd a = analysis::canonicalize_signs(analysis::svd(view));
  Svd b = analysis::canonicalize_signs(analysis::svd(view.contiguous()));
  EXPECT_LE(max_abs_diff(a.s, b.s), kTolF64);
  EXPECT_LE(max_abs_diff(a.u, b.u), 1e-10);
  EXPECT_LE(max_abs_diff(a.vt, b.vt), 1e-10);
  expect_valid_svd(view, a);
  // The input is left untouched (gesdd overwrites its argument, so the kernel must copy).
  EXPECT_EQ(base.to_vector<double>(), randn({9, 5}, 42, 0, DType::F64).to_vector<double>());
}

TEST(Svd, CanonicalSignsUndoFlips) {
  Tensor a = randn({6, 4}, 5, 0, DType::F64);
  Svd d = analysis::svd(a);
  Tensor flip = Tensor::from_vector(std::vector<double>{-1, 1, -1, -1}, {4});
  Svd flipped{mul(d.u, flip), d.s, mul(d.vt, flip.unsqueeze(1))};
  EXPECT_LE(max_abs_diff(reconstruct(flipped), a), 1e-12);  // still an SVD of a
  Svd c1 = analysis::canonicalize_signs(d), c2 = analysis::canonicalize_signs(flipped);
  EXPECT_EQ(c1.u.to_vector<double>(), c2.u.to_vector<double>());
  EXPECT_EQ(c1.vt.to_vector<double>(), c2.vt.to_vector<double>());
  EXPECT_LE(max_abs_diff(reconstruct(c1), a), 1e-12);
  // Convention: the largest-magnitude entry of each column of u is positive.
  auto u = c1.u.to_vector<double>();
  for (int j = 0; j < 4; ++j) {
    double best = 0;
    for (int i = 0; i < 6; ++i)
      if (std::abs(u[i * 4 + j]) > std::abs(best)) best = u[i * 4 + j];
    EXPECT_GT(best, 0.0) << "column " << j;
  }
}

void expect_svd_error(const Tensor& a, const std::string& fragment) {
  try {
    analysis::svd(a);
    FAIL() << "no throw for " << fragment;
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("svd"), std::string::npos) << m;
    EXPECT_NE(m.find(fragment), std::string::npos) << m;
  }
}

TEST(Svd, BadInputThrowsClearErrors) {
  expect_svd_error(Tensor::zeros({4}), "2-D");
  expect_svd_error(Tensor::zeros({2, 3, 4}), "2-D");
  expect_svd_error(Tensor::zeros({3, 3}, DType::I64), "f32 or f64");
  expect_svd_error(Tensor::zeros({0, 3}), "empty");
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity()}) {
    for (DType dt : {DType::F32, DType::F64}) {
      Tensor a = Tensor::ones({3, 4}, dt);
      a.select(0, 1).select(0, 2).fill_(bad);
      expect_svd_error(a, "NaN or Inf");
    }
  }
}

}  // namespace
