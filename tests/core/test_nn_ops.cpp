// softmax/log_softmax, cross_entropy, layer_norm, embedding and dropout on the CPU, against
// hand-worked values and plain host loops, in f32 and f64.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "support/compare.h"
#include "support/errors.h"

using namespace lowrank;
using lowrank::test::all_close;
using lowrank::test::strided_values;
using lowrank::test::throws_with;
using lowrank::test::tol_for;

namespace {

class NnOps : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
  Tensor vec(const std::vector<double>& v, const Shape& s) const { return Tensor::from_vector(v, s).to(dt()); }
  Tensor ids(const std::vector<int64_t>& v, const Shape& s) const { return Tensor::from_vector(v, s); }
};

// softmax([1, 2, 3]) and log_softmax([1, 2, 3]), from exp(k) / (e + e^2 + e^3).
const std::vector<double> kSoftmax123{0.09003057317038046, 0.24472847105479764, 0.6652409557748219};
const std::vector<double> kLogSoftmax123{-2.4076059644443806, -1.4076059644443806, -0.40760596444438046};

}  // namespace

TEST_P(NnOps, SoftmaxHandWorked) {
  const double t = tol_for(dt());
  EXPECT_TRUE(all_close(softmax(vec({1, 2, 3}, {3})), kSoftmax123, t));
  EXPECT_TRUE(all_close(log_softmax(vec({1, 2, 3}, {3})), kLogSoftmax123, t));
  // Shifting a row changes nothing, and huge logits do not overflow.
  EXPECT_TRUE(all_close(softmax(vec({1001, 1002, 1003}, {1, 3})), kSoftmax123, t));
  EXPECT_TRUE(all_close(softmax(vec({-1e4, 0}, {2})), {0, 1}, t));
  // Axis 0 of [[1, 2], [3, 4]]: each column is softmax([a, a + 2]).
  const double lo = 1 / (1 + std::exp(2.0));
  EXPECT_TRUE(all_close(softmax(vec({1, 2, 3, 4}, {2, 2}), 0), {lo, lo, 1 - lo, 1 - lo}, t));
  EXPECT_TRUE(all_close(log_softmax(vec({1, 2, 3, 4}, {2, 2}), -2),
                        {std::log(lo), std::log(lo), std::log(1 - lo), std::log(1 - lo)}, t));
}

TEST_P(NnOps, SoftmaxOfCausallyMaskedScores) {
  // Attention rows after masked_fill(-inf): masked entries get exactly 0, the rest renormalise.
  Tensor scores = vec({1, 2, 3, 1, 2, 3, 1, 2, 3}, {3, 3});
  Tensor mask = Tensor::from_data<uint8_t>(std::vector<uint8_t>{0, 1, 1, 0, 0, 1, 0, 0, 0}, {3, 3});
  Tensor p = softmax(masked_fill(scores, mask, -INFINITY));
  const double e = 1 / (1 + std::exp(1.0));
  EXPECT_TRUE(all_close(p, {1, 0, 0, e, 1 - e, 0, kSoftmax123[0], kSoftmax123[1], kSoftmax123[2]}, tol_for(dt())));
}

TEST_P(NnOps, SoftmaxAnyAxisOfViewsMatchesHostLoop) {
  // [5, 7, 3] odd sizes; the input is a transposed view of a [5, 3, 7] tensor.
  Tensor x = randn({5, 3, 7}, 21, 0, dt()).transpose(1, 2);
  std::vector<double> xv = strided_values(x);
  const Shape s = x.shape();
  for (int axis = 0; axis < 3; ++axis) {
    for (bool logf : {false, true}) {
      Tensor y = logf ? log_softmax(x, axis) : softmax(x, axis);
      EXPECT_EQ(y.shape(), s);
      EXPECT_TRUE(y.is_contiguous());
      Strides cs = contiguous_strides(s);
      std::vector<double> want(xv.size());
      for (size_t i = 0; i < xv.size(); ++i) {
        int64_t pos = (static_cast<int64_t>(i) / cs[axis]) % s[axis];
        int64_t start = static_cast<int64_t>(i) - pos * cs[axis];
        double mx = -INFINITY, z = 0;
        for (int64_t j = 0; j < s[axis]; ++j) mx = std::max(mx, xv[start + j * cs[axis]]);
        for (int64_t j = 0; j < s[axis]; ++j) z += std::exp(xv[start + j * cs[axis]] - mx);
        want[i] = logf ? xv[i] - mx - std::log(z) : std::exp(xv[i] - mx) / z;
      }
      EXPECT_TRUE(all_close(y, want, tol_for(dt()) * 10)) << "axis " << axis << " log " << logf;
    }
  }
}

