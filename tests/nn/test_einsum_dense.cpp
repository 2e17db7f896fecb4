// EinsumDense: Keras' shape rules (kernel, bias and output shapes from the equation), invalid
// equations, and the forward pass against Dense and hand-computed values.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "nn/einsum_dense.h"
#include "support/compare.h"
#include "support/errors.h"
#include "support/gradcheck.h"

using namespace lowrank;
using namespace lowrank::nn;

using lowrank::test::error_of;

// The examples of Keras' EinsumDense documentation and the GPT-2 projections (KerasNLP).
TEST(EinsumDenseShapes, KerasExamples) {
  auto s = analyze_einsum_dense("ab,bc->ac", {-1, 32}, {64}, "c");
  EXPECT_EQ(s.kernel, (Shape{32, 64}));
  EXPECT_EQ(s.bias, (Shape{64}));
  EXPECT_EQ(s.output, (Shape{-1, 64}));

  s = analyze_einsum_dense("abc,cd->abd", {-1, 32, 128}, {-1, 64}, "d");
  EXPECT_EQ(s.kernel, (Shape{128, 64}));
  EXPECT_EQ(s.bias, (Shape{64}));
  EXPECT_EQ(s.output, (Shape{-1, 32, 64}));

  s = analyze_einsum_dense("...b,bc->...c", {-1, 32, 128}, {64}, "c");
  EXPECT_EQ(s.kernel, (Shape{128, 64}));
  EXPECT_EQ(s.bias, (Shape{64}));
  EXPECT_EQ(s.output, (Shape{-1, 32, 64}));
  EXPECT_EQ(s.input_spec.size(), 3u);

  s = analyze_einsum_dense("abc,cde->abde", {-1, -1, 768}, {-1, 12, 64}, "de");
  EXPECT_EQ(s.kernel, (Shape{768, 12, 64}));
  EXPECT_EQ(s.bias, (Shape{12, 64}));
  EXPECT_EQ(s.output, (Shape{-1, -1, 12, 64}));

  s = analyze_einsum_dense("abcd,cde->abe", {-1, -1, 12, 64}, {-1, 768}, "e");
  EXPECT_EQ(s.kernel, (Shape{12, 64, 768}));
  EXPECT_EQ(s.bias, (Shape{768}));
}

TEST(EinsumDenseShapes, BiasSpansFromFirstBiasAxisWithOnesBetween) {
  // Keras: the bias covers the output spec from its first bias axis on, 1 where no bias.
  auto s = analyze_einsum_dense("abc,cd->abd", {-1, 32, 128}, {32, 64}, "b");
  EXPECT_EQ(s.bias, (Shape{32, 1}));
  s = analyze_einsum_dense("abc,cde->abde", {-1, 8, 16}, {8, 2, 4}, "be");
  EXPECT_EQ(s.bias, (Shape{8, 1, 4}));
  s = analyze_einsum_dense("ab,bc->ac", {-1, 3}, {5});
  EXPECT_TRUE(s.bias.empty());
}

TEST(EinsumDenseShapes, RightElided) {
  auto s = analyze_einsum_dense("ab...,bc->ac...", {-1, 4, 7}, {5}, "c");
  EXPECT_EQ(s.kernel, (Shape{4, 5}));
  EXPECT_EQ(s.output, (Shape{-1, 5, 7}));
  EXPECT_EQ(s.bias, (Shape{5, 1}));  // Keras appends a 1 per elided axis
}

