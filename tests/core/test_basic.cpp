// Smoke tests of Tensor, views, elementwise ops, reductions, matmul and autograd on the CPU.
#include <gtest/gtest.h>

#include "core/ops.h"

using namespace lowrank;

TEST(Tensor, FromVectorRoundTrip) {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(t.mT().contiguous().to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(Ops, BroadcastAddAndBackward) {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  Tensor b = Tensor::from_vector(std::vector<double>{10, 20, 30}, {3}).requires_grad_();
  Tensor y = sum(mul(add(a, b), a));
  // sum((a+b)*a) -> d/da = 2a + b, d/db = sum_rows(a)
  y.backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{12, 24, 36, 18, 30, 42}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{5, 7, 9}));
}

TEST(Ops, MatmulTransposedViewAndGrad) {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2}).requires_grad_();
  Tensor b = Tensor::from_vector(std::vector<double>{1, 0, 2, 1, 1, 1}, {3, 2});
  Tensor c = matmul(a.mT(), b);  // [2,3]x[3,2]
  EXPECT_EQ(c.to_vector<double>(), (std::vector<double>{1 + 6 + 5, 0 + 3 + 5, 2 + 8 + 6, 0 + 4 + 6}));
  sum(c).backward();
  // d sum(a^T b)/da[i,j] = sum_k b[i,k]
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{1, 1, 3, 3, 2, 2}));
}

TEST(Errors, ShapeMismatchNamesOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  try {
    matmul(a, b);
    FAIL() << "no throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("matmul"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[4, 5]"), std::string::npos) << m;
  }
}
