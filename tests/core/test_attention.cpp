// The fused attention op against the unfused composition a PyTorch user writes (permute, matmul,
// masked_fill, softmax, dropout, matmul), f64 gradient checks, the dropout mask's statistics and
// determinism, strided inputs, and its bad-input messages.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <ostream>

#include "core/ops.h"
#include "core/rng.h"
#include "support/compare.h"
#include "support/errors.h"
#include "support/gradcheck.h"

using namespace lowrank;
using lowrank::test::throws_with;

namespace {

// Fused and unfused differ in f32 summation order (blocked GEMMs, exp of a different max) over at
// most Tk + D terms: a few f32 ulps of relative error, measured as the norm of the difference.
constexpr double kF32RelTol = 2e-5;
constexpr double kF64RelTol = 1e-12;

double rel_err(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  EXPECT_EQ(va.size(), vb.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    num += (va[i] - vb[i]) * (va[i] - vb[i]);
    den += vb[i] * vb[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// The unfused composition in the [B, H, T, T] layout; dropout() on that tensor draws the same
// Philox mask the fused op documents.
Tensor unfused_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale, double p,
                         uint64_t seed, uint64_t offset) {
  const int64_t Tq = q.size(1), Tk = k.size(1);
  if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  Tensor s = mul(matmul(q.permute({0, 2, 1, 3}), k.permute({0, 2, 3, 1})), scale);
  if (causal) {
    std::vector<double> m(static_cast<size_t>(Tq * Tk));
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t j = 0; j < Tk; ++j) m[static_cast<size_t>(i * Tk + j)] = j > i + (Tk - Tq) ? 1.0 : 0.0;
    Tensor mask = Tensor::from_vector(m, {Tq, Tk}).to(q.dtype());
    s = masked_fill(s, mask, -std::numeric_limits<double>::infinity());
  }
  Tensor pr = softmax(s, -1);
  if (p > 0) pr = dropout(pr, p, true, seed, offset);
  return matmul(pr, v.permute({0, 2, 1, 3})).permute({0, 2, 1, 3});
}

struct AttnCase {
  int64_t b, tq, tk, h, d;
  bool causal;
  double p;
  DType dtype;
};

void PrintTo(const AttnCase& c, std::ostream* os) {
  *os << "B" << c.b << " Tq" << c.tq << " Tk" << c.tk << " H" << c.h << " D" << c.d << (c.causal ? " causal" : "")
      << " p" << c.p << " " << dtype_name(c.dtype);
}

class AttentionFusedVsUnfused : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionFusedVsUnfused, ForwardAndGradientsMatch) {
  const AttnCase c = GetParam();
  const uint64_t seed = 77 + static_cast<uint64_t>(c.tq * 31 + c.tk);
  auto make = [&](const Shape& s, uint64_t off) { return randn(s, seed, off, c.dtype).requires_grad_(); };
  Tensor q1 = make({c.b, c.tq, c.h, c.d}, 0), k1 = make({c.b, c.tk, c.h, c.d}, 100000),
         v1 = make({c.b, c.tk, c.h, c.d}, 200000);
  Tensor q2 = q1.detach().clone().requires_grad_(), k2 = k1.detach().clone().requires_grad_(),
         v2 = v1.detach().clone().requires_grad_();
  Tensor y1 = attention(q1, k1, v1, c.causal, 0.0, c.p, 5, 9);
  Tensor y2 = unfused_attention(q2, k2, v2, c.causal, 0.0, c.p, 5, 9);
  ASSERT_EQ(y1.shape(), (Shape{c.b, c.tq, c.h, c.d}));
  const double tol = c.dtype == DType::F32 ? kF32RelTol : kF64RelTol;
  EXPECT_LT(rel_err(y1, y2), tol);
  Tensor g = randn(y1.shape(), seed, 300000, c.dtype);
  y1.backward(g);
  y2.backward(g);
  EXPECT_LT(rel_err(q1.grad(), q2.grad()), tol) << "dq";
  EXPECT_LT(rel_err(k1.grad(), k2.grad()), tol) << "dk";
  EXPECT_LT(rel_err(v1.grad(), v2.grad()), tol) << "dv";
}

// Odd sizes; Tq < Tk (a KV-cached chunk, and the Tq = 1 decode step); 70 and 131 rows cross the
// kernel's 64-row blocks; dropout causal and not; the last one runs on threads.
INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionFusedVsUnfused,
    ::testing::Values(
        AttnCase{2, 5, 5, 3, 7, true, 0.0, DType::F32}, AttnCase{1, 13, 13, 2, 16, false, 0.0, DType::F32},
        AttnCase{2, 3, 11, 2, 8, true, 0.0, DType::F32}, AttnCase{1, 1, 9, 4, 8, true, 0.0, DType::F32},
        AttnCase{2, 70, 70, 2, 5, true, 0.0, DType::F32}, AttnCase{1, 67, 131, 1, 4, true, 0.0, DType::F32},
        AttnCase{1, 131, 131, 2, 3, false, 0.0, DType::F32}, AttnCase{2, 17, 17, 2, 8, true, 0.3, DType::F32},
        AttnCase{1, 9, 20, 2, 4, false, 0.5, DType::F32}, AttnCase{1, 70, 80, 1, 3, true, 0.2, DType::F32},
        AttnCase{2, 6, 9, 3, 5, true, 0.25, DType::F64}, AttnCase{1, 66, 66, 1, 4, false, 0.0, DType::F64},
        // enough work for the kernel's threads over (batch, head)
        AttnCase{2, 128, 128, 2, 16, true, 0.1, DType::F32}));