TEST(EinsumDenseShapes, InvalidEquationsAreRejectedClearly) {
  struct Case {
    std::string eq;
    Shape in, out;
    std::string bias, expect;
  } cases[] = {
      {"ab,bc", {-1, 3}, {4}, "", "invalid equation 'ab,bc'"},
      {"ab->ac", {-1, 3}, {4}, "", "invalid equation"},
      {"a1,bc->ac", {-1, 3}, {4}, "", "invalid equation"},
      {"..b,bc->..c", {-1, 3}, {4}, "", "invalid equation"},
      {"ab,bc->ad", {-1, 3}, {4}, "", "output axis 'd' has no corresponding axis"},
      {"ab,bcd->ac", {-1, 3}, {4}, "", "kernel axis 'd' has no match"},
      {"aab,bc->ac", {-1, 3, 3}, {4}, "", "repeats axis 'a'"},
      {"ab,bc->ac", {-1, 3}, {4}, "x", "bias axis 'x' is not part of the output spec"},
      {"ab,bc->ac", {-1, 3}, {4, 5}, "", "output_shape must give the 1"},
      {"abc,cd->abd", {-1, 3}, {3, 4}, "", "has 3 input axes"},
      {"abc,cd->abd", {-1, 32, 8}, {16, 4}, "", "do not match at shared axis 'b'"},
      {"abc,cd->abd", {-1, 32, -1}, {32, 4}, "", "kernel axis 'c' takes its size from input axis 2"},
      {"abc,cde->abde", {-1, 4, 8}, {4, -1, 2}, "", "kernel axis 'd' takes its size from output axis"},
      {"...b,bc->...c", {3}, {4}, "", "the '...' must cover at least one"},
  };
  for (const Case& c : cases) {
    std::string m = error_of([&] { analyze_einsum_dense(c.eq, c.in, c.out, c.bias); });
    EXPECT_NE(m.find(c.expect), std::string::npos) << c.eq << " -> '" << m << "'";
    EXPECT_NE(m.find("EinsumDense"), std::string::npos) << m;
  }
}

TEST(EinsumDense, MatchesDenseOnTheMatrixEquation) {
  Generator gen(5);
  EinsumDense e("ab,bc->ac", {3}, {-1, 4}, {.bias_axes = "c", .activation = Activation::Relu, .dtype = DType::F64},
                gen);
  ASSERT_EQ(e.kernel().shape(), (Shape{4, 3}));
  Dense d(4, 3, {.activation = Activation::Relu, .dtype = DType::F64});
  {
    NoGradGuard ng;
    Tensor(d.kernel()).copy_(e.kernel().mT());
    Tensor(e.bias()).copy_(gen.uniform({3}, -1, 1, DType::F64));
    Tensor(d.bias()).copy_(e.bias());
  }
  Tensor x = gen.uniform({6, 4}, -1, 1, DType::F64);
  std::vector<double> a = e(x).to_vector<double>(), b = d(x).to_vector<double>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12);
}

TEST(EinsumDense, HeadsProjectionHandComputed) {
  // "abc,cde->abde" with c=2, d=2 heads, e=1: y[a,b,d,0] = sum_c x[a,b,c] k[c,d,0] + bias[d,0].
  EinsumDense e("abc,cde->abde", {-1, 2, 1}, {-1, -1, 2}, {.bias_axes = "de", .dtype = DType::F64});
  {
    NoGradGuard ng;
    Tensor(e.kernel()).copy_(Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2, 1}));
    Tensor(e.bias()).copy_(Tensor::from_vector(std::vector<double>{10, 20}, {2, 1}));
  }
  Tensor x = Tensor::from_vector(std::vector<double>{1, 1, 2, 0, 0, 1}, {1, 3, 2});
  Tensor y = e(x);
  EXPECT_EQ(y.shape(), (Shape{1, 3, 2, 1}));
  // x rows: (1,1) -> [1+3, 2+4] = [4, 6]; (2,0) -> [2, 4]; (0,1) -> [3, 4]; plus bias [10, 20]
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{14, 26, 12, 24, 13, 24}));
  std::string m = error_of([&] { e(Tensor::ones({1, 3, 5}, DType::F64)); });
  EXPECT_NE(m.find("axis 'c' must be 2"), std::string::npos) << m;
}

TEST(EinsumDense, GradientsMatchCentralDifferences) {
  Generator gen(8);
  EinsumDense e("abc,cde->abde", {-1, 3, 2}, {-1, -1, 4},
                {.bias_axes = "de", .bias_init = Init::uniform(0.5), .dtype = DType::F64}, gen);
  Tensor x = gen.uniform({2, 3, 4}, -1, 1, DType::F64).requires_grad_();
  Tensor w = gen.uniform({2, 3, 3, 2}, -1, 1, DType::F64);
  test::expect_gradients_match([&] { return sum(mul(e(x), w)); }, {x, e.kernel(), e.bias()});
}
