// The vectorised f32 math of kernels/cpu/vec_math.h against libm in f64 (exp, GELU and its
// derivative), at lengths that exercise both the 8-lane body and the scalar tail, plus NaN going
// through; and the f32 cross-entropy built on it against the f64 one at GPT-2's 50257 classes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/scalar_math.h"

using namespace lowrank;

namespace {

// exp_poly is within 2 ulp of exp; 4e-7 relative leaves room for the f32 subtraction of the shift.
constexpr double kExpRtol = 4e-7;
// GELU through sigmoid(2u) in f32 against tanh in f64: a few f32 roundings of values <= |x|.
constexpr double kGeluTol = 2e-6;

std::vector<float> ramp(int64_t n, float lo, float hi) {
  std::vector<float> v(static_cast<size_t>(n), lo);
  if (n == 1) return v;
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(n - 1);
  return v;
}

}  // namespace

TEST(VecMath, ExpMatchesLibmOverItsRange) {
  for (int64_t n : {1, 7, 8, 9, 1001}) {
    std::vector<float> x = ramp(n, -86.5f, 88.0f), y = x;  // x - shift in [-87, 87.5]
    const float shift = 0.5f;
    const float s = cpu::exp_shift_sum(y.data(), n, shift);
    std::vector<float> z(x.size());
    cpu::exp_shift_scale(x.data(), z.data(), n, shift, 2.0f);
    double ref_sum = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double ref = std::exp(static_cast<double>(x[i] - shift));
      ref_sum += ref;
      EXPECT_NEAR(y[i], ref, kExpRtol * ref) << "n " << n << " x " << x[i];
      EXPECT_NEAR(z[i], 2 * ref, 2 * kExpRtol * ref) << "n " << n << " x " << x[i];
      EXPECT_NEAR(cpu::exp_poly(x[i] - shift), ref, kExpRtol * ref);
    }
    if (ref_sum < 1e38) {  // f32 lanes: the sum over the full range overflows
      EXPECT_NEAR(s, ref_sum, 1e-6 * ref_sum);
    }
    EXPECT_NEAR(cpu::exp_shift_sum_f64(x.data(), n, shift), ref_sum, 1e-6 * ref_sum);
  }
}

TEST(VecMath, ExpSaturatesAndPassesNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x(17, -1000.0f);
  x[3] = 1000.0f;
  x[16] = nan;  // the scalar tail
  x[5] = nan;   // the 8-lane body
  std::vector<float> y(x.size());
  cpu::exp_shift_scale(x.data(), y.data(), 17, 0.0f, 1.0f);
  EXPECT_GE(y[0], 0.0f);
  EXPECT_LT(y[0], 1e-37f);
  EXPECT_TRUE(std::isfinite(y[3]));
  EXPECT_TRUE(std::isnan(y[5]));
  EXPECT_TRUE(std::isnan(y[16]));
  EXPECT_TRUE(std::isnan(cpu::exp_shift_sum_f64(x.data(), 8, 0.0f)));
  EXPECT_TRUE(std::isnan(cpu::exp_poly(nan)));
}

TEST(VecMath, RowMax) {
  for (int64_t n : {1, 8, 13, 100}) {
    std::vector<float> x = ramp(n, -3.0f, 5.0f);
    std::swap(x.front(), x.back());  // the maximum first, in the body
    EXPECT_EQ(cpu::row_max_f32(x.data(), n), *std::max_element(x.begin(), x.end()));
  }
  EXPECT_EQ(cpu::row_max_f32(nullptr, 0), -std::numeric_limits<float>::infinity());
}

TEST(VecMath, GeluAndItsDerivativeMatchTanhForm) {
  for (int64_t n : {1, 8, 11, 403}) {
    std::vector<float> x = ramp(n, -12.0f, 12.0f), gy = ramp(n, 0.5f, 1.5f), y(x.size()), gx(x.size());
    cpu::gelu_f32(x.data(), y.data(), n);
    cpu::gelu_backward_f32(x.data(), gy.data(), gx.data(), n);
    for (size_t i = 0; i < x.size(); ++i) {
      const double xd = x[i];
      const double ref = scalar::gelu_tanh(xd), dref = gy[i] * scalar::gelu_tanh_grad(xd);
      EXPECT_NEAR(y[i], ref, kGeluTol * (1 + std::abs(ref))) << "x " << x[i];
      EXPECT_NEAR(gx[i], dref, kGeluTol * (1 + std::abs(dref))) << "x " << x[i];
    }
  }
  for (float big : {-100.0f, 100.0f}) {  // exp saturates: GELU is 0 and x, its slope 0 and 1
    float y = 0, g = 0, one = 1;
    cpu::gelu_f32(&big, &y, 1);
    cpu::gelu_backward_f32(&big, &one, &g, 1);
    EXPECT_NEAR(y, big > 0 ? big : 0.0f, 1e-30);  // x·e^-88 for x < 0, not exactly 0
    EXPECT_NEAR(g, big > 0 ? 1.0f : 0.0f, 1e-6);
  }
}

// The f32 kernel (vectorised exp, log-sum-exp kept from forward) against the f64 one (libm).
TEST(VecMath, CrossEntropyF32MatchesF64AtGpt2Vocab) {
  const int64_t n = 3, c = 50257;
  Tensor logits64 = mul(randn({n, c}, 7, 0, DType::F64), 4.0);
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{5, -100, c - 1}, {n});
  Tensor l32 = logits64.to(DType::F32).detach().requires_grad_(true);
  Tensor l64 = logits64.detach().requires_grad_(true);
  Tensor loss32 = cross_entropy(l32, labels), loss64 = cross_entropy(l64, labels);
  EXPECT_NEAR(loss32.item(), loss64.item(), 1e-5 * std::abs(loss64.item()));
  loss32.backward();
  loss64.backward();
  const std::vector<double> g32 = l32.grad().to(DType::F64).to_vector<double>();
  const std::vector<double> g64 = l64.grad().to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < g32.size(); ++i) worst = std::max(worst, std::abs(g32[i] - g64[i]));
  // f32 probabilities (<= 1, here averaged over 2 rows) are good to ~1e-6 relative; a wrong
  // log-sum-exp or scale would be off by orders more. Row 1 is ignored: exactly 0 in both.
  EXPECT_LT(worst, 1e-6);
  for (int64_t j = 0; j < c; ++j) EXPECT_EQ(g32[static_cast<size_t>(c + j)], 0.0);
}

TEST(VecMath, CrossEntropyNaNLogitGivesNaNLoss) {
  std::vector<float> v(2 * 20, 0.5f);
  v[20 + 3] = std::numeric_limits<float>::quiet_NaN();
  Tensor logits = Tensor::from_vector(v, {2, 20});
  EXPECT_TRUE(std::isnan(cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{1, 2}, {2})).item()));
}