// ---- f64 gradient checks of dq, dk, dv through the fused backward kernel

struct GradCase {
  int64_t b, tq, tk, h, d;
  bool causal;
  double p;
};

void PrintTo(const GradCase& c, std::ostream* os) {
  *os << "B" << c.b << " Tq" << c.tq << " Tk" << c.tk << " H" << c.h << " D" << c.d << (c.causal ? " causal" : "")
      << " p" << c.p;
}

class AttentionGradcheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(AttentionGradcheck, CentralDifferences) {
  const GradCase c = GetParam();
  Tensor q = lowrank::test::random_f64({c.b, c.tq, c.h, c.d}, 1),
         k = lowrank::test::random_f64({c.b, c.tk, c.h, c.d}, 2),
         v = lowrank::test::random_f64({c.b, c.tk, c.h, c.d}, 3);
  EXPECT_TRUE(lowrank::test::gradcheck(
      [&](const std::vector<Tensor>& x) { return attention(x[0], x[1], x[2], c.causal, 0.0, c.p, 11, 3); }, {q, k, v}));
}

INSTANTIATE_TEST_SUITE_P(Cases, AttentionGradcheck,
                         ::testing::Values(GradCase{2, 4, 4, 2, 3, true, 0.0}, GradCase{1, 5, 5, 2, 3, false, 0.0},
                                           GradCase{2, 2, 5, 1, 3, true, 0.0}, GradCase{1, 3, 6, 2, 2, false, 0.0},
                                           GradCase{1, 4, 4, 2, 3, true, 0.4}));

// Scale given explicitly, gradcheck through a strided q (a slice of a fused qkv tensor).
LR_GRADCHECK_TEST(AttentionOp, GradcheckExplicitScaleAndStridedInputs, OpKind::Attention) {
  Tensor qkv = lowrank::test::random_f64({2, 4, 3, 2, 3}, 4);  // [B, T, 3, H, D]
  EXPECT_TRUE(lowrank::test::gradcheck(
      [](const std::vector<Tensor>& x) {
        return attention(x[0].select(2, 0), x[0].select(2, 1), x[0].select(2, 2), true, 0.7);
      },
      {qkv}));
}

// ---- dropout: with q = 0 every probability is 1/Tk, and v = I makes out[i, j] = keep_ij / ((1-p) Tk)

