// Dense against hand-computed values and gradients, initialisers, Dropout, Embedding, LayerNorm,
// the loss and the accuracy metric.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/ops.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "support/compare.h"
#include "support/errors.h"
#include "support/gradcheck.h"

using namespace lowrank;
using namespace lowrank::nn;

namespace {
void set(const Tensor& p, const std::vector<double>& v) {
  NoGradGuard ng;
  Tensor(p).copy_(Tensor::from_vector(v, p.shape()));
}
}  // namespace

TEST(Dense, HandComputedForwardWithReluAndKernelLayout) {
  Dense d(3, 2, {.activation = Activation::Relu, .dtype = DType::F64});
  ASSERT_EQ(d.kernel().shape(), (Shape{2, 3}));  // [units, in]
  set(d.kernel(), {1, 2, 3, -1, -1, -1});
  set(d.bias(), {0.5, 1});
  Tensor x = Tensor::from_vector(std::vector<double>{1, 0, 2, -1, 0, 1}, {2, 3});
  // row 0: [1+6+.5, -3+1] = [7.5, -2] -> relu [7.5, 0]; row 1: [-1+3+.5, 1-1+1] = [2.5, 1]
  EXPECT_EQ(d(x).to_vector<double>(), (std::vector<double>{7.5, 0, 2.5, 1}));
}

TEST(Dense, AcceptsLeadingAxesAndSingleVectors) {
  Dense d(4, 3);
  EXPECT_EQ(d(Tensor::ones({2, 5, 4})).shape(), (Shape{2, 5, 3}));
  EXPECT_EQ(d(Tensor::ones({4})).shape(), (Shape{3}));
  try {
    d(Tensor::ones({2, 5}));
    FAIL() << "no throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("Dense"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 5]"), std::string::npos) << m;
  }
}

TEST(Dense, NoBiasHasOnlyKernel) {
  Dense d(4, 3, {.use_bias = false});
  EXPECT_EQ(d.named_parameters().size(), 1u);
  EXPECT_FALSE(d.bias().defined());
}

// linear(x, W, b, relu = true) is one node with the bias and ReLU applied in place: the same bits
// as relu(linear(x, W, b)) in values and in every gradient, with and without bias, for batches and
// single vectors, with exact zeros among the pre-activations (ReLU's mask at 0).
TEST(Dense, FusedReluGivesTheComposedBits) {
  Generator gen(5);
  for (bool bias : {true, false})
    for (const Shape& xs : {Shape{7, 6}, Shape{2, 3, 6}, Shape{6}}) {
      Tensor x = gen.uniform(xs, -1, 1).requires_grad_();
      Tensor w = gen.uniform({5, 6}, -1, 1).requires_grad_();
      Tensor b = bias ? gen.uniform({5}, -1, 1).requires_grad_() : Tensor();
      {
        NoGradGuard ng;
        w.narrow(0, 0, 1).zero_();  // output 0 is exactly 0 (+ b): the mask's edge when b is absent
      }
      const std::vector<Tensor> leaves = bias ? std::vector<Tensor>{x, w, b} : std::vector<Tensor>{x, w};
      Tensor up = gen.uniform(xs.size() == 1 ? Shape{5} : Shape{xs.front(), 5}, -1, 1);
      if (xs.size() == 3) up = gen.uniform({2, 3, 5}, -1, 1);
      std::vector<std::vector<float>> values, grads;
      for (bool fused : {true, false}) {
        for (Tensor t : leaves) t.zero_grad();
        Tensor y = fused ? linear(x, w, b, true) : relu(linear(x, w, b));
        values.push_back(y.to_vector<float>());
        sum(mul(y, up)).backward();
        std::vector<float> g;
        for (const Tensor& t : leaves)
          for (float v : t.grad().to_vector<float>()) g.push_back(v);
        grads.push_back(g);
      }
      EXPECT_EQ(values[0], values[1]) << "bias " << bias << ", x of " << xs.size() << " axes";
      EXPECT_EQ(grads[0], grads[1]) << "bias " << bias << ", x of " << xs.size() << " axes";
      EXPECT_NE(std::count(values[0].begin(), values[0].end(), 0.0f), 0) << "no masked output";
    }
}

