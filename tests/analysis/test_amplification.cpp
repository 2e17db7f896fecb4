// The LoRA paper's Table 7 (amplification_report) on layers where every number is known in closed
// form or in expectation, and the truncated SVD behind the experiment's svd variant, whose error is
// exactly the Eckart–Young bound delta_report states.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "analysis/delta_report.h"
#include "analysis/svd.h"
#include "core/ops.h"
#include "support/errors.h"

using namespace lowrank;
using namespace lowrank::analysis;

namespace {

constexpr double kTol = 1e-10;  // f64 on matrices of a dozen rows

double frobenius(const Tensor& t) {
  return std::sqrt(sum(mul(t, t)).item());
}

Tensor eye(int64_t n, DType t) {
  std::vector<double> v(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i * n + i)] = 1.0;
  return Tensor::from_vector(v, {n, n}).to(t);
}

double energy(const std::vector<double>& s, size_t from, size_t to) {
  double e = 0;
  for (size_t i = from; i < to; ++i) e += s[i] * s[i];
  return e;
}

TEST(Amplification, UpdateAlongTheTopDirectionsOfW) {
  // ΔW = 0.1 · W's rank-r truncation: ΔW's directions are W's, so both rows of Table 7 agree.
  const int64_t out = 12, in = 10, r = 3;
  const Tensor w = randn({out, in}, 11, 0, DType::F64);
  const Svd d = svd(w);
  const std::vector<double> s = d.s.to_vector<double>();
  const Tensor a = d.vt.narrow(0, 0, r), b = mul(mul(d.u.narrow(1, 0, r), d.s.narrow(0, 0, r)), 0.1);
  const AmplificationReport rep = amplification_report(w, a, b, 1.0, 5);
  EXPECT_EQ(rep.out, out);
  EXPECT_EQ(rep.in, in);
  EXPECT_EQ(rep.rank, r);
  EXPECT_EQ(rep.seed, 5u);
  EXPECT_NEAR(rep.w_norm, std::sqrt(energy(s, 0, s.size())), kTol);
  EXPECT_NEAR(rep.delta_norm, 0.1 * std::sqrt(energy(s, 0, r)), kTol);
  EXPECT_NEAR(rep.delta.projected_w_norm, std::sqrt(energy(s, 0, r)), kTol);
  EXPECT_NEAR(rep.w.projected_w_norm, std::sqrt(energy(s, 0, r)), kTol);
  EXPECT_NEAR(rep.delta.amplification, 0.1, kTol);
  EXPECT_NEAR(rep.w.amplification, 0.1, kTol);
  // Random directions catch less of W than its own top ones.
  EXPECT_LT(rep.random.projected_w_norm, rep.w.projected_w_norm);
  EXPECT_GT(rep.random.amplification, 0.1);
  // The delta row is what delta_report calls projected_w_norm / amplification.
  const DeltaReport dr = delta_report(w, a, b, 1.0, 0.9);
  EXPECT_NEAR(rep.delta.projected_w_norm, dr.projected_w_norm, kTol);
  EXPECT_NEAR(rep.delta.amplification, dr.amplification, kTol);
}

TEST(Amplification, UpdateAlongTheWeakestDirectionIsAmplified) {
  // ΔW = c · u_min v_minᵀ, scale 2 split off B: ‖Uᵀ W V‖ = σ_min, amplification c/σ_min, while
  // W's own top direction gives c/σ_max.
  const int64_t out = 9, in = 7;
  const Tensor w = randn({out, in}, 12, 0, DType::F64);
  const Svd d = svd(w);
  const std::vector<double> s = d.s.to_vector<double>();
  const double c = 0.5;
  const Tensor a = d.vt.narrow(0, in - 1, 1), b = mul(d.u.narrow(1, in - 1, 1), c / 2.0);
  const AmplificationReport rep = amplification_report(w, a, b, 2.0, 1);
  EXPECT_NEAR(rep.delta_norm, c, kTol);
  EXPECT_NEAR(rep.delta.projected_w_norm, s.back(), kTol);
  EXPECT_NEAR(rep.delta.amplification, c / s.back(), 1e-8);
  EXPECT_NEAR(rep.w.projected_w_norm, s.front(), kTol);
  EXPECT_NEAR(rep.w.amplification, c / s.front(), kTol);
  EXPECT_GT(rep.delta.amplification, rep.random.amplification);
  EXPECT_GT(rep.random.amplification, rep.w.amplification);
}