Tensor dropout_probe(double p, uint64_t seed, uint64_t offset, int64_t B, int64_t H, int64_t T) {
  Tensor q = Tensor::zeros({B, T, H, T});
  std::vector<float> eye(static_cast<size_t>(B * T * H * T), 0.f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < T; ++j)
      for (int64_t h = 0; h < H; ++h) eye[static_cast<size_t>(((b * T + j) * H + h) * T + j)] = 1.f;
  Tensor v = Tensor::from_vector(eye, {B, T, H, T});
  return attention(q, q, v, false, 0.0, p, seed, offset);
}

TEST(AttentionDropout, MaskIsPhiloxAndKeepsTheRightFraction) {
  const int64_t B = 2, H = 2, T = 64;
  const double p = 0.3;
  std::vector<double> out = dropout_probe(p, 42, 7, B, H, T).to_vector<double>();
  int64_t kept = 0, n = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = 0; j < T; ++j) {
          const double o = out[static_cast<size_t>(((b * T + i) * H + h) * T + j)];
          const bool keep = philox_uniform(42, 7, static_cast<uint64_t>(((b * H + h) * T + i) * T + j)) >= p;
          ASSERT_NEAR(o, keep ? 1.0 / ((1 - p) * T) : 0.0, 1e-6) << "b " << b << " h " << h << " i " << i << " j " << j;
          kept += keep, ++n;
        }
  // Binomial(n = 16384, 0.7): sigma of the kept fraction is 0.0036; 5 sigma.
  EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(n), 1 - p, 0.018);
}

TEST(AttentionDropout, SameSeedSameBitsOtherSeedOtherMask) {
  Tensor a = dropout_probe(0.5, 1, 0, 1, 2, 16), b = dropout_probe(0.5, 1, 0, 1, 2, 16);
  Tensor c = dropout_probe(0.5, 2, 0, 1, 2, 16), d = dropout_probe(0.5, 1, 1000, 1, 2, 16);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_NE(a.to_vector<float>(), c.to_vector<float>());
  EXPECT_NE(a.to_vector<float>(), d.to_vector<float>());
}

TEST(AttentionDropout, ZeroProbabilityIsPlainAttention) {
  Tensor q = randn({1, 6, 2, 4}, 3), k = randn({1, 6, 2, 4}, 4), v = randn({1, 6, 2, 4}, 5);
  EXPECT_EQ(attention(q, k, v, true, 0.0, 0.0, 1).to_vector<float>(),
            attention(q, k, v, true, 0.0, 0.0, 99).to_vector<float>());
}

// ---- layouts

TEST(AttentionOp, StridedViewsEqualContiguousCopies) {
  Tensor qkv = randn({2, 9, 3, 2, 5}, 8);       // fused projection [B, T, 3, H, D]
  Tensor cache = randn({2, 16, 2, 5}, 9);       // a KV cache [B, max_len, H, D]
  Tensor q = qkv.select(2, 0).narrow(1, 6, 3);  // the last 3 positions' queries
  Tensor k = cache.narrow(1, 0, 9), v = qkv.select(2, 2);
  Tensor d_t = randn({2, 9, 2, 5}, 10).transpose(2, 3).contiguous().transpose(2, 3);  // D stride != 1
  Tensor want = attention(q.contiguous(), k.contiguous(), v.contiguous());
  EXPECT_EQ(attention(q, k, v).to_vector<float>(), want.to_vector<float>());
  Tensor want2 = attention(q.contiguous(), d_t.contiguous(), v.contiguous(), false);
  EXPECT_LT(rel_err(attention(q, d_t, v, false), want2), kF32RelTol);
}

TEST(AttentionOp, DefaultScaleIsInverseSqrtHeadDim) {
  Tensor q = randn({1, 5, 2, 9}, 1), k = randn({1, 5, 2, 9}, 2), v = randn({1, 5, 2, 9}, 3);
  EXPECT_EQ(attention(q, k, v).to_vector<float>(), attention(q, k, v, true, 1.0 / 3.0).to_vector<float>());
  EXPECT_EQ(attention(q, k, v, true, -1.0).to_vector<float>(), attention(q, k, v).to_vector<float>());
}