TEST(Dense, GradientsMatchCentralDifferences) {
  for (Activation act : {Activation::Linear, Activation::Relu, Activation::Gelu, Activation::Tanh}) {
    Generator gen(3);
    Dense d(4, 3, {.activation = act, .bias_init = Init::uniform(0.5), .dtype = DType::F64}, gen);
    Tensor x = gen.uniform({5, 4}, -1, 1, DType::F64).requires_grad_();
    Tensor w = gen.uniform({5, 3}, -1, 1, DType::F64);
    test::expect_gradients_match([&] { return sum(mul(d(x), w)); }, {x, d.kernel(), d.bias()});
  }
}

TEST(Init, GlorotAndKaimingBoundsAndMoments) {
  Generator gen(1);
  const int64_t in = 300, out = 200;
  struct Case {
    Init init;
    double limit;
  } cases[] = {{Init::glorot_uniform(), std::sqrt(6.0 / (in + out))}, {Init::kaiming_uniform(), 1.0 / std::sqrt(in)}};
  for (const Case& c : cases) {
    std::vector<float> v = initialize(c.init, {out, in}, {in, out}, gen).to_vector<float>();
    double mean = 0, sq = 0, lo = 1e9, hi = -1e9;
    for (float f : v) mean += f, sq += double(f) * f, lo = std::min<double>(lo, f), hi = std::max<double>(hi, f);
    mean /= v.size(), sq /= v.size();
    EXPECT_GE(lo, -c.limit);
    EXPECT_LT(hi, c.limit);
    // 60,000 draws: the sample mean's sd is limit/sqrt(3·60000) ≈ 0.0024·limit, variance's ≈ 0.4%.
    EXPECT_NEAR(mean, 0.0, 0.02 * c.limit) << c.init.name();
    EXPECT_NEAR(sq, c.limit * c.limit / 3, 0.03 * c.limit * c.limit / 3) << c.init.name();
  }
  std::vector<float> n = initialize(Init::normal(0.02), {100000}, {1, 1}, gen).to_vector<float>();
  double sq = 0;
  for (float f : n) sq += double(f) * f;
  EXPECT_NEAR(std::sqrt(sq / n.size()), 0.02, 0.0005);
  for (float f : initialize(Init::zeros(), {10}, {1, 1}, gen).to_vector<float>()) EXPECT_EQ(f, 0.0f);
}

TEST(Init, KerasFansAndParse) {
  EXPECT_EQ(keras_fans({3, 4}).in, 3);
  EXPECT_EQ(keras_fans({3, 4}).out, 4);
  EXPECT_EQ(keras_fans({768, 12, 64}).in, 768 * 12);  // Keras: receptive field = leading axes
  EXPECT_EQ(keras_fans({768, 12, 64}).out, 64 * 768);
  EXPECT_EQ(keras_fans({7}).in, 7);
  EXPECT_EQ(Init::parse("kaiming_uniform").kind, InitKind::KaimingUniform);
  EXPECT_THROW(Init::parse("xavier"), Error);
}

TEST(Init, SameSeedSameBitsAndOffsetsAdvance) {
  Generator a(42), b(42), c(43);
  Dense da(10, 7, {}, a), db(10, 7, {}, b), dc(10, 7, {}, c);
  EXPECT_EQ(test::to_floats(da.kernel()), test::to_floats(db.kernel()));
  EXPECT_NE(test::to_floats(da.kernel()), test::to_floats(dc.kernel()));
  EXPECT_EQ(a.offset(), (70u + 3) / 4);  // bias zeros draw nothing
  Dense da2(10, 7, {}, a);
  EXPECT_NE(test::to_floats(da.kernel()), test::to_floats(da2.kernel()));
}

