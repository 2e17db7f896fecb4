// Autograd behaviour: accumulation, explicit gradients, NoGradGuard, detach, zero_grad, graph
// freeing, diamonds, views that share storage, and what requires grad.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "support/compare.h"
#include "support/errors.h"

using namespace lowrank;
using lowrank::test::all_close;
using lowrank::test::throws_with;

namespace {
Tensor leaf(const std::vector<double>& v, const Shape& s) {
  return Tensor::from_vector(v, s).requires_grad_();
}
}  // namespace

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1, 2, 3}, {3});
  sum(mul(x, x)).backward();  // 2x
  EXPECT_TRUE(all_close(x.grad(), {2, 4, 6}, 0));
  sum(mul(x, 3.0)).backward();  // + 3
  EXPECT_TRUE(all_close(x.grad(), {5, 7, 9}, 0));
}

TEST(Autograd, ZeroGradClears) {
  Tensor x = leaf({1, 2}, {2});
  sum(x).backward();
  EXPECT_TRUE(x.grad().defined());
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  sum(mul(x, 2.0)).backward();
  EXPECT_TRUE(all_close(x.grad(), {2, 2}, 0));
}

TEST(Autograd, BackwardWithExplicitGradient) {
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  Tensor y = mul(x, x);
  y.backward(Tensor::from_vector(std::vector<double>{1, 0, -1, 0.5}, {2, 2}));
  EXPECT_TRUE(all_close(x.grad(), {2, 0, -6, 4}, 0));
  // A leaf's own backward accumulates the given gradient.
  Tensor z = leaf({1, 1}, {2});
  z.backward(Tensor::from_vector(std::vector<double>{3, 4}, {2}));
  EXPECT_TRUE(all_close(z.grad(), {3, 4}, 0));
}

TEST(Autograd, BackwardMisuseThrows) {
  Tensor x = leaf({1, 2}, {2});
  EXPECT_TRUE(throws_with([&] { mul(x, 2.0).backward(); }, {"backward", "scalar", "[2]"}));
  EXPECT_TRUE(throws_with([&] { mul(x, 2.0).backward(Tensor::ones({3}, DType::F64)); }, {"backward", "[3]", "[2]"}));
  Tensor c = Tensor::ones({2});
  EXPECT_TRUE(throws_with([&] { sum(c).backward(); }, {"backward", "does not require grad"}));
  EXPECT_TRUE(throws_with([&] { Tensor::zeros({2}, DType::I64).requires_grad_(); }, {"requires_grad_", "i64"}));
}

TEST(Autograd, NoGradGuardRecordsNothingAndRestores) {
  Tensor x = leaf({1, 2}, {2});
  {
    NoGradGuard ng;
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    {
      NoGradGuard inner;
      EXPECT_FALSE(grad_mode_enabled());
    }
    EXPECT_FALSE(grad_mode_enabled());
  }
  EXPECT_TRUE(grad_mode_enabled());
  EXPECT_TRUE(mul(x, x).requires_grad());
}

TEST(Autograd, DetachSharesStorageAndStopsGradient) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor d = x.detach();
  EXPECT_EQ(d.storage().get(), x.storage().get());
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  sum(add(mul(x, d), x)).backward();  // d is a constant: d(x*d + x)/dx = d + 1
  EXPECT_TRUE(all_close(x.grad(), {2, 3, 4}, 0));
}

TEST(Autograd, OnlyTensorsThatNeedGradGetThem) {
  Tensor x = leaf({1, 2}, {2});
  Tensor c = Tensor::from_vector(std::vector<double>{5, 6}, {2});
  Tensor y = mul(x, c);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_FALSE(mul(c, c).requires_grad());
  sum(y).backward();
  EXPECT_TRUE(all_close(x.grad(), {5, 6}, 0));
  EXPECT_FALSE(c.grad().defined());
}