TEST(AttentionOp, CausalFirstRowIsFirstValue) {
  Tensor q = randn({1, 4, 1, 3}, 1), k = randn({1, 4, 1, 3}, 2), v = randn({1, 4, 1, 3}, 3);
  std::vector<float> y = attention(q, k, v).to_vector<float>(), vv = v.to_vector<float>();
  for (int d = 0; d < 3; ++d) EXPECT_FLOAT_EQ(y[static_cast<size_t>(d)], vv[static_cast<size_t>(d)]);
}

TEST(AttentionOp, GradientsOnlyWhereAsked) {
  Tensor q = randn({1, 4, 2, 3}, 1).requires_grad_(), k = randn({1, 4, 2, 3}, 2), v = randn({1, 4, 2, 3}, 3);
  sum(attention(q, k, v)).backward();
  EXPECT_TRUE(q.grad().defined());
  EXPECT_FALSE(k.grad().defined());
  {
    NoGradGuard ng;
    EXPECT_FALSE(attention(q, k, v).requires_grad());
  }
}

TEST(AttentionOp, NoQueriesGivesEmptyOutputAndZeroKeyGradients) {
  Tensor q = Tensor::zeros({2, 0, 2, 3}).requires_grad_(), k = randn({2, 4, 2, 3}, 2).requires_grad_(),
         v = randn({2, 4, 2, 3}, 3).requires_grad_();
  Tensor y = attention(q, k, v);
  EXPECT_EQ(y.shape(), (Shape{2, 0, 2, 3}));
  sum(y).backward();
  EXPECT_EQ(k.grad().to_vector<float>(), std::vector<float>(48, 0.f));
  EXPECT_EQ(v.grad().to_vector<float>(), std::vector<float>(48, 0.f));
}

// ---- bad input

TEST(AttentionOp, BadInputsNameTheProblem) {
  Tensor q = randn({2, 4, 3, 8}, 1), k = randn({2, 6, 3, 8}, 2);
  EXPECT_TRUE(throws_with(
      [&] {
        attention(q.view({2, 4, 24}), k, k);
      },
      {"attention", "[batch, time, heads, head_dim]"}));
  EXPECT_TRUE(throws_with([&] { attention(q, k, k.to(DType::F64)); }, {"attention", "dtype"}));
  EXPECT_TRUE(throws_with([&] { attention(q.to(DType::I64), k, k); }, {"attention", "f32 or f64"}));
  EXPECT_TRUE(throws_with([&] { attention(q, randn({1, 6, 3, 8}, 2), randn({1, 6, 3, 8}, 3)); }, {"batch, heads"}));
  EXPECT_TRUE(throws_with([&] { attention(q, randn({2, 6, 2, 8}, 2), randn({2, 6, 2, 8}, 3)); }, {"heads"}));
  EXPECT_TRUE(throws_with([&] { attention(q, randn({2, 6, 3, 4}, 2), randn({2, 6, 3, 4}, 3)); }, {"head_dim"}));
  EXPECT_TRUE(throws_with([&] { attention(q, k, randn({2, 5, 3, 8}, 3)); }, {"same shape"}));
  EXPECT_TRUE(throws_with([&] { attention(k, q, q); }, {"more positions", "6", "4"}));
  EXPECT_TRUE(throws_with([&] { attention(q, k, k, true, 0.0, 1.0); }, {"dropout_p", "[0, 1)"}));
  EXPECT_TRUE(throws_with([&] { attention(q, k, k, true, 0.0, -0.1); }, {"dropout_p"}));
  EXPECT_TRUE(throws_with([&] { attention(q, k, k, true, std::nan("")); }, {"scale"}));
  EXPECT_TRUE(throws_with([&] { attention(Tensor(), k, k); }, {"attention", "undefined"}));
  EXPECT_TRUE(throws_with(
      [&] {
        attention(randn({2, 4, 3, 0}, 1), randn({2, 6, 3, 0}, 1), randn({2, 6, 3, 0}, 1));
      },
      {"head_dim"}));
}

}  // namespace