TEST_P(NnOps, CrossEntropyHandWorked) {
  Tensor logits = vec({1, 2, 3, 1, 2, 3}, {2, 3});
  const double t = tol_for(dt());
  // Row losses are -log_softmax at the label: 0.4076 (label 2) and 2.4076 (label 0).
  EXPECT_NEAR(cross_entropy(logits, ids({2, 0}, {2})).item(), (-kLogSoftmax123[2] - kLogSoftmax123[0]) / 2, t);
  // The ignored row leaves the mean and the gradient.
  Tensor lg = logits.detach().requires_grad_();
  Tensor loss = cross_entropy(lg, ids({2, -100}, {2}));
  EXPECT_NEAR(loss.item(), -kLogSoftmax123[2], t);
  loss.backward();
  EXPECT_TRUE(all_close(lg.grad(), {kSoftmax123[0], kSoftmax123[1], kSoftmax123[2] - 1, 0, 0, 0}, t));
  // A custom ignore index.
  EXPECT_NEAR(cross_entropy(logits, ids({7, 1}, {2}), 7).item(), -kLogSoftmax123[1], t);
}

TEST_P(NnOps, CrossEntropyAllIgnoredIsZeroNotNan) {
  Tensor lg = vec({1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  Tensor loss = cross_entropy(lg, ids({-100, -100}, {2}));
  EXPECT_EQ(loss.item(), 0.0);
  loss.backward();
  EXPECT_TRUE(all_close(lg.grad(), {0, 0, 0, 0, 0, 0}, 0));
}

TEST_P(NnOps, CrossEntropyBatchedLogitsMatchHostLoop) {
  // [B, T, C] = [3, 5, 11] logits as a permuted view, labels [3, 5] with some ignored.
  Tensor logits = randn({5, 3, 11}, 31, 0, dt()).permute({1, 0, 2});
  std::vector<int64_t> lv;
  for (int i = 0; i < 15; ++i) lv.push_back(i % 4 == 3 ? -100 : (i * 7) % 11);
  Tensor labels = ids(lv, {3, 5});
  std::vector<double> x = strided_values(logits);
  double total = 0;
  int count = 0;
  for (int i = 0; i < 15; ++i) {
    if (lv[i] == -100) continue;
    double mx = -INFINITY, z = 0;
    for (int j = 0; j < 11; ++j) mx = std::max(mx, x[i * 11 + j]);
    for (int j = 0; j < 11; ++j) z += std::exp(x[i * 11 + j] - mx);
    total += std::log(z) + mx - x[i * 11 + lv[i]];
    ++count;
  }
  EXPECT_NEAR(cross_entropy(logits, labels).item(), total / count, tol_for(dt()) * 10);
}

TEST_P(NnOps, LayerNormHandWorked) {
  const double eps = 1e-5, t = tol_for(dt());
  Tensor x = vec({1, 2, 3, 4, 2, 2, 2, 2}, {2, 4});
  const double r = 1 / std::sqrt(1.25 + eps);  // mean 2.5, variance 1.25
  EXPECT_TRUE(all_close(layer_norm(x, Tensor(), Tensor(), eps), {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r, 0, 0, 0, 0}, t));
  Tensor w = vec({1, 2, 3, 4}, {4}), b = vec({0, 1, 0, -1}, {4});
  EXPECT_TRUE(all_close(layer_norm(x, w, b, eps), {-1.5 * r, -1 * r + 1, 1.5 * r, 6 * r - 1, 0, 1, 0, -1}, t));
  EXPECT_TRUE(all_close(layer_norm(x, w, Tensor(), eps), {-1.5 * r, -1 * r, 1.5 * r, 6 * r, 0, 0, 0, 0}, t));
  EXPECT_TRUE(
      all_close(layer_norm(x, Tensor(), b, eps), {-1.5 * r, -0.5 * r + 1, 0.5 * r, 1.5 * r - 1, 0, 1, 0, -1}, t));
}

TEST_P(NnOps, LayerNormOfViewMatchesHostLoop) {
  Tensor x = add(mul(randn({7, 3, 9}, 41, 0, dt()), 3.0), 5.0).slice(1, 0, 3, 2);  // [7, 2, 9], mean far from 0
  Tensor w = randn({9}, 42, 0, dt()), b = randn({9}, 43, 0, dt());
  Tensor y = layer_norm(x, w, b, 1e-5);
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>(), want;
  for (int r = 0; r < 14; ++r) {
    double m = 0, v = 0;
    for (int j = 0; j < 9; ++j) m += xv[r * 9 + j] / 9;
    for (int j = 0; j < 9; ++j) v += (xv[r * 9 + j] - m) * (xv[r * 9 + j] - m) / 9;
    for (int j = 0; j < 9; ++j) want.push_back((xv[r * 9 + j] - m) / std::sqrt(v + 1e-5) * wv[j] + bv[j]);
  }
  EXPECT_TRUE(all_close(y, want, tol_for(dt()) * 10));
}

TEST_P(NnOps, EmbeddingGatherAndScatterAdd) {
  Tensor w = vec({0, 1, 2, 3, 4, 5}, {3, 2}).requires_grad_();
  Tensor out = embedding(w, ids({2, 0, 1, 1}, {2, 2}));
  EXPECT_EQ(out.shape(), (Shape{2, 2, 2}));
  EXPECT_TRUE(all_close(out, {4, 5, 0, 1, 2, 3, 2, 3}, 0));
  Tensor g = vec({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  out.backward(g);
  // Row 1 is used twice: its gradient is the sum of both uses.
  EXPECT_TRUE(all_close(w.grad(), {3, 4, 5 + 7, 6 + 8, 1, 2}, 0));
  // A view of the weight (transposed back) and a strided id tensor.
  Tensor wt = vec({0, 2, 4, 1, 3, 5}, {2, 3}).mT();
  Tensor strided_ids = ids({2, 9, 0, 9}, {4}).slice(0, 0, 4, 2);
  EXPECT_TRUE(all_close(embedding(wt, strided_ids), {4, 5, 0, 1}, 0));
}

TEST_P(NnOps, EmbeddingOutOfRangeNamesIdAndVocabulary) {
  Tensor w = Tensor::zeros({5, 3}, dt());
  EXPECT_TRUE(throws_with([&] { embedding(w, ids({1, 5}, {2})); }, {"embedding", "id 5", "vocabulary of 5"}));
  EXPECT_TRUE(throws_with([&] { embedding(w, ids({-1}, {1})); }, {"embedding", "id -1", "vocabulary of 5"}));
}

TEST_P(NnOps, DropoutMaskScalesAndMatchesRand) {
  const double p = 0.3;
  Tensor x = randn({64, 33}, 51, 0, dt()).requires_grad_();
  Tensor y = dropout(x, p, true, 1234, 77);
  std::vector<double> u = rand({64, 33}, 1234, 77, dt()).to_vector<double>();
  std::vector<double> xv = x.to_vector<double>(), want(xv.size()), mask(xv.size());
  int64_t kept = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    mask[i] = u[i] >= p ? 1 / (1 - p) : 0;
    want[i] = xv[i] * mask[i];
    kept += u[i] >= p;
  }
  EXPECT_TRUE(all_close(y, want, tol_for(dt())));
  // 2112 Bernoulli(0.7) draws: the kept fraction is within 5 standard deviations (0.05) of 0.7.
  EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(xv.size()), 1 - p, 0.05);
  y.backward(Tensor::ones({64, 33}, dt()));
  EXPECT_TRUE(all_close(x.grad(), mask, tol_for(dt())));
  // Same seed and offset: same bits; another offset: another mask.
  EXPECT_EQ(dropout(x, p, true, 1234, 77).to_vector<double>(), y.to_vector<double>());
  EXPECT_NE(dropout(x, p, true, 1234, 78).to_vector<double>(), y.to_vector<double>());
}

TEST_P(NnOps, DropoutIdentityCasesAndBadP) {
  Tensor x = randn({4, 4}, 61, 0, dt());
  EXPECT_EQ(dropout(x, 0.5, false, 1).impl(), x.impl());  // eval
  EXPECT_EQ(dropout(x, 0.0, true, 1).impl(), x.impl());
  EXPECT_TRUE(throws_with([&] { dropout(x, 1.0, true, 1); }, {"dropout", "[0, 1)", "1"}));
  EXPECT_TRUE(throws_with([&] { dropout(x, -0.1, true, 1); }, {"dropout", "-0.1"}));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NnOps, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });
