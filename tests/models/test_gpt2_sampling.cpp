// Next-token sampling: greedy ties, temperature against a hand softmax, top-k and top-p against
// hand-worked cut-offs, draws over a grid of u matching the distribution, seeded determinism and
// bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "models/gpt2/sampling.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;

namespace {

// Probabilities are sums of a handful of exps in double: far tighter than this.
constexpr double kProbTol = 1e-12;
// Draw frequencies over a grid of 20000 u values differ from the probabilities by at most the
// grid step per token boundary (2 / 20000).
constexpr int kGrid = 20000;
constexpr double kFreqTol = 2.0 / kGrid;

std::vector<double> softmax(const std::vector<float>& l, double t) {
  double m = -INFINITY;
  for (float x : l) m = std::max(m, static_cast<double>(x));
  std::vector<double> p;
  double s = 0;
  for (float x : l) p.push_back(std::exp((x - m) / t)), s += p.back();
  for (double& x : p) x /= s;
  return p;
}

std::map<int64_t, double> as_map(const std::vector<std::pair<int64_t, double>>& d) {
  std::map<int64_t, double> m;
  for (auto [id, p] : d) m[id] = p;
  return m;
}

std::map<int64_t, double> frequencies(const std::vector<float>& logits, const SamplingOptions& o) {
  std::map<int64_t, double> f;
  for (int i = 0; i < kGrid; ++i) f[sample_token(logits, o, (i + 0.5) / kGrid)] += 1.0 / kGrid;
  return f;
}

void expect_close(const std::map<int64_t, double>& got, const std::map<int64_t, double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (auto [id, p] : want) {
    ASSERT_TRUE(got.count(id)) << "token " << id << " missing";
    EXPECT_NEAR(got.at(id), p, tol) << "token " << id;
  }
}

}  // namespace

TEST(Gpt2Sampling, GreedyPicksTheLowestIdAmongEqualMaxima) {
  std::vector<float> l{0.5f, 2.0f, -1.0f, 2.0f};
  SamplingOptions greedy{.temperature = 0.0};
  EXPECT_EQ(sample_token(l, greedy, 0.0), 1);
  EXPECT_EQ(sample_token(l, greedy, 0.999), 1);
  auto d = sampling_distribution(l, greedy);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].first, 1);
  EXPECT_EQ(d[0].second, 1.0);
}

TEST(Gpt2Sampling, TemperatureScalesTheSoftmax) {
  std::vector<float> l{1.0f, 0.0f, -0.5f, 2.0f, 0.25f};
  for (double t : {1.0, 0.5, 2.0}) {
    auto p = softmax(l, t);
    std::map<int64_t, double> want;
    for (size_t i = 0; i < p.size(); ++i) want[static_cast<int64_t>(i)] = p[i];
    expect_close(as_map(sampling_distribution(l, {.temperature = t})), want, kProbTol);
    expect_close(frequencies(l, {.temperature = t}), want, kFreqTol);
  }
  // Most likely first, ties by lower id.
  auto d = sampling_distribution(std::vector<float>{0.0f, 1.0f, 1.0f, -2.0f}, {});
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0].first, 1);
  EXPECT_EQ(d[1].first, 2);
  EXPECT_EQ(d[2].first, 0);
  EXPECT_EQ(d[3].first, 3);
}

TEST(Gpt2Sampling, TopKKeepsTheKMostLikelyRenormalised) {
  std::vector<float> l{0.0f, 3.0f, 1.0f, 3.0f, 2.0f};
  // k = 3: ids 1 and 3 (tied at 3) then 4; id 2 dropped.
  auto p = softmax({3.0f, 3.0f, 2.0f}, 1.0);
  std::map<int64_t, double> want{{1, p[0]}, {3, p[1]}, {4, p[2]}};
  SamplingOptions o{.temperature = 1.0, .top_k = 3};
  expect_close(as_map(sampling_distribution(l, o)), want, kProbTol);
  expect_close(frequencies(l, o), want, kFreqTol);
  // k = 1 is greedy; k >= vocab keeps everything.
  EXPECT_EQ(sampling_distribution(l, {.top_k = 1}).size(), 1u);
  EXPECT_EQ(sample_token(l, {.top_k = 1}, 0.99), 1);
  EXPECT_EQ(sampling_distribution(l, {.top_k = 9}).size(), 5u);
}