TEST(Autograd, DiamondGraphSumsBothPaths) {
  Tensor a = leaf({1, -2, 3}, {3});
  Tensor b = mul(a, 2.0), c = mul(a, 3.0);
  Tensor d = mul(b, c);  // 6 a^2 -> 12 a
  sum(d).backward();
  EXPECT_TRUE(all_close(a.grad(), {12, -24, 36}, 1e-12));
  // A deeper diamond: one intermediate used by three consumers.
  Tensor x = leaf({0.5, 1.5}, {2});
  Tensor h = exp(x);
  sum(add(add(h, mul(h, h)), tanh(h))).backward();
  std::vector<double> want;
  for (double v : {0.5, 1.5}) {
    const double e = std::exp(v), t = std::tanh(e);
    want.push_back(e * (1 + 2 * e + (1 - t * t)));
  }
  EXPECT_TRUE(all_close(x.grad(), want, 1e-12));
}

TEST(Autograd, GraphIsFreedAfterBackward) {
  Tensor x = leaf({1, 2, 3}, {3});
  std::weak_ptr<Storage> saved;
  Tensor y;
  {
    Tensor e = exp(x);  // exp's node saves its output
    saved = e.storage();
    y = sum(mul(e, 3.0));
  }
  EXPECT_FALSE(saved.expired());  // the graph holds it until backward
  std::weak_ptr<Node> root = y.grad_fn();
  y.backward();
  EXPECT_TRUE(saved.expired());
  ASSERT_FALSE(root.expired());  // y still names its node, now empty
  EXPECT_TRUE(root.lock()->inputs.empty());
  EXPECT_FALSE(static_cast<bool>(root.lock()->backward));
  EXPECT_TRUE(throws_with([&] { y.backward(); }, {"backward", "freed"}));
}

TEST(Autograd, SharedSubgraphFreedByAnEarlierBackwardThrows) {
  // Silently dropping the path through the freed node would give a wrong gradient.
  Tensor x = leaf({1, 2}, {2});
  Tensor h = mul(x, x);
  Tensor z1 = sum(h), z2 = sum(mul(h, 2.0));
  z1.backward();
  EXPECT_TRUE(throws_with([&] { z2.backward(); }, {"backward", "freed"}));
}

TEST(Autograd, ViewsShareStorageAndRouteGradients) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor v = x.slice(1, 0, 3, 2);  // columns 0 and 2
  EXPECT_EQ(v.storage().get(), x.storage().get());
  Tensor t = x.mT();
  // Overlapping views: x[:, 0:2] and x[:, 1:3] both see column 1.
  Tensor o1 = x.slice(1, 0, 2), o2 = x.slice(1, 1, 3);
  Tensor loss = add(add(sum(mul(v, 2.0)), sum(mul(o1, o2))), sum(t.select(0, 1)));
  loss.backward();
  // v: +2 on columns 0 and 2; o1*o2: x01, x00 + x02, x01 per row; t row 1: +1 on column 1.
  EXPECT_TRUE(all_close(x.grad(), {2 + 2, 4 + 1, 2 + 2, 2 + 5, 10 + 1, 2 + 5}, 0));
}

TEST(Autograd, LeafGradIsAFreshContiguousTensor) {
  // Optimizers update grads in place: a grad must never alias another tensor's storage.
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  Tensor g = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  x.backward(g);
  EXPECT_NE(x.grad().storage().get(), g.storage().get());
  Tensor y = leaf({1, 2, 3, 4}, {2, 2});
  mul(y.mT(), 1.0).backward(g);  // the gradient arrives as a transposed view
  EXPECT_TRUE(x.grad().is_contiguous());
  EXPECT_TRUE(y.grad().is_contiguous());
  EXPECT_TRUE(all_close(y.grad(), {1, 3, 2, 4}, 0));
}

TEST(Autograd, F32GradientsStayF32) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2}, {2}).requires_grad_();
  sum(mul(x, x)).backward();
  EXPECT_EQ(x.grad().dtype(), DType::F32);
  EXPECT_TRUE(all_close(x.grad(), {2, 4}, 0));
}
