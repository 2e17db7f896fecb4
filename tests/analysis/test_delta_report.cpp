// The ΔW-vs-W report on constructed layers where every figure is known in closed form.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "analysis/delta_report.h"
#include "analysis/svd.h"
#include "core/ops.h"
#include "support/errors.h"

using namespace lowrank;
using namespace lowrank::analysis;

namespace {

// Everything runs in f64 on matrices of a dozen rows: errors sit near 1e-15.
constexpr double kTol = 1e-10;

struct Layer {
  Tensor w;
  Svd d;
};

Layer random_layer(int64_t out, int64_t in, uint64_t seed) {
  Tensor w = randn({out, in}, seed, 0, DType::F64);
  return {w, svd(w)};
}

TEST(DeltaReport, TruncationOfTheScaledWeightMeetsEckartYoung) {
  // BA = 0.1 · (W's rank-r truncation): the best any rank-r adapter can do for base_scale 0.9.
  const int64_t out = 12, in = 10, r = 3;
  Layer l = random_layer(out, in, 1);
  Tensor s = l.d.s.narrow(0, 0, r);
  Tensor b = mul(mul(l.d.u.narrow(1, 0, r), s), 0.1);  // [out, r]
  Tensor a = l.d.vt.narrow(0, 0, r);                   // [r, in]
  DeltaReport rep = delta_report(l.w, a, b, 1.0, 0.9);
  EXPECT_EQ(rep.rank, r);
  EXPECT_EQ(rep.out, out);
  EXPECT_EQ(rep.in, in);
  ASSERT_GT(rep.eckart_young_error, 0.1);  // a random W is far from rank 3, so this is a real check
  EXPECT_NEAR(rep.relative_error, rep.eckart_young_error, kTol);
  // The closed form of the bound from the singular values.
  auto sv = l.d.s.to_vector<double>();
  double total = 0, tail = 0;
  for (size_t i = 0; i < sv.size(); ++i) total += sv[i] * sv[i], tail += i >= r ? sv[i] * sv[i] : 0;
  EXPECT_NEAR(rep.eckart_young_error, std::sqrt(tail / total), kTol);
  ASSERT_EQ(rep.phi_left.size(), static_cast<size_t>(r));
  ASSERT_EQ(rep.phi_right.size(), static_cast<size_t>(r));
  for (int64_t k = 0; k < r; ++k) {
    EXPECT_NEAR(rep.phi_left[k], 1.0, kTol) << k;
    EXPECT_NEAR(rep.phi_right[k], 1.0, kTol) << k;
    EXPECT_NEAR(rep.delta_singular_values[k], 0.1 * sv[k], kTol) << k;
  }
  // ΔW lies along W's top directions with a tenth of their weight: amplification 0.1.
  EXPECT_NEAR(rep.amplification, 0.1, kTol);
  EXPECT_NEAR(rep.w_norm, std::sqrt(total), kTol);
  EXPECT_NEAR(rep.target_norm, 0.1 * std::sqrt(total), kTol);
  // The same ΔW split differently between scale and B gives the same report.
  DeltaReport rep2 = delta_report(l.w, a, mul(b, 0.25), 4.0, 0.9);
  EXPECT_NEAR(rep2.relative_error, rep.relative_error, kTol);
  EXPECT_NEAR(rep2.amplification, rep.amplification, kTol);
}

TEST(DeltaReport, RandomAdapterIsNoBetterThanEckartYoung) {
  Layer l = random_layer(9, 14, 2);
  Tensor a = randn({4, 14}, 3, 0, DType::F64), b = randn({9, 4}, 4, 0, DType::F64);
  DeltaReport rep = delta_report(l.w, a, b, 0.05, 0.9);
  EXPECT_GT(rep.relative_error, rep.eckart_young_error);
  for (double v : rep.phi_left) EXPECT_TRUE(v >= 0 && v <= 1 + kTol) << v;
  for (double v : rep.phi_right) EXPECT_TRUE(v >= 0 && v <= 1 + kTol) << v;
  EXPECT_LT(rep.phi_left[0], 0.99);  // a random direction is not W's top one
}

TEST(DeltaReport, UpdateAlongWeakestDirectionIsAmplified) {
  // ΔW = 5 · u_min v_minᵀ: Uᵀ W Vᵀ = σ_min, so the factor is 5 / σ_min. A transposed product
  // (Uᵀ W V instead of Uᵀ W Vᵀ) would not give this.
  Layer l = random_layer(8, 8, 5);
  const int64_t last = 7;
  Tensor b = mul(l.d.u.narrow(1, last, 1), 5.0);
  Tensor a = l.d.vt.narrow(0, last, 1);
  DeltaReport rep = delta_report(l.w, a, b, 1.0, 0.9);
  const double s_min = l.d.s.to_vector<double>()[last];
  EXPECT_NEAR(rep.delta_norm, 5.0, kTol);
  EXPECT_NEAR(rep.projected_w_norm, s_min, kTol);
  EXPECT_NEAR(rep.amplification, 5.0 / s_min, 1e-8);
  EXPECT_NEAR(rep.phi_left[0], 0.0, kTol);
  EXPECT_NEAR(rep.phi_right[0], 0.0, kTol);
}

TEST(DeltaReport, UndefinedRelativeErrorIsNullInJson) {
  Layer l = random_layer(6, 5, 6);
  Tensor a = randn({2, 5}, 7).to(DType::F64), b = Tensor::zeros({6, 2}, DType::F64);
  DeltaReport rep = delta_report(l.w, a, b, 1.0, 1.0);  // base_scale 1: nothing to recover
  EXPECT_TRUE(std::isnan(rep.relative_error));
  EXPECT_EQ(rep.delta_norm, 0.0);
  EXPECT_EQ(rep.amplification, 0.0);
  nlohmann::json j = rep;
  EXPECT_TRUE(j["relative_error"].is_null());
  EXPECT_EQ(j["rank"], 2);
  EXPECT_EQ(j["phi_left"].size(), 2u);
  EXPECT_EQ(j["w_singular_values"].size(), 5u);
  // The serialised text parses back (NaN must not leak into it).
  nlohmann::json back = nlohmann::json::parse(j.dump());
  EXPECT_TRUE(back["relative_error"].is_null());
  EXPECT_EQ(back["phi_right"], j["phi_right"]);
}

TEST(DeltaReport, AcceptsF32Tensors) {
  Layer l = random_layer(7, 6, 8);
  Tensor a = randn({2, 6}, 9, 0, DType::F64), b = randn({7, 2}, 10, 0, DType::F64);
  DeltaReport r64 = delta_report(l.w, a, b, 0.5, 0.9);
  DeltaReport r32 = delta_report(l.w.to(DType::F32), a.to(DType::F32), b.to(DType::F32), 0.5, 0.9);
  // Only the inputs are rounded to f32 (relative 6e-8); the report itself runs in f64.
  EXPECT_NEAR(r32.relative_error, r64.relative_error, 1e-5);
  EXPECT_NEAR(r32.amplification, r64.amplification, 1e-5 * r64.amplification);
}

TEST(DeltaReport, BadShapes) {
  Tensor w = Tensor::zeros({6, 5}, DType::F64);
  EXPECT_TRUE(test::throws_with(
      [&] {
        delta_report(w, Tensor::zeros({2, 4}), Tensor::zeros({6, 2}), 1, 0.9);
      },
      {"do not fit"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        delta_report(w, Tensor::zeros({2, 5}), Tensor::zeros({6, 3}), 1, 0.9);
      },
      {"do not fit"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        delta_report(w, Tensor::zeros({2, 5}), Tensor::zeros({5, 2}), 1, 0.9);
      },
      {"do not fit"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        delta_report(w, Tensor::zeros({6, 5}), Tensor::zeros({6, 6}), 1, 0.9);
      },
      {"rank 6"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        delta_report(w, Tensor::zeros({0, 5}), Tensor::zeros({6, 0}), 1, 0.9);
      },
      {"rank 0"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        delta_report(Tensor::zeros({6}), Tensor::zeros({2, 5}), Tensor::zeros({6, 2}), 1, 0.9);
      },
      {"2-D"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        delta_report(w, Tensor::zeros({2, 5}, DType::I64), Tensor::zeros({6, 2}), 1, 0.9);
      },
      {"f32/f64"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        delta_report(w, Tensor::zeros({2, 5}), Tensor::zeros({6, 2}), NAN, 0.9);
      },
      {"finite"}));
}

}  // namespace