TEST(Gpt2Sampling, TopPKeepsTheSmallestSetReachingTheMass) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 in a shuffled id order.
  std::vector<float> l{std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  SamplingOptions o{.temperature = 1.0, .top_p = 0.7};  // 0.5 < 0.7 <= 0.8: ids 1 and 3
  expect_close(as_map(sampling_distribution(l, o)), {{1, 0.5 / 0.8}, {3, 0.3 / 0.8}}, 1e-6);
  expect_close(frequencies(l, o), {{1, 0.5 / 0.8}, {3, 0.3 / 0.8}}, kFreqTol);
  EXPECT_EQ(sampling_distribution(l, {.top_p = 0.4}).size(), 1u);
  EXPECT_EQ(sampling_distribution(l, {.top_p = 0.9}).size(), 3u);
  // Top-k first, then top-p over the renormalised k: k = 2 gives 0.625 / 0.375, p = 0.6 keeps one.
  EXPECT_EQ(sampling_distribution(l, {.top_k = 2, .top_p = 0.6}).size(), 1u);
  EXPECT_EQ(sampling_distribution(l, {.top_k = 2, .top_p = 0.65}).size(), 2u);
}

TEST(Gpt2Sampling, FilteredAndUnfilteredWalksDrawTheSameDistribution) {
  std::vector<float> l;
  for (int i = 0; i < 40; ++i) l.push_back(static_cast<float>(std::sin(i * 1.7) * 2.0));
  l.push_back(-INFINITY);  // so that top-k 40 of 41 takes the sorted path yet keeps every finite token
  auto unfiltered = frequencies(l, {.temperature = 0.8});
  auto no_op_filter = frequencies(l, {.temperature = 0.8, .top_k = 40});
  auto p = as_map(sampling_distribution(l, {.temperature = 0.8}));
  expect_close(unfiltered, p, kFreqTol);
  expect_close(no_op_filter, p, kFreqTol);
}

TEST(Gpt2Sampling, MinusInfinityIsNeverDrawn) {
  std::vector<float> l{-INFINITY, 0.0f, -INFINITY, 0.0f, -INFINITY};
  for (double u : {0.0, 0.3, 0.5, 0.7, 0.9999999}) {
    int64_t a = sample_token(l, {}, u), b = sample_token(l, {.top_k = 4}, u), c = sample_token(l, {.top_p = 0.99}, u);
    EXPECT_TRUE(a == 1 || a == 3) << a;
    EXPECT_TRUE(b == 1 || b == 3) << b;
    EXPECT_TRUE(c == 1 || c == 3) << c;
  }
  EXPECT_EQ(sampling_distribution(l, {.top_k = 4}).size(), 2u);
}

TEST(Gpt2Sampling, TensorRowsOfEitherFloatType) {
  std::vector<float> l{0.1f, 0.7f, -0.3f};
  Tensor f32 = Tensor::from_vector(l, {3});
  Tensor f64 = f32.to(DType::F64);
  for (double u : {0.05, 0.5, 0.95}) {
    EXPECT_EQ(sample_token(f32, {}, u), sample_token(l, {}, u));
    EXPECT_EQ(sample_token(f64, {}, u), sample_token(l, {}, u));
  }
  EXPECT_THROW(sample_token(f32.reshape({1, 3}), {}, 0.5), Error);
}

TEST(Gpt2Sampling, SamplerIsAPureFunctionOfTheSeed) {
  std::vector<float> l;
  for (int i = 0; i < 100; ++i) l.push_back(static_cast<float>(std::cos(i * 0.37)));
  auto draw = [&](uint64_t seed) {
    Sampler s({.temperature = 1.0, .top_p = 0.95}, seed);
    std::vector<int64_t> ids;
    for (int i = 0; i < 50; ++i) ids.push_back(s.next(l));
    EXPECT_EQ(s.steps(), 50);
    return ids;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
  for (uint64_t step = 0; step < 1000; ++step) {
    double u = Sampler::uniform(3, step);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  EXPECT_NE(Sampler::uniform(3, 0), Sampler::uniform(3, 1));
  EXPECT_NE(Sampler::uniform(3, 0), Sampler::uniform(4, 0));
}

TEST(Gpt2Sampling, BadInputThrows) {
  std::vector<float> l{0.0f, 1.0f};
  EXPECT_THROW(sample_token(l, {.temperature = -1.0}, 0.5), Error);
  EXPECT_THROW(sample_token(l, {.temperature = NAN}, 0.5), Error);
  EXPECT_THROW(sample_token(l, {.top_k = -2}, 0.5), Error);
  EXPECT_THROW(sample_token(l, {.top_p = 0.0}, 0.5), Error);
  EXPECT_THROW(sample_token(l, {.top_p = 1.5}, 0.5), Error);
  EXPECT_THROW(sample_token(l, {}, 1.0), Error);
  EXPECT_THROW(sample_token(std::vector<float>{}, {}, 0.5), Error);
  EXPECT_THROW(sample_token(std::vector<float>{0.0f, NAN}, {}, 0.5), Error);
  EXPECT_THROW(sample_token(std::vector<float>{-INFINITY, -INFINITY}, {}, 0.5), Error);
  EXPECT_THROW(sample_token(std::vector<float>{0.0f, INFINITY}, {.temperature = 0.0}, 0.5), Error);
  EXPECT_THROW(Sampler({.top_p = 2.0}, 0), Error);
}