TEST(Amplification, RandomDirectionsMeetTheirExpectation) {
  // For U, V uniformly random r-frames, E‖Uᵀ W V‖²_F = r²/(out·in) · ‖W‖²_F. The mean over 400
  // seeds has a relative standard error near 3%; the seeds are fixed, so this cannot flake.
  const int64_t out = 12, in = 10, r = 2;
  const Tensor w = randn({out, in}, 13, 0, DType::F64);
  const Tensor a = randn({r, in}, 14, 0, DType::F64), b = randn({out, r}, 15, 0, DType::F64);
  double mean = 0;
  const int n = 400;
  for (int seed = 1; seed <= n; ++seed) {
    const AmplificationReport rep = amplification_report(w, a, b, 1.0, static_cast<uint64_t>(seed));
    mean += rep.random.projected_w_norm * rep.random.projected_w_norm / n;
  }
  const double expected = static_cast<double>(r * r) / static_cast<double>(out * in) * std::pow(frobenius(w), 2);
  EXPECT_NEAR(mean / expected, 1.0, 0.1) << "mean " << mean << " expected " << expected;
}

TEST(Amplification, SeededPairIsTheDocumentedDrawAndOnlyItsSpanMatters) {
  const int64_t out = 8, in = 6, r = 2;
  const Tensor w = randn({out, in}, 16, 0, DType::F64);
  const Tensor a = randn({r, in}, 17, 0, DType::F64), b = randn({out, r}, 18, 0, DType::F64);
  const AmplificationReport seeded = amplification_report(w, a, b, 1.5, 42);
  const AmplificationReport again = amplification_report(w, a, b, 1.5, 42);
  const AmplificationReport other = amplification_report(w, a, b, 1.5, 43);
  EXPECT_EQ(seeded.random.projected_w_norm, again.random.projected_w_norm);
  EXPECT_NE(seeded.random.projected_w_norm, other.random.projected_w_norm);
  EXPECT_EQ(seeded.delta.projected_w_norm, other.delta.projected_w_norm);
  // The header's recipe: U from Philox offset 0, V from offset out·r.
  const Tensor gu = randn({out, r}, 42, 0, DType::F64), gv = randn({in, r}, 42, out * r, DType::F64);
  const AmplificationReport given = amplification_report(w, a, b, 1.5, gu, gv);
  EXPECT_NEAR(given.random.projected_w_norm, seeded.random.projected_w_norm, kTol);
  EXPECT_EQ(given.seed, 0u);
  // Any other basis of the same spans (here mixed by invertible 2x2 matrices, in f32) gives the same norm.
  const Tensor mix = Tensor::from_vector(std::vector<double>{2.0, 0.5, -1.0, 3.0}, {2, 2}).to(DType::F64);
  const AmplificationReport mixed =
      amplification_report(w, a, b, 1.5, matmul(gu, mix).to(DType::F32), matmul(gv, mix.mT()));
  EXPECT_NEAR(mixed.random.projected_w_norm, seeded.random.projected_w_norm, 1e-6);
}

