// The fused LoRA op against the unfused composition of plain ops (docs/design.md, test kind 4), its
// bad-input messages, and which gradients it produces.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "support/errors.h"
#include "support/gradcheck.h"

using namespace lowrank;

namespace {

// Fused and unfused differ only in f32 summation order over at most in + r terms.
constexpr double kFusedRelTol = 1e-5;

double rel_err(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    num += (va[i] - vb[i]) * (va[i] - vb[i]);
    den += vb[i] * vb[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

struct LoraCase {
  int64_t m, in, out, r;
  bool bias, train_w;
};

class LoraFusedVsUnfused : public ::testing::TestWithParam<LoraCase> {};

TEST_P(LoraFusedVsUnfused, ForwardAndBackwardMatch) {
  const LoraCase c = GetParam();
  const double scale = 16.0 / static_cast<double>(c.r), base_scale = 0.9;
  uint64_t seed = 1234 + static_cast<uint64_t>(c.m * 7 + c.r);
  auto make = [&](const Shape& s, uint64_t off, bool grad) {
    Tensor t = randn(s, seed, off);
    if (grad) t.requires_grad_();
    return t;
  };
  Tensor x1 = make({c.m, c.in}, 0, true), w1 = make({c.out, c.in}, 1000000, c.train_w);
  Tensor b1 = c.bias ? make({c.out}, 2000000, c.train_w) : Tensor();
  Tensor a1 = make({c.r, c.in}, 3000000, true), bm1 = make({c.out, c.r}, 4000000, true);
  Tensor x2 = x1.detach().clone().requires_grad_(), w2 = w1.detach().clone(), a2 = a1.detach().clone().requires_grad_();
  Tensor bm2 = bm1.detach().clone().requires_grad_(), b2 = c.bias ? b1.detach().clone() : Tensor();
  if (c.train_w) {
    w2.requires_grad_();
    if (c.bias) b2.requires_grad_();
  }

  Tensor y1 = lora_linear(x1, w1, b1, a1, bm1, scale, base_scale);
  Tensor y2 = add(mul(matmul(x2, w2.mT()), base_scale), mul(matmul(matmul(x2, a2.mT()), bm2.mT()), scale));
  if (c.bias) y2 = add(y2, b2);
  EXPECT_LT(rel_err(y1, y2), kFusedRelTol);

  Tensor g = randn({c.m, c.out}, seed, 5000000);
  y1.backward(g);
  y2.backward(g);
  EXPECT_LT(rel_err(x1.grad(), x2.grad()), kFusedRelTol);
  EXPECT_LT(rel_err(a1.grad(), a2.grad()), kFusedRelTol);
  EXPECT_LT(rel_err(bm1.grad(), bm2.grad()), kFusedRelTol);
  if (c.train_w) {
    EXPECT_LT(rel_err(w1.grad(), w2.grad()), kFusedRelTol);
    if (c.bias) {
      EXPECT_LT(rel_err(b1.grad(), b2.grad()), kFusedRelTol);
    }
  } else {
    EXPECT_FALSE(w1.grad().defined()) << "a frozen W must get no gradient";
  }
}

// Ranks 1, 5, 64, 80 and batch sizes not divisible by any tile size.
INSTANTIATE_TEST_SUITE_P(
    Shapes, LoraFusedVsUnfused,
    ::testing::Values(LoraCase{1, 128, 128, 1, true, false}, LoraCase{37, 128, 128, 5, true, false},
                      LoraCase{33, 96, 80, 64, false, false}, LoraCase{129, 128, 128, 80, true, true},
                      LoraCase{7, 784, 128, 8, true, true}, LoraCase{65, 130, 70, 5, false, true}));

TEST(LoraOp, LeadingAxesAndF64) {
  Tensor x = randn({2, 3, 6}, 1, 0, DType::F64), w = randn({4, 6}, 1, 100, DType::F64);
  Tensor a = randn({2, 6}, 1, 200, DType::F64), bm = randn({4, 2}, 1, 300, DType::F64);
  Tensor y = lora_linear(x, w, Tensor(), a, bm, 0.5, 1.0);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 4}));
  Tensor ref = add(matmul(x, w.mT()), mul(matmul(matmul(x, a.mT()), bm.mT()), 0.5));
  EXPECT_LT(rel_err(y, ref), 1e-12);
}

TEST(LoraOp, BaseScaleZeroIsPureLowRank) {
  Tensor x = randn({5, 8}, 2), w = randn({3, 8}, 2, 50), a = randn({2, 8}, 2, 90), bm = randn({3, 2}, 2, 120);
  Tensor y = lora_linear(x, w, Tensor(), a, bm, 1.0, 0.0);
  EXPECT_LT(rel_err(y, matmul(matmul(x, a.mT()), bm.mT())), kFusedRelTol);
}

TEST(LoraOp, BadShapesNameTheProblem) {
  Tensor x = Tensor::zeros({4, 8}), w = Tensor::zeros({6, 8});
  EXPECT_TRUE(test::throws_with(
      [&] {
        lora_linear(x, w, Tensor(), Tensor::zeros({2, 9}), Tensor::zeros({6, 2}), 1, 1);
      },
      {"A [2, 9]"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        lora_linear(x, w, Tensor(), Tensor::zeros({2, 8}), Tensor::zeros({6, 3}), 1, 1);
      },
      {"B [6, 3]"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        lora_linear(Tensor::zeros({4, 7}), w, Tensor(), Tensor::zeros({2, 8}), Tensor::zeros({6, 2}), 1, 1);
      },
      {"x [4, 7]"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        lora_linear(x, w, Tensor::zeros({5}), Tensor::zeros({2, 8}), Tensor::zeros({6, 2}), 1, 1);
      },
      {"bias [5]"}));
  EXPECT_TRUE(test::throws_with(
      [&] {
        lora_linear(x, w, Tensor(), Tensor::zeros({0, 8}), Tensor::zeros({6, 0}), 1, 1);
      },
      {"rank"}));
}

}  // namespace

// Central differences through the fused op: every input trainable, then the usual LoRA case
// (frozen W and bias) on a 3-D x, where the op flattens the leading axes.
LR_GRADCHECK_TEST(LoraOp, Gradcheck, OpKind::LoraLinear) {
  using Inputs = std::vector<Tensor>;
  Tensor x = test::random_f64({2, 3, 5}, 1), w = test::random_f64({4, 5}, 2), b = test::random_f64({4}, 3);
  Tensor a = test::random_f64({2, 5}, 4), bm = test::random_f64({4, 2}, 5);
  EXPECT_TRUE(test::gradcheck(
      [](const Inputs& v) {
        return lora_linear(v[0].reshape({6, 5}), v[1], v[2], v[3], v[4], 0.5, 0.9);
      },
      {x, w, b, a, bm}));
  EXPECT_TRUE(
      test::gradcheck([&](const Inputs& v) { return lora_linear(v[0], w, b, v[1], v[2], 2.0, 1.0); }, {x, a, bm}));
}