TEST(Dropout, EvalIsIdentityTrainDropsAndScales) {
  Dropout drop(0.25, 7);
  Tensor x = Tensor::ones({100, 100});
  drop.eval();
  EXPECT_EQ(drop(x).impl(), x.impl());
  drop.train();
  std::vector<float> y = drop(x).to_vector<float>();
  int64_t zeros = 0;
  for (float v : y) {
    EXPECT_TRUE(v == 0.0f || std::abs(v - 1.0f / 0.75f) < 1e-6f) << v;
    zeros += v == 0.0f;
  }
  // 10,000 Bernoulli(0.25): sd 43, so ±250 is far outside chance.
  EXPECT_NEAR(static_cast<double>(zeros), 2500.0, 250.0);
  // The offset moved on: the next mask differs; a reset generator replays the first.
  EXPECT_NE(drop(x).to_vector<float>(), y);
  drop.generator().set_state(7, 0);
  EXPECT_EQ(drop(x).to_vector<float>(), y);
  EXPECT_THROW(Dropout(1.0), Error);
}

TEST(Embedding, LooksUpRowsAndNamesItsTable) {
  Embedding e(5, 3);
  EXPECT_EQ(e.named_parameters()[0].first, "embeddings");
  set(e.embeddings(), std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14});
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{4, 0, 2, 2}, {2, 2});
  Tensor y = e(ids);
  EXPECT_EQ(y.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{12, 13, 14, 0, 1, 2, 6, 7, 8, 6, 7, 8}));
}

TEST(LayerNorm, NormalisesLastAxisWithGammaBeta) {
  LayerNorm ln(4, {.dtype = DType::F64});
  set(ln.gamma(), {1, 2, 1, 1});
  set(ln.beta(), {0, 0, 0, 1});
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {1, 4});
  // mean 2.5, var 1.25: (x - 2.5) / sqrt(1.25 + 1e-5)
  double r = 1.0 / std::sqrt(1.25 + 1e-5);
  std::vector<double> want{-1.5 * r, 2 * -0.5 * r, 0.5 * r, 1.5 * r + 1};
  std::vector<double> got = ln(x).to_vector<double>();
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
  EXPECT_EQ(ln.named_parameters()[0].first, "gamma");
}

TEST(Loss, CrossEntropyHandComputedAndIntegerLabels) {
  CrossEntropyLoss ce;
  Tensor logits = Tensor::from_vector(std::vector<double>{0, 0, std::log(3.0), 0}, {2, 2});
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{1, 0}, {2});
  // row 0: -log(1/2); row 1: -log(3/4)
  EXPECT_NEAR(ce(logits, labels).item(), 0.5 * (std::log(2.0) - std::log(0.75)), 1e-12);
  Tensor u8 = labels.to(DType::U8);
  EXPECT_NEAR(ce(logits, u8).item(), 0.5 * (std::log(2.0) - std::log(0.75)), 1e-12);
  EXPECT_THROW(ce(logits, Tensor::zeros({3}, DType::I64)), Error);
  EXPECT_THROW(ce(logits, Tensor::zeros({2})), Error);  // float labels
}

TEST(Loss, AccuracyCountsArgmaxMatches) {
  Tensor logits = Tensor::from_vector(std::vector<float>{0.1f, 0.9f, 0.8f, 0.2f, 0.3f, 0.7f}, {3, 2});
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{1, 1, 1}, {3});
  EXPECT_EQ(count_correct(logits, labels), 2);
  Accuracy acc;
  acc.update(logits, labels);
  acc.update(logits.narrow(0, 0, 1), labels.narrow(0, 0, 1));
  EXPECT_DOUBLE_EQ(acc.result(), 3.0 / 4.0);
  MeanMetric m;
  m.update(1.0, 3);
  m.update(3.0, 1);
  EXPECT_DOUBLE_EQ(m.result(), 1.5);
}

TEST(Sequential, RunsChildrenInOrder) {
  Sequential s;
  s.add(std::make_shared<Flatten>()).add(std::make_shared<ReLU>());
  Tensor x = Tensor::from_vector(std::vector<float>{-1, 2, -3, 4}, {1, 2, 2});
  EXPECT_EQ(s(x).shape(), (Shape{1, 4}));
  EXPECT_EQ(s(x).to_vector<float>(), (std::vector<float>{0, 2, 0, 4}));
  EXPECT_EQ(s[1].type_name(), "ReLU");
  EXPECT_THROW(s[2], Error);
}