TEST(Amplification, JsonAndUndefinedRatios) {
  // W = e1 e1ᵀ and ΔW = e2 e2ᵀ: ΔW's directions see none of W (amplification Inf -> null).
  const int64_t n = 4;
  std::vector<double> wv(n * n, 0.0);
  wv[0] = 3.0;
  const Tensor w = Tensor::from_vector(wv, {n, n}).to(DType::F64);
  const Tensor a = Tensor::from_vector(std::vector<double>{0, 1, 0, 0}, {1, n}).to(DType::F64);
  const Tensor b = Tensor::from_vector(std::vector<double>{0, 1, 0, 0}, {n, 1}).to(DType::F64);
  const AmplificationReport rep = amplification_report(w, a, b, 1.0, 3);
  EXPECT_EQ(rep.delta.projected_w_norm, 0.0);
  EXPECT_TRUE(std::isinf(rep.delta.amplification));
  EXPECT_NEAR(rep.w.amplification, 1.0 / 3.0, kTol);
  const nlohmann::json j = rep;
  EXPECT_TRUE(j["delta"]["amplification"].is_null());
  EXPECT_EQ(j["delta"]["projected_w_norm"].get<double>(), 0.0);
  EXPECT_NEAR(j["w"]["amplification"].get<double>(), 1.0 / 3.0, kTol);
  for (const char* k : {"out", "in", "rank", "scale", "seed", "w_norm", "delta_norm", "random"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["seed"].get<uint64_t>(), 3u);
  EXPECT_TRUE(j["random"]["projected_w_norm"].is_number());
}

TEST(Amplification, BadInput) {
  const Tensor w = randn({6, 5}, 1, 0, DType::F64), a = randn({2, 5}, 2, 0, DType::F64);
  const Tensor b = randn({6, 2}, 3, 0, DType::F64);
  EXPECT_TRUE(
      test::throws_with([&] { amplification_report(w, a.mT(), b, 1.0, 1); }, {"amplification_report", "do not fit"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        amplification_report(w, randn({6, 5}, 4), randn({6, 6}, 5), 1.0, 1);
      },
      {"rank 6 outside"}));
  EXPECT_TRUE(test::throws_with([&] { amplification_report(w, a, b, NAN, 1); }, {"finite"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        amplification_report(w, a, b, 1.0, randn({5, 2}, 6), randn({5, 2}, 7));
      },
      {"random directions", "[6, 2]"}));
  // Two equal columns span one direction, not two.
  const Tensor col = randn({6, 1}, 8, 0, DType::F64);
  EXPECT_TRUE(test::throws_with(
      [&] {
        amplification_report(w, a, b, 1.0, concat({col, col}, 1), randn({5, 2}, 9, 0, DType::F64));
      },
      {"rank-deficient"}));
}

class TruncatedSvdShapes : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, DType>> {};

// The svd variant: W replaced by its rank-r truncation, i.e. an adapter b·a with scale 1 on a base
// scaled to 0. Its error ‖W_r − W‖ / ‖W‖ is delta_report's Eckart–Young bound (the check, to 1e-5).
TEST_P(TruncatedSvdShapes, ErrorIsTheEckartYoungBound) {
  const auto [out, in, t] = GetParam();
  const Tensor w = randn({out, in}, static_cast<uint64_t>(out * 100 + in), 0, t);
  for (int64_t r : {int64_t{1}, int64_t{3}, std::min(out, in) - 1}) {
    const TruncatedSvd ts = truncated_svd(w, r);
    ASSERT_EQ(ts.a.shape(), (Shape{r, in}));
    ASSERT_EQ(ts.b.shape(), (Shape{out, r}));
    EXPECT_EQ(ts.a.dtype(), t);
    const Tensor wr = ts.reconstruction();
    const double direct = frobenius(sub(wr.to(DType::F64), w.to(DType::F64))) / frobenius(w.to(DType::F64));
    const DeltaReport rep = delta_report(w, ts.a, ts.b, 1.0, 0.0);
    ASSERT_GT(rep.eckart_young_error, 0.01) << r;  // far from exact: a real comparison
    EXPECT_NEAR(direct, rep.eckart_young_error, 1e-5) << "r = " << r;
    EXPECT_NEAR(rep.relative_error, rep.eckart_young_error, 1e-5) << "r = " << r;
    // The rows of a are orthonormal; b·a has rank r (σ_{r+1} vanishes).
    EXPECT_NEAR(frobenius(sub(matmul(ts.a, ts.a.mT()), eye(r, t))), 0.0, t == DType::F32 ? 1e-5 : 1e-12);
    const std::vector<double> s = svd(wr).s.to_vector<double>();
    EXPECT_LT(s[static_cast<size_t>(r)], (t == DType::F32 ? 1e-5 : 1e-12) * s[0]) << r;
  }
  // Full rank reconstructs W.
  const int64_t k = std::min(out, in);
  EXPECT_LT(frobenius(sub(truncated_svd(w, k).reconstruction(), w)), (t == DType::F32 ? 1e-4 : 1e-12) * frobenius(w));
}

INSTANTIATE_TEST_SUITE_P(Shapes, TruncatedSvdShapes,
                         ::testing::Values(std::tuple{int64_t{12}, int64_t{9}, DType::F64},
                                           std::tuple{int64_t{9}, int64_t{12}, DType::F64},
                                           std::tuple{int64_t{48}, int64_t{40}, DType::F32}));

TEST(TruncatedSvd, BadInput) {
  const Tensor w = randn({5, 4}, 1);
  EXPECT_TRUE(test::throws_with([&] { truncated_svd(w, 0); }, {"rank 0 outside 1..min(5, 4)"}));
  EXPECT_TRUE(test::throws_with([&] { truncated_svd(w, 5); }, {"rank 5"}));
  EXPECT_TRUE(test::throws_with([&] { truncated_svd(Tensor::zeros({3}), 1); }, {"2-D"}));
  EXPECT_TRUE(test::throws_with([&] { TruncatedSvd{}.reconstruction(); }, {"empty factors"}));
}

}  // namespace
